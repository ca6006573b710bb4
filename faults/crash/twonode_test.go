//go:build faults

package crash

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/railswitch/railswitch/journal"
	"github.com/railswitch/railswitch/simulators/bank"
	"github.com/redis/go-redis/v9"
)

// Knobs of the two-node test.
var (
	twoNodeTerminals = envInt("TWONODE_TERMINALS", 32)
	twoNodeLoad      = envDuration("TWONODE_LOAD", 3*time.Second) // load before the bank goes silent, and at the end
	// TWONODE_DIR, when set, is where the test's folder (configurations, nodes' logs, journals) is made and
	// kept; by default it is a temporary folder removed at the end.
)

// The shared state of the two nodes (docs/nodestate.md): a short lease so the test sees a takeover quickly.
const (
	twoNodeLease     = 3 * time.Second
	twoNodeHeartbeat = 1 * time.Second
)

// Log messages of the survivor (nodestate/saf.go) and of the node state.
const msgTakenOver = "nodestate: entry of a dead node taken over"

// twoNode is one node of the pair: its folder (with its own config.yaml, journal, reversals and sink file),
// its node id, its pos channel and admin addresses, and its running process.
type twoNode struct {
	id, dir, pos, admin string
	run                 int
	proc                *switchProc
}

// redisAddr is the Redis the two nodes share (REDIS_ADDR, default 127.0.0.1:6379).
func redisAddr() string {
	if a := os.Getenv("REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// openTestRedis connects to the test Redis: the test is skipped without it, and fails without it under CI.
func openTestRedis(t *testing.T) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr(), DialTimeout: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		if os.Getenv("CI") != "" {
			t.Fatalf("Redis at %s: %v", redisAddr(), err)
		}
		t.Skipf("no Redis at %s (%v): the two-node test needs one", redisAddr(), err)
	}
	return rdb
}

// deleteKeys removes every key of prefix (SCAN + DEL) and returns how many it removed.
func deleteKeys(rdb *redis.Client, prefix string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var n int
	iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := rdb.Del(ctx, batch...).Err(); err != nil {
				return n, err
			}
			n, batch = n+len(batch), batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return n, err
	}
	if len(batch) > 0 {
		if err := rdb.Del(ctx, batch...).Err(); err != nil {
			return n, err
		}
		n += len(batch)
	}
	return n, nil
}

// deriveNodeConfig writes dir/<node>/config.yaml from the demo configuration in dir: its own node id and
// number, pos channel and admin addresses, and shared state in Redis under prefix; the key store, LMK,
// terminals, routes and limits are the demo's files (absolute paths), the journal, reversals, state folder
// and sink file are the node's own (relative to its folder).
func deriveNodeConfig(t *testing.T, dir string, n *twoNode, number int, demoPos, demoAdmin, prefix string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	abs := func(name string) string { return strconv.Quote(filepath.Join(dir, name)) }
	for _, r := range []struct{ old, new string }{
		{"node: {id: demo, number: 1, posting: true}", fmt.Sprintf("node: {id: %s, number: %d, posting: true}", n.id, number)},
		{"keys: {store: keys.json, lmk_file: lmk.key}", fmt.Sprintf("keys: {store: %s, lmk_file: %s}", abs("keys.json"), abs("lmk.key"))},
		{"\nstate: state\n", fmt.Sprintf("\nstate: {type: redis, prefix: %s, lease: %s, heartbeat: %s}\nredis: {address: %q}\n",
			prefix, twoNodeLease, twoNodeHeartbeat, redisAddr())},
		{"\nterminals: terminals.yaml\n", "\nterminals: " + abs("terminals.yaml") + "\n"},
		{"\nroutes: routes.yaml\n", "\nroutes: " + abs("routes.yaml") + "\n"},
		{"\nlimits: limits.yaml\n", "\nlimits: " + abs("limits.yaml") + "\n"},
		{`{name: pos, listen: "` + demoPos + `"`, `{name: pos, listen: "` + n.pos + `"`},
		{`admin: {listen: "` + demoAdmin + `"`, `admin: {listen: "` + n.admin + `"`},
	} {
		if strings.Count(s, r.old) != 1 {
			t.Fatalf("demo config.yaml: expected exactly one %q to replace:\n%s", r.old, s)
		}
		s = strings.Replace(s, r.old, r.new, 1)
	}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.dir, "config.yaml"), []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// keepBreakersClosed gives both acquirers of the shared routes file a circuit breaker that does not open
// during the test (the default opens after 5 timeouts for 30 s and answers 91 meanwhile): the terminals of
// the silent bank keep requests in flight at it, and get approvals as soon as it answers again.
func keepBreakersClosed(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, "routes.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, acq := range []string{"bank-a", "bank-b"} {
		line := "  - name: " + acq + "\n"
		if strings.Count(s, line) != 1 {
			t.Fatalf("routes.yaml: expected one %q:\n%s", line, s)
		}
		s = strings.Replace(s, line, line+"    breaker: {failures: 100000, cooldown: 1s}\n", 1)
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// failover is the terminals' front door (a load balancer's virtual address): each connection goes to the
// first backend that accepts it, so when node A dies its terminals' next connections land on node B.
type failover struct {
	l        net.Listener
	backends []string
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

func startFailover(t *testing.T, backends ...string) *failover {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &failover{l: l, backends: backends, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(f.close)
	return f
}

func (f *failover) addr() string { return f.l.Addr().String() }

func (f *failover) track(c net.Conn, add bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if add {
		if f.conns == nil {
			return false
		}
		f.conns[c] = struct{}{}
	} else if f.conns != nil {
		delete(f.conns, c)
	}
	return true
}

func (f *failover) serve() {
	defer f.wg.Done()
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			var b net.Conn
			for _, addr := range f.backends {
				if b, err = net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
					break
				}
			}
			if b == nil {
				c.Close()
				return
			}
			if !f.track(c, true) || !f.track(b, true) {
				c.Close()
				b.Close()
				return
			}
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				done <- struct{}{}
			}
			go pipe(b, c)
			go pipe(c, b)
			<-done // either side gone: close both, as a load balancer does
			c.Close()
			b.Close()
			<-done
			f.track(c, false)
			f.track(b, false)
		}()
	}
}

func (f *failover) close() {
	f.l.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
	f.wg.Wait()
}

// nodeLogEntry is a line of a node's JSON log with the fields the takeover logs.
type nodeLogEntry struct {
	TS       float64 `json:"ts"`
	Msg      string  `json:"msg"`
	Node     string  `json:"node"`
	Set      string  `json:"set"`
	Acquirer string  `json:"acquirer"`
	Txn      string  `json:"txn"`
	ID       string  `json:"id"`
}

// takeovers returns the entries a node's log says it took over from other nodes.
func takeovers(t *testing.T, path string) []nodeLogEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []nodeLogEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e nodeLogEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Msg == msgTakenOver {
			out = append(out, e)
		}
	}
	return out
}

// nodeSets returns, for each entry set a node registered in Redis, how many entries it holds.
func nodeSets(rdb *redis.Client, prefix, node string) (map[string]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	base := prefix + ":{saf:" + node + "}:"
	sets, err := rdb.SMembers(ctx, base+"sets").Result()
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, set := range sets {
		n, err := rdb.HLen(ctx, base+"set:"+set+":meta").Result()
		if err != nil {
			return nil, err
		}
		out[set] = n
	}
	return out, nil
}

// pendingOf returns the pending reversals of a node, by acquirer.
func pendingOf(admin string) (map[string][]queueEntry, error) {
	pending, _, err := reversals(admin)
	if err != nil {
		return nil, err
	}
	out := map[string][]queueEntry{}
	for _, e := range pending {
		out[e.Acquirer] = append(out[e.Acquirer], e)
	}
	return out, nil
}

// TestTwoNodesOneKilledTerminalsCarryOnAtTheSurvivorWhichReversesTheDeadNodesQueue runs two switch nodes
// sharing their state through Redis behind one front address (a failover proxy, as a load balancer), signs
// every terminal on at node A and loads it, makes bank A silent so node A has reversals queued and requests
// in flight, then SIGKILLs node A. It proves:
//
//	(1) the terminals carry on at node B without signing on again: no A0, no sign-on asked for, and every
//	    terminal receives approvals there (node B saw no terminal traffic before the kill);
//	(2) node B takes over node A's reversal queue once A's lease expires (every reversal pending at A for
//	    the silent bank is handed over, and node A's entry sets in Redis end empty), and drains it once the
//	    bank answers again, with no dead letters;
//	(3) the reconciliation of the kill test over both journals: every approval a terminal saw is in one of
//	    the two journals, every purchase a bank approved that its terminal did not receive was reversed
//	    (by node B, node A being dead), and each bank's balance moved by exactly the approved and not
//	    reversed purchases; then node A is restarted on its folder and the sinks hold exactly the keys of
//	    the two journals (node A ships the tail it had not shipped when it was killed).
func TestTwoNodesOneKilledTerminalsCarryOnAtTheSurvivorWhichReversesTheDeadNodesQueue(t *testing.T) {
	testStart := time.Now()
	rdb := openTestRedis(t)
	prefix := "crash-twonode-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() {
		n, err := deleteKeys(rdb, prefix)
		if err != nil {
			t.Errorf("deleting the Redis keys of %s: %v", prefix, err)
		} else {
			t.Logf("deleted %d Redis keys of prefix %s", n, prefix)
		}
		_ = rdb.Close()
	})

	dir := t.TempDir()
	if keep := os.Getenv("TWONODE_DIR"); keep != "" { // kept after the test, for its logs
		dir = filepath.Join(keep, prefix)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	banks := [2]*testBank{startBank(t, "bank-a", zoneBankA, "621234"), startBank(t, "bank-b", zoneBankB, "411111")}
	demoPos, demoAdmin := freeAddr(t), freeAddr(t)
	writeConfig(t, dir, twoNodeTerminals, banks, demoPos, demoAdmin)
	nodes := [2]*twoNode{
		{id: "node-a", dir: filepath.Join(dir, "node-a"), pos: freeAddr(t), admin: freeAddr(t), run: 1},
		{id: "node-b", dir: filepath.Join(dir, "node-b"), pos: freeAddr(t), admin: freeAddr(t), run: 2},
	}
	for i, n := range nodes {
		deriveNodeConfig(t, dir, n, i+1, demoPos, demoAdmin, prefix)
	}
	keepBreakersClosed(t, dir)
	a, b := nodes[0], nodes[1]
	for _, n := range nodes {
		var ready time.Time
		n.proc, ready, _ = startReady(t, n.dir, n.run, n.admin)
		t.Logf("%s: pos %s, admin %s, ready %s after start (folder %s)", n.id, n.pos, n.admin,
			ready.Sub(n.proc.started).Round(time.Millisecond), n.dir)
	}
	t.Logf("Redis %s prefix %s; banks %s %s", redisAddr(), prefix, banks[0].addr, banks[1].addr)
	front := startFailover(t, a.pos, b.pos)

	drv := newDriver(t, front.addr(), twoNodeTerminals)
	drv.signOn(t)
	drv.start()
	defer drv.halt()
	time.Sleep(twoNodeLoad)

	// Bank A goes silent: it still applies what it receives but answers nothing. Node A's purchases to it
	// time out (the terminals get 98) and their reversals, unanswered too, stay queued.
	silentAt := time.Now()
	if err := banks[0].srv.SetFaults(bank.Faults{NoReply: 1}); err != nil {
		t.Fatal(err)
	}
	wantQueued := max(2, twoNodeTerminals/8)
	deadline := time.Now().Add(60 * time.Second)
	for {
		p, err := pendingOf(a.admin)
		if err == nil && len(p["bank-a"]) >= wantQueued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node A did not queue %d reversals for the silent bank within 60s (pending %v, %v)", wantQueued, p, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the terminals answered 98 have sent their next purchases: in flight at the kill
	var figA runFigures
	figA.fill(a.admin)
	pendingAtKill, err := pendingOf(a.admin)
	if err != nil {
		t.Fatal(err)
	}
	setsAtKill, err := nodeSets(rdb, prefix, a.id)
	if err != nil {
		t.Fatal(err)
	}
	mB, err := metrics(b.admin)
	if err != nil {
		t.Fatal(err)
	}
	if n := mB.sum("railswitch_channel_requests_total", ""); n != 0 {
		t.Errorf("node B received %v terminal requests before the kill: the terminals were not all on node A", n)
	}
	if early := takeovers(t, b.proc.log); len(early) > 0 {
		t.Errorf("node B took %d entries over while node A was alive and holding its lease: %+v", len(early), early[0])
	}
	a.proc.kill(t)
	killed := time.Now()
	t.Logf("node A: bank A silent for %s; SIGKILL with %d reversals pending for bank-a and %d for bank-b; its entry sets in Redis: %v",
		killed.Sub(silentAt).Round(time.Millisecond), len(pendingAtKill["bank-a"]), len(pendingAtKill["bank-b"]), setsAtKill)
	if _, ok := setsAtKill["intents"]; !ok {
		t.Errorf("node A's intents are not in Redis (its entry sets there: %v): requests it had at a bank when it died cannot be taken over by node B (docs/nodestate.md: \"Intents are handed over the same way\")", setsAtKill)
	}

	// The terminals reconnect through the front door to node B and carry on.
	firstApproval := firstApprovalAfter(t, drv, killed, 60*time.Second)

	// Node B takes node A's entries over once A's lease has expired, while bank A is still silent.
	var takeoverAfter, takeoverDone time.Duration
	deadline = time.Now().Add(60 * time.Second)
	for {
		entries := takeovers(t, b.proc.log)
		if takeoverAfter == 0 && len(entries) > 0 {
			at := time.Unix(0, int64(entries[0].TS*1e9))
			takeoverAfter = at.Sub(killed)
		}
		sets, err := nodeSets(rdb, prefix, a.id)
		left := int64(0)
		for _, n := range sets {
			left += n
		}
		if err == nil && len(entries) > 0 && left == 0 {
			takeoverDone = time.Since(killed)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B did not take node A's entries over within 60s of the kill: %d taken over, node A's sets in Redis %v (%v)",
				len(entries), sets, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	taken := takeovers(t, b.proc.log)
	takenBySet := map[string]int{}
	takenTxn := map[string]bool{}
	var recovered []string // intents of node A taken over: their reversals were queued at node B
	for _, e := range taken {
		if e.Node != a.id {
			t.Errorf("node B took over an entry of node %q", e.Node)
		}
		takenBySet[e.Set]++
		takenTxn[e.Txn] = true
		if e.Set == "intents" {
			recovered = append(recovered, e.Txn)
		}
	}
	for _, e := range pendingAtKill["bank-a"] {
		if !takenTxn[e.TxnID] {
			t.Errorf("reversal %s (txn %s) pending at node A for the silent bank when it died was not taken over by node B", e.ID, e.TxnID)
		}
	}
	pendingB, err := pendingOf(b.admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node B: first entry taken over %s after the kill, all of node A's entries %s after it: %v; pending at node B before bank A answers: %d for bank-a",
		takeoverAfter.Round(time.Millisecond), takeoverDone.Round(time.Millisecond), takenBySet, len(pendingB["bank-a"]))

	// Bank A answers again: node B drains its queue, node A's reversals with it.
	if err := banks[0].srv.SetFaults(bank.Faults{}); err != nil {
		t.Fatal(err)
	}
	answering := time.Now()
	deadline = time.Now().Add(90 * time.Second)
	for {
		pending, _, err := reversals(b.admin)
		if err == nil && len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B's reversal queue not drained within 90s of bank A answering again: %d pending %+v (%v)", len(pending), pending, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	queueDrained := time.Since(answering)

	time.Sleep(twoNodeLoad)
	drv.halt()
	loadEnd := time.Now()
	deadline = time.Now().Add(90 * time.Second)
	for {
		pending, dead, err := reversals(b.admin)
		m, merr := metrics(b.admin)
		if err == nil && merr == nil && len(pending) == 0 && m.sum("railswitch_journal_unshipped_bytes", "") == 0 &&
			m.sum("railswitch_journal_shipper_lag_records", "") == 0 {
			if len(dead) > 0 {
				t.Errorf("(c) %d reversals in node B's dead letters: %+v", len(dead), dead)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B not drained within 90s: %d reversals pending (%+v), unshipped %v bytes, errors %v %v",
				len(pending), pending, m.sum("railswitch_journal_unshipped_bytes", ""), err, merr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var figB runFigures
	figB.fill(b.admin)
	b.proc.stop(t)

	// What the terminals saw after the kill: approvals at node B without a new sign-on.
	attempts := drv.snapshot()
	approvedAfter := map[string]int{}
	for _, at := range attempts {
		if at.Approved && at.Start.After(killed) {
			approvedAfter[at.Terminal]++
		}
	}
	for _, id := range drv.ids {
		if approvedAfter[id] == 0 {
			t.Errorf("terminal %s received no approval after node A was killed", id)
		}
	}
	if n := drv.signOns.Load(); n > 0 {
		t.Errorf("%d terminals were asked to sign on again at node B: their sessions were not shared", n)
	}
	t.Logf("figures: kill -> first approval at node B %s; kill -> first entry taken over %s (lease %s, heartbeat %s), all taken over %s; entries taken over %d %v; bank A answering -> node B's queue empty %s; node B drained %s after the load stopped",
		firstApproval.Round(time.Millisecond), takeoverAfter.Round(time.Millisecond), twoNodeLease, twoNodeHeartbeat,
		takeoverDone.Round(time.Millisecond), len(taken), takenBySet, queueDrained.Round(time.Millisecond), time.Since(loadEnd).Round(time.Millisecond))
	t.Logf("node A until the kill: %0.f requests, %0.f approvals, %0.f other replies; reversals queued %0.f, acknowledged %0.f",
		figA.requests, figA.approvals, figA.other, figA.queued, figA.acked)
	t.Logf("node B: %0.f requests, %0.f approvals, %0.f other replies; reversals queued %0.f (%d of them node A's), acknowledged %0.f, dead %0.f",
		figB.requests, figB.approvals, figB.other, figB.queued, len(taken), figB.acked, figB.dead)
	if figB.acked < float64(len(taken)) {
		t.Errorf("node B acknowledged %0.f reversals, fewer than the %d entries it took over", figB.acked, len(taken))
	}
	if left := leftIntents(t, filepath.Join(a.dir, "reversals", "intents")); left != "" {
		t.Logf("node A's local intents folder after the kill: %s", left)
	}

	reconcileNodes(t, [2]string{a.dir, b.dir}, attempts, banks, recovered, drv.revs.Load())

	// Node A comes back on its folder: it ships the tail of its journal that it had not shipped when it was
	// killed (its journal is its own: node B cannot ship it), then (b) holds over both nodes. Whatever
	// reversals it queues at start were left in its own files, out of node B's reach.
	if _, ok := sink.(fileSink); ok {
		shipped, tail := sink.keys(t, a.dir), 0
		for _, r := range readJournal(t, filepath.Join(a.dir, "journal")) {
			if shipped[r.IdempotencyKey()] == 0 {
				tail++
			}
		}
		t.Logf("node A's journal: %d records had not reached its sink when it was killed", tail)
	}
	// On a fresh pos address: no terminal comes back to it, and the killed process's connections keep its old
	// port in TIME_WAIT (the kill test reports that the pos channel cannot bind over them).
	cfgA := filepath.Join(a.dir, "config.yaml")
	data, err := os.ReadFile(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	restartPos := freeAddr(t)
	data = []byte(strings.Replace(string(data), `listen: "`+a.pos+`"`, `listen: "`+restartPos+`"`, 1))
	if err := os.WriteFile(cfgA, data, 0o600); err != nil {
		t.Fatal(err)
	}
	a.pos = restartPos
	a.proc, _, _ = startReady(t, a.dir, a.run+10, a.admin)
	var restartReversals int
	deadline = time.Now().Add(90 * time.Second)
	for {
		pending, _, err := reversals(a.admin)
		m, merr := metrics(a.admin)
		if err == nil && merr == nil && len(pending) == 0 && m.sum("railswitch_journal_unshipped_bytes", "") == 0 &&
			m.sum("railswitch_journal_shipper_lag_records", "") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted node A not drained within 90s: %d reversals pending, unshipped %v bytes, errors %v %v",
				len(pending), m.sum("railswitch_journal_unshipped_bytes", ""), err, merr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	a.proc.stop(t)
	for _, e := range readLog(t, a.proc.log) {
		if e.Msg == msgRecoveredIntent {
			restartReversals++
		}
	}
	t.Logf("node A restarted after the test: %d reversals queued at its start from intents left in its own folder (node B could not take them over)", restartReversals)
	checkSinks(t, [2]string{a.dir, b.dir})
	t.Logf("whole test %s", time.Since(testStart).Round(time.Millisecond))
}

// leftIntents describes what a node's local intents folder holds ("" when it has nothing): evidence of
// intents kept on the node's disk rather than in the shared state.
func leftIntents(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ""
		}
		return err.Error()
	}
	var parts []string
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || fi.Size() == 0 && !e.IsDir() {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s (%d bytes)", e.Name(), fi.Size()))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return ""
	}
	if len(parts) > 8 {
		parts = append(parts[:8], fmt.Sprintf("... %d files in all", len(parts)))
	}
	return strings.Join(parts, ", ")
}

// nodeSinkKeys returns how many times the sinks of the nodes hold each idempotency key: the file sink is
// each node's own postings.jsonl; any other sink is shared by the nodes and read once.
func nodeSinkKeys(t *testing.T, dirs [2]string) map[string]int {
	t.Helper()
	if _, ok := sink.(fileSink); !ok {
		return sink.keys(t, dirs[0])
	}
	out := map[string]int{}
	for _, d := range dirs {
		for k, n := range sink.keys(t, d) {
			out[k] += n
		}
	}
	return out
}

// checkSinks is (b): the sinks hold exactly the idempotency keys of the two journals (the nodes must be
// stopped). Repeats are counted, not failed (the file sink keeps redeliveries after a crash).
func checkSinks(t *testing.T, dirs [2]string) {
	t.Helper()
	journalKeys := map[string]int{}
	for _, d := range dirs {
		for _, r := range readJournal(t, filepath.Join(d, "journal")) {
			journalKeys[r.IdempotencyKey()]++
		}
	}
	sinkKeys := nodeSinkKeys(t, dirs)
	checkSinkKeys(t, journalKeys, sinkKeys)
}

// reconcileNodes is the kill test's reconciliation over the journals of both nodes (stopped): (a) every
// approval a terminal saw is in one of the journals; (c) every purchase a bank approved that its terminal did
// not receive was reversed, and no approval a terminal received was reversed (except the journal-to-intent
// window of the intents taken over); (d) each bank's balance moved by exactly its approved-and-not-reversed
// purchases, which are the approvals the terminals received.
func reconcileNodes(t *testing.T, dirs [2]string, attempts []attempt, banks [2]*testBank, recovered []string, termReversals int64) {
	t.Helper()
	recoveredSet := map[string]bool{}
	for _, id := range recovered {
		recoveredSet[id] = true
	}
	byAmount := map[int64]attempt{}
	var sent, seenApproved, unanswered, declined, rejected int
	codes := map[string]int{}
	for _, a := range attempts {
		if _, dup := byAmount[a.Amount]; dup {
			t.Fatalf("amount %d used twice", a.Amount)
		}
		byAmount[a.Amount] = a
		if !a.Sent {
			continue
		}
		sent++
		switch {
		case a.Approved:
			seenApproved++
		case a.RC == "":
			unanswered++
		case a.RC == "00":
			rejected++
		default:
			declined++
			codes[a.RC]++
		}
	}
	t.Logf("terminals: %d attempts, %d sent, %d approvals seen, %d declined (by code: %v), %d unanswered, %d approvals rejected by the terminal, %d stored reversals acknowledged",
		len(attempts), sent, seenApproved, declined, codes, unanswered, rejected, termReversals)
	if codes["A0"] > 0 {
		t.Errorf("%d purchases answered A0 (MAC failed or not signed on): the terminals' sessions did not follow them to node B", codes["A0"])
	}

	journalKeys := map[string]int{}
	approvedJ := map[int64]journal.Record{}
	for i, d := range dirs {
		recs := readJournal(t, filepath.Join(d, "journal"))
		var jAuth, jApproved, jRev, jOther int
		for _, r := range recs {
			journalKeys[r.IdempotencyKey()]++
			switch {
			case r.Kind == journal.KindAuthorization:
				jAuth++
				if r.ResponseCode == "00" {
					jApproved++
					if _, dup := approvedJ[r.Amount]; dup {
						t.Errorf("journals: two approvals of amount %d", r.Amount)
					}
					approvedJ[r.Amount] = r
				}
			case r.Kind == journal.KindReversal:
				jRev++
			default:
				jOther++
			}
		}
		t.Logf("journal of node %c: %d records (%d purchases, %d of them approved; %d terminal reversals; %d other)",
			'A'+i, len(recs), jAuth, jApproved, jRev, jOther)
	}
	for k, n := range journalKeys {
		if n > 1 {
			t.Errorf("journals: idempotency key %s journaled %d times", k, n)
		}
	}

	// (a)
	checkApprovalsJournaled(t, attempts, approvedJ, seenApproved)

	// (c) and (d)
	var narrow, reversedUndelivered, reversedNeverAnswered, badReversed, notReversed, atBankApproved int
	for bi, bk := range banks {
		var applied, seen, narrowAmt int64
		for _, tx := range bk.srv.Ledger().Transactions() {
			if tx.Credit || tx.Code != "00" {
				continue
			}
			atBankApproved++
			a, known := byAmount[tx.Amount]
			if !known {
				t.Errorf("(c) %s approved amount %d that no terminal sent", bk.name, tx.Amount)
				continue
			}
			if a.Bank != bi {
				t.Errorf("(c) amount %d of bank %d's card approved at %s", tx.Amount, a.Bank, bk.name)
			}
			r, journaled := approvedJ[tx.Amount]
			switch {
			case tx.Reversed && a.Approved && journaled && recoveredSet[r.TxnID]:
				narrow++
				narrowAmt += tx.Amount
			case tx.Reversed && a.Approved:
				badReversed++
				t.Errorf("(c) approval seen by %s trace %s amount %d was reversed at %s", a.Terminal, a.Trace, a.Amount, bk.name)
			case tx.Reversed && journaled:
				reversedUndelivered++
			case tx.Reversed:
				reversedNeverAnswered++
			case !a.Approved:
				notReversed++
				applied += tx.Amount
				t.Errorf("(c) %s approved amount %d (terminal %s trace %s, begun at %s, saw rc %q err %q; journaled approval: %v) and it was never reversed",
					bk.name, tx.Amount, a.Terminal, a.Trace, a.Start.Format("15:04:05.000"), a.RC, a.Err, journaled)
			default:
				applied += tx.Amount
			}
		}
		for _, a := range attempts {
			if a.Approved && a.Bank == bi {
				seen += a.Amount
			}
		}
		moved := bk.initial - bk.srv.Ledger().Balances()[bk.prefix]
		t.Logf("(d) %s: balance moved by %d; approved and not reversed at the bank %d; approvals seen by terminals %d (%d of them in the narrow window)",
			bk.name, moved, applied, seen, narrowAmt)
		if moved != applied {
			t.Errorf("(d) %s: balance moved by %d, but its approved-and-not-reversed purchases total %d", bk.name, moved, applied)
		}
		if moved != seen-narrowAmt {
			t.Errorf("(d) %s: balance moved by %d, but the terminals were told of %d in approvals (%d reversed in the narrow window)",
				bk.name, moved, seen, narrowAmt)
		}
	}
	t.Logf("(c) at the banks: %d purchases approved; reversed: %d journaled but undelivered, %d sent without a recorded outcome; %d approvals the terminal saw reversed in the journal-to-intent window; %d approvals seen then reversed outside it; %d undelivered approvals never reversed",
		atBankApproved, reversedUndelivered, reversedNeverAnswered, narrow, badReversed, notReversed)
	t.Logf("(c) %d intents of node A taken over by node B", len(recoveredSet))
}
