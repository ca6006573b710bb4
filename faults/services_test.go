//go:build faults

package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/hsm/payshield"
	"github.com/railswitch/railswitch/internal/faultproxy"
	"github.com/railswitch/railswitch/journal"
	"github.com/railswitch/railswitch/server"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// The shared services of the development machine (docs of the project: never stop or reconfigure them; a test
// cuts one off with a fault proxy in between).
const (
	redisUpstream = "127.0.0.1:6379"
	pgUpstream    = "127.0.0.1:5432"
	pgDirectDSN   = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// demoSinkLine is the demo configuration's file sink, which the PostgreSQL test replaces.
const demoSinkLine = "  - {type: file, path: postings.jsonl}"

// uniqueName is a lower-case name no other run uses: a Redis key prefix or a table name (at most 40 characters).
func uniqueName(kind string) string {
	return fmt.Sprintf("faults_%s_%d_%d", kind, os.Getpid(), time.Now().UnixNano()%1_000_000_000)
}

// needService skips the test when addr does not accept connections, and fails it under CI.
func needService(t *testing.T, name, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s at %s: %v", name, addr, err)
		}
		t.Skipf("%s at %s not reachable: %v", name, addr, err)
	}
	c.Close()
}

// reconfigure stops the rig's switch, applies edit to its config.yaml (and writes limits, if not empty, as
// its limits.yaml), and starts a new switch on the result, waiting until its bank links are signed on. The
// balances the rig compares with stay those of startRig: nothing moves money in between.
func (r *rig) reconfigure(edit func(config string) string, limits string) {
	r.t.Helper()
	r.stop()
	path := filepath.Join(r.dir, "config.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(edit(string(data))), 0o600); err != nil {
		r.t.Fatal(err)
	}
	if limits != "" {
		if err := os.WriteFile(filepath.Join(r.dir, "limits.yaml"), []byte(limits), 0o600); err != nil {
			r.t.Fatal(err)
		}
	}
	cfg, err := server.LoadConfig(path)
	if err != nil {
		r.t.Fatal(err)
	}
	log := zap.NewNop()
	if r.logs != nil {
		log = zap.New(*r.logs)
	}
	if r.sw, err = server.New(cfg, server.Options{Log: log}); err != nil {
		r.t.Fatal(err)
	}
	r.stopped.Store(false)
	// Start's context is the life of the shippers and the takeover loop: not one with a deadline.
	if err := r.sw.Start(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.waitReady(30 * time.Second)
}

// metricSum adds the samples of the admin /metrics whose series name is name and whose labels contain label;
// ok is false when /metrics could not be read.
func (r *rig) metricSum(name, label string) (v float64, ok bool) {
	b, err := r.adminGet("/metrics")
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		n, labels, _ := strings.Cut(line[:i], "{")
		if n != name || !strings.Contains(labels, label) {
			continue
		}
		if x, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			v += x
		}
	}
	return v, true
}

// healthWatch polls the admin /healthz every 200 ms until stopped, counting the failures.
type healthWatch struct {
	stop           chan struct{}
	done           chan struct{}
	mu             sync.Mutex
	checks, failed int
	lastErr        error
}

func (r *rig) watchHealth() *healthWatch {
	h := &healthWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-tk.C:
			}
			_, err := r.adminGet("/healthz")
			h.mu.Lock()
			h.checks++
			if err != nil {
				h.failed++
				h.lastErr = err
			}
			h.mu.Unlock()
		}
	}()
	return h
}

func (h *healthWatch) end() (checks, failed int, lastErr error) {
	close(h.stop)
	<-h.done
	return h.checks, h.failed, h.lastErr
}

// started is when the terminal sent the request of o.
func started(o outcome) time.Time { return o.At.Add(-o.Latency) }

// firstApprovalSince waits until a terminal has seen the approval of a request sent after since and returns
// how long after since that approval arrived.
func firstApprovalSince(t *testing.T, b *book, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var first time.Time
		for _, o := range b.filter(func(o outcome) bool { return o.Code == "00" && !started(o).Before(since) }) {
			if first.IsZero() || o.At.Before(first) {
				first = o.At
			}
		}
		if !first.IsZero() {
			return first.Sub(since)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no approval within %v of %s", within, since.Format("15:04:05.000"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// between returns the outcomes of requests sent in [from, to).
func between(b *book, from, to time.Time) []outcome {
	return b.filter(func(o outcome) bool { s := started(o); return !s.Before(from) && s.Before(to) })
}

// readJournalRecords reads every record of the rig's journal (the switch must be stopped).
func (r *rig) readJournalRecords() []journal.Record {
	r.t.Helper()
	j, err := journal.Open(journal.Options{Dir: filepath.Join(r.dir, "journal")})
	if err != nil {
		r.t.Fatalf("opening the journal: %v", err)
	}
	defer j.Close()
	rd, err := j.NewReader(1)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rd.Close()
	var out []journal.Record
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			r.t.Fatalf("reading the journal: %v", err)
		}
		out = append(out, e.Record)
	}
}

// deleteRedisPrefix deletes every key of the shared Redis that starts with prefix.
func deleteRedisPrefix(t *testing.T, prefix string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisUpstream})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var n int
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			n += len(batch)
			if err := c.Del(ctx, batch...).Err(); err != nil {
				t.Errorf("deleting the test's Redis keys: %v", err)
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		t.Errorf("scanning the test's Redis keys: %v", err)
	}
	if len(batch) > 0 {
		n += len(batch)
		if err := c.Del(ctx, batch...).Err(); err != nil {
			t.Errorf("deleting the test's Redis keys: %v", err)
		}
	}
	t.Logf("deleted %d Redis keys of prefix %s", n, prefix)
}

// redisLimits is the limits file of the Redis test: the demo's rate-limited terminal, and a cluster-wide
// acquirer limit far above the test's rate that falls back to this node's share when Redis is down.
func redisLimits(prefix string) string {
	return `cluster: {key_prefix: "` + prefix + `:limits", timeout: 50ms, retry_interval: 200ms, nodes: 1}
terminal:
  overrides:
    "22003601": {rate: 1, burst: 1, code: "65"}
acquirer:
  default: {rate: 100000, burst: 100000, concurrency: 1000, cluster: true, on_redis_down: local}
`
}

// TestRedisOutageDeclinesStateRequestsWith96AndRecoversWithoutRestart puts a fault proxy between the switch
// and Redis, which holds its node state (sessions, originals, STAN counters, reversal queue and intents), its
// retransmission check and a cluster-wide acquirer limit; it cuts Redis off (connections reset) or black-holes
// it (connections hang) for 3 s under load. While Redis is away every request the terminals send is answered,
// within the configured Redis deadlines, with 96 (or, for one already past its Redis calls, its real outcome),
// the switch stays up (health checks answer), and once Redis is back purchases are approved again without a
// restart. The money invariants hold: every approval journaled once, bank balances moved by exactly the
// approvals the terminals saw, reversals all acknowledged.
func TestRedisOutageDeclinesStateRequestsWith96AndRecoversWithoutRestart(t *testing.T) {
	needService(t, "Redis", redisUpstream)
	cases := []struct {
		name  string
		fault func(p *faultproxy.Proxy)
		// maxLatency bounds a reply during the fault: with Redis hung, the configured socket timeouts and
		// request deadlines, not the terminals' patience, must end each request.
		maxLatency time.Duration
	}{
		{"redis_cut_off", (*faultproxy.Proxy).Cut, 2 * time.Second},
		{"redis_black_hole", (*faultproxy.Proxy).BlackHole, 4 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prefix := uniqueName("redis")
			t.Cleanup(func() { deleteRedisPrefix(t, prefix) })
			proxy, err := faultproxy.New(redisUpstream)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { proxy.Close() })
			r := startRig(t, rigOptions{})
			r.reconfigure(func(c string) string {
				if !strings.Contains(c, "\nstate: state\n") {
					t.Fatalf("config.yaml has no line %q", "state: state")
				}
				c = strings.Replace(c, "\nstate: state\n", "\nstate: {type: redis, prefix: "+prefix+", lease: 15s, heartbeat: 1s}\n", 1)
				const dup = "\nduplicates: {window: 5m, key: saf/dek}\n"
				if !strings.Contains(c, dup) {
					t.Fatalf("config.yaml has no line %q", strings.TrimSpace(dup))
				}
				c = strings.Replace(c, dup, "\nduplicates: {store: redis, window: 5m, prefix: \""+prefix+":dup:\", key: saf/dek}\n", 1)
				return c + "redis: {address: \"" + proxy.Addr() + "\", dial_timeout: 300ms, read_timeout: 300ms, write_timeout: 300ms}\n"
			}, redisLimits(prefix))

			b := newBook()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); runTraffic(ctx, r.posAddr(), b, trafficOptions{}) }()
			defer func() { cancel(); <-done }()

			time.Sleep(1500 * time.Millisecond)
			health := r.watchHealth()
			faultAt := time.Now()
			tc.fault(proxy)
			time.Sleep(3 * time.Second)
			upDuring, _ := r.metricSum("railswitch_limits_redis_up", "")
			localChecks, _ := r.metricSum("railswitch_limits_outage_checks_total", "local")
			restoreAt := time.Now()
			proxy.Restore()
			recovered := firstApprovalSince(t, b, restoreAt, 30*time.Second)
			time.Sleep(1500 * time.Millisecond)
			checks, failed, lastErr := health.end()
			cancel()
			<-done
			upAfter, _ := r.metricSum("railswitch_limits_redis_up", "")

			out, errs := b.snapshot()
			for i, err := range errs {
				if i < 5 {
					t.Errorf("terminal failure: %v", err)
				}
			}
			if len(errs) > 0 {
				t.Errorf("%d requests of the well-behaved terminals got no reply", len(errs))
			}
			before := between(b, time.Time{}, faultAt)
			during := between(b, faultAt, restoreAt)
			after := between(b, restoreAt, time.Now())
			t.Logf("before the fault: %s", summary(before))
			t.Logf("during the fault (%v): %s", restoreAt.Sub(faultAt).Round(time.Millisecond), summary(during))
			t.Logf("after the restore: %s; first approval %v after it", summary(after), recovered.Round(time.Millisecond))
			t.Logf("cluster-wide limits: redis_up %v during the fault, %v after; %v checks decided locally; health checks %d, failed %d",
				upDuring, upAfter, localChecks, checks, failed)
			t.Logf("proxy: %+v", proxy.Stats())
			for _, o := range b.filter(func(o outcome) bool { return o.At.Before(faultAt) }) {
				if o.Code != "00" {
					t.Errorf("before the fault %s stan %s answered %s", o.TID, o.STAN, o.Code)
					break
				}
			}
			var n96 int
			var slow []outcome
			for _, o := range during {
				switch o.Code {
				case "96":
					n96++
				case "00": // a request past its Redis calls when the fault began
				default:
					t.Errorf("during the fault %s stan %s answered %q, want 96 (or 00)", o.TID, o.STAN, o.Code)
				}
				if o.Latency > tc.maxLatency {
					slow = append(slow, o)
				}
			}
			if n96 == 0 {
				t.Errorf("no request was declined 96 during the Redis outage")
			}
			if len(slow) > 0 {
				t.Errorf("%d replies during the fault took longer than %v (slowest %v): a hung Redis held requests",
					len(slow), tc.maxLatency, pct(latencies(slow), 100))
			}
			if failed > 0 {
				t.Errorf("%d of %d health checks failed during the fault: %v", failed, checks, lastErr)
			}
			// The limiter only learns of the outage from a request that reaches it; with the node state in the
			// same Redis most requests are declined before (session, STAN), so its gauge is printed, not required.
			if upAfter != 1 {
				t.Errorf("railswitch_limits_redis_up = %v after the restore, want 1", upAfter)
			}
			// Once recovered, the terminals are served as before the fault.
			settled := restoreAt.Add(recovered + 500*time.Millisecond)
			for _, o := range between(b, settled, time.Now()) {
				if o.Code != "00" {
					t.Errorf("%v after the restore %s stan %s answered %s, want 00", started(o).Sub(restoreAt).Round(time.Millisecond), o.TID, o.STAN, o.Code)
					break
				}
			}
			// At rest no request is in flight, so no intent may be left: one that is would, at the node's next
			// start (or a survivor's takeover), reverse a request whose outcome the switch knew.
			if n := redisHashLen(t, prefix+":{saf:demo}:set:intents:meta"); n != 0 {
				t.Errorf("%d intents left in Redis with no request in flight: a restart would reverse them (the switch logged \"cannot remove an intent\")", n)
			}
			drained := r.checkMoney(b)
			t.Logf("%d replies in all; reversal queue empty %v after the load stopped; time to recover (restore to first approval) %v",
				len(out), drained.Round(time.Millisecond), recovered.Round(time.Millisecond))
		})
	}
}

// redisHashLen is the number of fields of a hash in the shared Redis.
func redisHashLen(t *testing.T, key string) int64 {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisUpstream})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := c.HLen(ctx, key).Result()
	if err != nil {
		t.Fatalf("HLEN %s: %v", key, err)
	}
	return n
}

func latencies(out []outcome) []time.Duration {
	d := make([]time.Duration, len(out))
	for i, o := range out {
		d[i] = o.Latency
	}
	return d
}

// TestPostgresOutageKeepsTerminalsServedAndTheSinkCatchesUpOnceByKey ships the journal to a PostgreSQL sink
// through a fault proxy and cuts PostgreSQL off for 3 s under load: the terminals are served throughout (the
// journal, not the sink, is what an approval waits for), the records not yet shipped grow and the shipper
// retries; once PostgreSQL is back the sink catches up, and the table holds every journaled record exactly
// once by idempotency key, with the journal's amount and response code. The table is dropped at the end.
func TestPostgresOutageKeepsTerminalsServedAndTheSinkCatchesUpOnceByKey(t *testing.T) {
	needService(t, "PostgreSQL", pgUpstream)
	table := uniqueName("pg")
	t.Cleanup(func() { dropTable(t, table) })
	proxy, err := faultproxy.New(pgUpstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	r := startRig(t, rigOptions{})
	r.reconfigure(func(c string) string {
		if !strings.Contains(c, demoSinkLine) {
			t.Fatalf("config.yaml has no line %q", demoSinkLine)
		}
		return strings.Replace(c, demoSinkLine, "  - {type: postgres, name: ledger-pg, dsn: \"postgres://postgres@"+proxy.Addr()+
			"/test?sslmode=disable\", table: "+table+", connect_timeout: 2s, min_backoff: 50ms, max_backoff: 500ms, deliver_timeout: 5s}", 1)
	}, "")
	lag := func() float64 {
		v, _ := r.metricSum("railswitch_journal_shipper_lag_records", `sink="ledger-pg"`)
		return v
	}
	failures := func() float64 {
		v, _ := r.metricSum("railswitch_journal_shipper_failures_total", `sink="ledger-pg"`)
		return v
	}

	b := newBook()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); runTraffic(ctx, r.posAddr(), b, trafficOptions{}) }()
	defer func() { cancel(); <-done }()

	time.Sleep(1500 * time.Millisecond)
	lagBefore, failBefore := lag(), failures()
	cutAt := time.Now()
	proxy.Cut()
	var lagSamples []float64
	for time.Since(cutAt) < 3*time.Second {
		time.Sleep(500 * time.Millisecond)
		lagSamples = append(lagSamples, lag())
	}
	lagAtRestore, failDuring := lag(), failures()-failBefore
	cancel() // stop the load, so that the catch-up is measured on a fixed backlog
	<-done
	restoreAt := time.Now()
	proxy.Restore()
	deadline := time.Now().Add(60 * time.Second)
	for lag() != 0 {
		if time.Now().After(deadline) {
			for _, l := range r.logs.lines("") {
				t.Log(l)
			}
			t.Fatalf("the PostgreSQL sink did not catch up within 60s of the restore: lag %v records", lag())
		}
		time.Sleep(20 * time.Millisecond)
	}
	catchUp := time.Since(restoreAt)
	unshipped, _ := r.metricSum("railswitch_journal_unshipped_bytes", "")

	out, errs := b.snapshot()
	if len(errs) > 0 {
		t.Errorf("%d requests got no reply; first: %v", len(errs), errs[0])
	}
	during := between(b, cutAt, restoreAt)
	t.Logf("before the cut: %s; sink lag %v records", summary(between(b, time.Time{}, cutAt)), lagBefore)
	t.Logf("during the cut (%v): %s", restoreAt.Sub(cutAt).Round(time.Millisecond), summary(during))
	t.Logf("sink lag during the cut %v records, %v at the restore; %v failed deliveries (retries) during the cut",
		lagSamples, lagAtRestore, failDuring)
	t.Logf("catch-up: lag %v -> 0 records in %v after the restore (unshipped bytes then %v, until the next checkpoint)",
		lagAtRestore, catchUp.Round(time.Millisecond), unshipped)
	for _, o := range out {
		if o.Code != "00" {
			t.Errorf("%s stan %s answered %s at %s: a PostgreSQL outage must not touch the terminals", o.TID, o.STAN, o.Code, o.At.Format("15:04:05.000"))
			break
		}
	}
	if len(during) == 0 {
		t.Errorf("no request was served during the cut")
	}
	if lagAtRestore <= lagBefore || lagAtRestore < float64(len(during))/2 {
		t.Errorf("the sink's lag went from %v to %v over the cut, with %d approvals journaled meanwhile: the unshipped records did not grow",
			lagBefore, lagAtRestore, len(during))
	}
	if failDuring == 0 {
		t.Errorf("the shipper recorded no failed delivery during the cut: it did not retry")
	}
	r.checkMoney(b)

	// The table against the journal: every record exactly once by key, with its amount and response code.
	recs := r.readJournalRecords()
	type row struct {
		amount int64
		rc     string
	}
	want := make(map[string]row, len(recs))
	for _, rec := range recs {
		k := rec.IdempotencyKey()
		if _, dup := want[k]; dup {
			t.Errorf("journal: key %s twice", k)
		}
		want[k] = row{rec.Amount, rec.ResponseCode}
	}
	qctx, qcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer qcancel()
	conn, err := pgx.Connect(qctx, pgDirectDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(qctx)
	rows, err := conn.Query(qctx, "SELECT idempotency_key, amount, response_code FROM "+pgx.Identifier{table}.Sanitize())
	if err != nil {
		t.Fatalf("reading the sink's table: %v", err)
	}
	got := map[string]int{}
	var mismatched int
	for rows.Next() {
		var k, rc string
		var amount int64
		if err := rows.Scan(&k, &amount, &rc); err != nil {
			t.Fatal(err)
		}
		got[k]++
		if w, ok := want[k]; ok && (w.amount != amount || w.rc != rc) {
			mismatched++
			if mismatched <= 5 {
				t.Errorf("row %s: amount %d rc %s, the journal has %d %s", k, amount, rc, w.amount, w.rc)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var missing, extra, dups int
	for k := range want {
		if got[k] == 0 {
			if missing++; missing <= 5 {
				t.Errorf("journal record %s is not in the table", k)
			}
		}
	}
	for k, n := range got {
		dups += n - 1
		if _, ok := want[k]; !ok {
			if extra++; extra <= 5 {
				t.Errorf("the table holds %s, which the journal does not", k)
			}
		}
	}
	if missing+extra+dups+mismatched > 0 {
		t.Errorf("table against journal: %d missing, %d unknown, %d repeated, %d differing", missing, extra, dups, mismatched)
	}
	t.Logf("journal %d records; table %s: %d rows, %d keys; missing %d, unknown %d, repeated %d, differing %d",
		len(recs), table, len(got), len(got), missing, extra, dups, mismatched)
}

// dropTable drops the test's table from the shared PostgreSQL.
func dropTable(t *testing.T, table string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgDirectDSN)
	if err != nil {
		t.Errorf("dropping table %s: %v", table, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize()); err != nil {
		t.Errorf("dropping table %s: %v", table, err)
	}
}

// TestNetworkedHSMDownDeclinesWith96AndNothingReachesTheBank runs the switch on a networked payShield HSM (an
// in-test payshield.Server on the demo's LMK) behind a fault proxy and cuts the HSM off for 3 s under load:
// every request sent meanwhile is declined 96 (not A0: the terminals' keys are fine), nothing reaches either
// bank, and after the restore purchases are approved again without a restart. The money invariants hold.
func TestNetworkedHSMDownDeclinesWith96AndNothingReachesTheBank(t *testing.T) {
	r := startRig(t, rigOptions{})
	lmk, err := hsm.LoadLMKFile(filepath.Join(r.dir, "lmk.key"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hsmServer := &payshield.Server{Module: hsm.NewSoftware(lmk, nil)}
	go func() { _ = hsmServer.Serve(ln) }()
	t.Cleanup(func() { _ = hsmServer.Close() })
	proxy, err := faultproxy.New(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	r.reconfigure(func(c string) string {
		return c + "hsm: {type: payshield, address: \"" + proxy.Addr() + "\", timeout: 300ms}\n"
	}, "")

	b := newBook()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); runTraffic(ctx, r.posAddr(), b, trafficOptions{}) }()
	defer func() { cancel(); <-done }()
	bankTxns := func() int {
		return len(r.demo.BankA.Ledger().Transactions()) + len(r.demo.BankB.Ledger().Transactions())
	}

	nErrs := func() int { _, e := b.snapshot(); return len(e) }
	time.Sleep(1500 * time.Millisecond)
	errsBefore := nErrs()
	cutAt := time.Now()
	proxy.Cut()
	time.Sleep(500 * time.Millisecond) // requests at a bank when the HSM went away are answered meanwhile
	txnsFrom, balA, balB := bankTxns(), r.balance(prefixA), r.balance(prefixB)
	time.Sleep(2500 * time.Millisecond)
	txnsTo, balA2, balB2 := bankTxns(), r.balance(prefixA), r.balance(prefixB)
	restoreAt := time.Now()
	proxy.Restore()
	recovered := firstApprovalSince(t, b, restoreAt, 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	errsSettled := nErrs()
	time.Sleep(1500 * time.Millisecond)
	cancel()
	<-done

	// A request the bank approved just before the cut cannot get its MAC: the switch closes the terminal's
	// session (flow: "cannot pack reply") and reverses it; the terminal then fails to sign on until the HSM is
	// back. Those failures belong to the outage; none may happen before it or once purchases are approved again.
	_, errs := b.snapshot()
	if errsBefore > 0 {
		t.Errorf("%d terminal failures before the cut; first: %v", errsBefore, errs[0])
	}
	if len(errs) > errsSettled {
		t.Errorf("%d terminal failures after purchases recovered; first: %v", len(errs)-errsSettled, errs[errsSettled])
	}
	if n := errsSettled - errsBefore; n > 0 {
		t.Logf("terminal failures during the outage: %d (first: %v): sessions closed because an approval could not be MACed, then sign-ons refused",
			n, errs[errsBefore])
	}
	// A request the terminal sent in the same instant as the cut may have had its HSM commands answered just
	// before the proxy reset the connections, and one sent just before the restore may have them answered just
	// after it: the first and the last 50 ms of the outage are left out.
	during := between(b, cutAt.Add(50*time.Millisecond), restoreAt.Add(-50*time.Millisecond))
	t.Logf("before the cut: %s", summary(between(b, time.Time{}, cutAt)))
	t.Logf("HSM down (%v; requests sent from 50 ms after the cut to 50 ms before the restore): %s", restoreAt.Sub(cutAt).Round(time.Millisecond), summary(during))
	t.Logf("after the restore: %s; first approval %v after it", summary(between(b, restoreAt, time.Now())), recovered.Round(time.Millisecond))
	t.Logf("bank transactions while the HSM was down: %d -> %d; balances A %d -> %d, B %d -> %d", txnsFrom, txnsTo, balA, balA2, balB, balB2)
	var n96 int
	for _, o := range during {
		if o.Code == "96" {
			n96++
			continue
		}
		t.Errorf("HSM down: %s stan %s answered %q, want 96", o.TID, o.STAN, o.Code)
	}
	if n96 == 0 {
		t.Errorf("no request was declined while the HSM was down")
	}
	if txnsTo != txnsFrom || balA2 != balA || balB2 != balB {
		t.Errorf("requests reached a bank while the HSM was down: %d -> %d transactions, balances A %d -> %d, B %d -> %d",
			txnsFrom, txnsTo, balA, balA2, balB, balB2)
	}
	settled := restoreAt.Add(recovered + 500*time.Millisecond)
	for _, o := range between(b, settled, time.Now()) {
		if o.Code != "00" {
			t.Errorf("after the HSM was back %s stan %s answered %s, want 00", o.TID, o.STAN, o.Code)
			break
		}
	}
	drained := r.checkMoney(b)
	t.Logf("reversal queue empty %v after the load stopped; time to recover (restore to first approval) %v",
		drained.Round(time.Millisecond), recovered.Round(time.Millisecond))
}
