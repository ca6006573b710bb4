//go:build faults

package crash

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/railswitch/railswitch/journal"
	"github.com/railswitch/railswitch/simulators/bank"
	"github.com/railswitch/railswitch/specs"
)

// switchBin is the switch binary TestMain builds.
var switchBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "crash-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	switchBin = filepath.Join(dir, "switch")
	build := exec.Command("go", "build", "-o", switchBin, "github.com/railswitch/railswitch/cmd/switch")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the switch: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Test keys of the demo (server/demo.go), all published test vectors: the terminals' TMK and the two banks'
// zone keys.
const (
	demoTMK   = "70F2A84CCBC2AE8625CBB0F2C22AB923"
	zoneBankA = "0123456789ABCDEFFEDCBA9876543210"
	zoneBankB = "70F2A84CCBC2AE8625CBB0F2C22AB923"
	// adminToken is what the child's SWITCH_ADMIN_TOKEN is set to (the test only reads the admin API).
	adminToken = "demo-admin-token"
)

// Published test cards of the demo: bank A holds the UnionPay card's account, bank B the Visa card's.
const (
	cardBankA = "6212341234567890"
	cardBankB = "4111111111111111"
	cardPIN   = "123456"
)

// startingBalance of each bank account: large, so no purchase of the run is declined for funds.
const startingBalance = 1_000_000_000_000

// testBank is a bank simulator in the test process.
type testBank struct {
	name    string
	prefix  string // the account's card prefix
	srv     *bank.Server
	addr    string
	initial int64
}

// startBank starts a bank simulator on loopback with one account (prefix, PIN 123456) and a history long
// enough to remember every transaction of the run.
func startBank(t *testing.T, name, zoneHex, prefix string) *testBank {
	t.Helper()
	spec, err := specs.Get("iso87-ascii")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := hex.DecodeString(zoneHex)
	rules := &bank.Rules{Default: bank.Default{Code: "00"}, History: 2_000_000,
		Accounts: []bank.Account{{Prefix: prefix, Balance: startingBalance, PINHash: bank.HashPIN(cardPIN)}}}
	srv, err := bank.New(bank.Config{Spec: spec, Rules: rules, Keys: bank.Keys{ZPK: key, ZAK: key, ZMK: key}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &testBank{name: name, prefix: prefix, srv: srv, addr: l.Addr().String(), initial: startingBalance}
}

// freeAddr returns a loopback address whose port was free a moment ago: the switch must listen on the same
// address across restarts, so that terminals reconnect to it.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// writeConfig writes the switch's configuration into dir: `switch run --demo` writes the demo's files, a
// fresh LMK and key store (with terminals load-test terminals LT000001...) and is stopped at once; its
// journal, queue, state and postings are removed and its routes are pointed at the test's banks. The pos
// channel and the admin server listen on fixed addresses.
func writeConfig(t *testing.T, dir string, terminals int, banks [2]*testBank, pos, admin string) {
	t.Helper()
	out := filepath.Join(dir, "demo-setup.log")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(switchBin, "run", "--demo", "--dir", dir, "--load-terminals", strconv.Itoa(terminals),
		"--pos", pos, "--rail", "127.0.0.1:0", "--kiosk", "127.0.0.1:0", "--admin", admin)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "SWITCH_ADMIN_TOKEN="+adminToken)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var demoBanks []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		data, _ := os.ReadFile(out)
		demoBanks = regexp.MustCompile(`bank [AB] \(iso87-ascii\) (\S+)`).FindAllString(string(data), -1)
		if strings.Contains(string(data), "\nadmin ") && len(demoBanks) == 2 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("switch run --demo ended: %v\n%s", err, data)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("switch run --demo did not start:\n%s", data)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("switch run --demo did not stop")
	}
	for _, p := range []string{"journal", "reversals", "state", "postings.jsonl"} {
		if err := os.RemoveAll(filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	routes := filepath.Join(dir, "routes.yaml")
	data, err := os.ReadFile(routes)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for i, line := range demoBanks {
		old := strings.Fields(line)[3]
		if !strings.Contains(s, old) {
			t.Fatalf("routes.yaml does not name the demo's bank address %s", old)
		}
		s = strings.ReplaceAll(s, old, banks[i].addr)
	}
	if err := os.WriteFile(routes, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	data, err = os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "journal: {dir: journal, fsync: true}") {
		t.Fatalf("config.yaml: the journal is not fsynced:\n%s", data)
	}
	if err := os.WriteFile(cfg, []byte(sink.configure(t, string(data))), 0o600); err != nil {
		t.Fatal(err)
	}
}

// switchProc is one run of `switch run --config` as a child process.
type switchProc struct {
	run     int
	cmd     *exec.Cmd
	log     string
	logFrom int64 // where this attempt's output starts in log
	started time.Time
	done    chan struct{}
	err     error
}

// startSwitch starts the switch on dir/config.yaml; its output goes to dir/switch-N.log.
func startSwitch(t *testing.T, dir string, run int) *switchProc {
	t.Helper()
	p := &switchProc{run: run, log: filepath.Join(dir, fmt.Sprintf("switch-%d.log", run)), done: make(chan struct{})}
	// Appended: the attempts of a start retried for its listeners share the log (an attempt that failed to
	// bind may already have queued the reversals of the intents it found).
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := f.Stat(); err == nil {
		p.logFrom = fi.Size()
	}
	p.cmd = exec.Command(switchBin, "run", "--config", filepath.Join(dir, "config.yaml"), "--grace", "30s")
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.Env = append(os.Environ(), "SWITCH_ADMIN_TOKEN="+adminToken)
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *switchProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill switch run %d: %v", p.run, err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("switch run %d survived SIGKILL", p.run)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *switchProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stop switch run %d: %v", p.run, err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("switch run %d ended with %v; log %s", p.run, p.err, p.log)
		}
	case <-time.After(90 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Fatalf("switch run %d did not stop within 90s of SIGTERM", p.run)
	}
}

// alive reports whether the process is still running.
func (p *switchProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// errAddrInUse is a start that failed because a listener's port is still taken.
var errAddrInUse = errors.New("address already in use")

// startReady starts the switch and waits until it is ready. A start that fails to bind its listeners
// (the killed process's connections linger in TIME_WAIT, and a listener without SO_REUSEADDR cannot bind
// then) is retried every 200 ms for up to a minute and a half; bindWait says how long that took.
func startReady(t *testing.T, dir string, run int, admin string) (p *switchProc, ready time.Time, bindWait time.Duration) {
	t.Helper()
	first := time.Now()
	for tries := 0; ; tries++ {
		p = startSwitch(t, dir, run)
		ready, err := p.waitReady(t, admin, 60*time.Second)
		if err == nil {
			if tries > 0 {
				bindWait = p.started.Sub(first)
			}
			return p, ready, bindWait
		}
		if !errors.Is(err, errAddrInUse) || time.Since(first) > 90*time.Second {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitReady polls /readyz until it answers 200 (every acquirer has a signed-on link). A process that exits
// first is an error, errAddrInUse when it could not bind.
func (p *switchProc) waitReady(t *testing.T, admin string, within time.Duration) (time.Time, error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if !p.alive() {
			data, _ := os.ReadFile(p.log)
			data = data[min(p.logFrom, int64(len(data))):]
			if strings.Contains(string(data), "address already in use") {
				return time.Time{}, fmt.Errorf("switch run %d: %w", p.run, errAddrInUse)
			}
			return time.Time{}, fmt.Errorf("switch run %d exited before it was ready (%v):\n%s", p.run, p.err, tail(data, 4000))
		}
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("switch run %d not ready within %s", p.run, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// logEntry is a line of the switch's JSON log.
type logEntry struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
	Txn   string `json:"txn"`
}

// readLog returns the JSON lines of a run's log (other lines are skipped).
func readLog(t *testing.T, path string) []logEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e logEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Msg != "" {
			out = append(out, e)
		}
	}
	return out
}

// msgRecoveredIntent is the switch's log message for an intent found at start (server/intents.go).
const msgRecoveredIntent = "request without a recorded outcome: reversal queued"

// series are Prometheus samples by series (name and labels as written).
type series map[string]float64

// sum adds the samples of metric name whose labels contain label ("" for all).
func (s series) sum(name, label string) float64 {
	var v float64
	for k, x := range s {
		n, labels, _ := strings.Cut(k, "{")
		if n == name && strings.Contains(labels, label) {
			v += x
		}
	}
	return v
}

// metrics fetches the admin /metrics.
func metrics(admin string) (series, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	out := series{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				out[line[:i]] += v
			}
		}
	}
	return out, sc.Err()
}

// queueEntry is an entry of the admin API's /reversals listing.
type queueEntry struct {
	ID       string `json:"id"`
	Acquirer string `json:"acq"`
	TxnID    string `json:"txn"`
	Attempts int    `json:"attempts"`
	Err      string `json:"err"`
}

// reversals reads /reversals: the pending entries and the dead letters.
func reversals(admin string) (pending, dead []queueEntry, err error) {
	resp, err := http.Get("http://" + admin + "/reversals")
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Pending []queueEntry `json:"pending"`
		Dead    []queueEntry `json:"dead_letters"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, nil, fmt.Errorf("/reversals: %w", err)
	}
	return body.Pending, body.Dead, nil
}

// readJournal returns every record of the journal in dir (the switch must be stopped).
func readJournal(t *testing.T, dir string) []journal.Record {
	t.Helper()
	j, err := journal.Open(journal.Options{Dir: dir})
	if err != nil {
		t.Fatalf("open journal: %v", err)
	}
	defer j.Close()
	r, err := j.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []journal.Record
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read journal: %v", err)
		}
		out = append(out, e.Record)
	}
}

// sink is the ledger sink the tests configure and read back: CRASH_SINK=postgres (the default) or file.
var sink = pickSink(os.Getenv("CRASH_SINK"))

// ledgerSink is a sink the switch ships the journal to, as the test sets it up and reads it back.
type ledgerSink interface {
	// name is what the figures call it.
	name() string
	// configure returns the switch's configuration with this sink in place of the demo's.
	configure(t *testing.T, config string) string
	// keys returns how many times the sink holds each idempotency key.
	keys(t *testing.T, dir string) map[string]int
}

func pickSink(kind string) ledgerSink {
	switch kind {
	case "", "postgres":
		return &postgresSink{}
	case "file":
		return fileSink{}
	}
	panic("CRASH_SINK must be postgres or file, not " + kind)
}

// demoSinkLine is the demo configuration's sink, which a test's sink replaces.
const demoSinkLine = "  - {type: file, path: postings.jsonl}"

// fileSink is the demo's JSON-lines file sink, postings.jsonl: it keeps redeliveries, so keys may repeat.
type fileSink struct{}

func (fileSink) name() string                                 { return "file (postings.jsonl)" }
func (fileSink) configure(_ *testing.T, config string) string { return config }

func (fileSink) keys(t *testing.T, dir string) map[string]int {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "postings.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Key string `json:"idempotency_key"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Key != "" { // a torn last line does not parse
			out[line.Key]++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// postgresSink is the PostgreSQL ledger sink (ledger package): it applies each record once by its
// idempotency key, so the keys it holds must be exactly the journal's, none repeated. Each test gets a table
// of its own in the database of CRASH_PG_DSN (default postgres://postgres@127.0.0.1:5432/test), dropped at
// the end. Without a reachable PostgreSQL the test is skipped (failed under CI).
type postgresSink struct {
	dsn, table string
}

// crashPGDSN is the database the PostgreSQL sink writes to and the test reads back from.
func crashPGDSN() string {
	if v := os.Getenv("CRASH_PG_DSN"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

func (p *postgresSink) name() string { return "postgres (table " + p.table + ")" }

func (p *postgresSink) configure(t *testing.T, config string) string {
	t.Helper()
	if !strings.Contains(config, demoSinkLine) {
		t.Fatalf("config.yaml has no line %q to replace", demoSinkLine)
	}
	p.dsn = crashPGDSN()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.dsn)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL sink: %v", err)
		}
		t.Skipf("PostgreSQL not reachable (%v); CRASH_SINK=file runs the test with the file sink", err)
	}
	conn.Close(ctx)
	p.table = fmt.Sprintf("crash_%d_%d", os.Getpid(), time.Now().UnixNano()%1_000_000_000)
	table, dsn := p.table, p.dsn
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("dropping table %s: %v", table, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize()); err != nil {
			t.Errorf("dropping table %s: %v", table, err)
		}
	})
	return strings.Replace(config, demoSinkLine, fmt.Sprintf("  - {type: postgres, name: ledger-pg, dsn: %q, table: %s}", p.dsn, p.table), 1)
}

func (p *postgresSink) keys(t *testing.T, _ string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT idempotency_key FROM "+pgx.Identifier{p.table}.Sanitize())
	if err != nil {
		t.Fatalf("reading the sink's table %s: %v", p.table, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		out[k]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkSinkKeys is check (b): every journal key reached the sink, the sink holds no key the journals do not,
// and a deduplicating sink holds each key once. It logs the counts.
func checkSinkKeys(t *testing.T, journalKeys, sinkKeys map[string]int) {
	t.Helper()
	var missing, extra, dups, rows int
	for k := range journalKeys {
		if sinkKeys[k] == 0 {
			missing++
			if missing <= 10 {
				t.Errorf("(b) journal record %s never reached the sink", k)
			}
		}
	}
	for k, n := range sinkKeys {
		rows += n
		dups += n - 1
		if journalKeys[k] == 0 {
			extra++
			if extra <= 10 {
				t.Errorf("(b) sink holds %s, which no journal does", k)
			}
		}
	}
	t.Logf("(b) journal %d keys; sink %s: %d rows, %d unique keys, %d repeated deliveries; %d missing from the sink, %d unknown to the journal",
		len(journalKeys), sink.name(), rows, len(sinkKeys), dups, missing, extra)
	if _, file := sink.(fileSink); !file && dups > 0 {
		t.Errorf("(b) the %s sink deduplicates by key, yet holds %d repeated keys", sink.name(), dups)
	}
}

// checkApprovalsJournaled is check (a): every approval a terminal received is journaled, as an approval of
// that terminal and trace (approvedJ: the journal's approved purchases by their unique amount).
func checkApprovalsJournaled(t *testing.T, attempts []attempt, approvedJ map[int64]journal.Record, seenApproved int) {
	t.Helper()
	var missing int
	for _, a := range attempts {
		if !a.Approved {
			continue
		}
		r, ok := approvedJ[a.Amount]
		if !ok || r.Terminal != a.Terminal || r.TerminalSTAN != a.Trace {
			missing++
			if missing <= 10 {
				t.Errorf("(a) approval seen by %s batch %s trace %s amount %d is not journaled", a.Terminal, a.Batch, a.Trace, a.Amount)
			}
		}
	}
	t.Logf("(a) %d approvals seen by terminals, %d of them journaled, %d missing", seenApproved, seenApproved-missing, missing)
	if missing > 0 {
		t.Errorf("(a) %d approvals the terminals received are not in the journal", missing)
	}
}
