package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/simulators/bank"
	"github.com/railswitch/railswitch/specs"
	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines, except gnet's worker pool, which the demo switch's channels start
// once per process and never stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"))
}

func hostSpec(t testing.TB) *codec.Spec {
	t.Helper()
	s, err := specs.Get("iso87-ascii")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startBank serves an in-process bank simulator until the test ends.
func startBank(t testing.TB, cfg bank.Config) (*bank.Server, string) {
	t.Helper()
	cfg.Spec = hostSpec(t)
	cfg.Rand = rand.New(rand.NewPCG(3, 4))
	s, err := bank.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	t.Cleanup(func() { s.Close(); <-done })
	return s, l.Addr().String()
}

func TestParseMix(t *testing.T) {
	tests := []struct {
		in   string
		want Mix
		ok   bool
	}{
		{"purchase=80,balance=10,void=10", Mix{80, 10, 10}, true},
		{"balance=1", Mix{Balance: 1}, true},
		{" purchase=3 , void=1", Mix{Purchase: 3, Void: 1}, true},
		{"refund=5", Mix{}, false},
		{"purchase", Mix{}, false},
		{"purchase=-1", Mix{}, false},
		{"purchase=0", Mix{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMix(tt.in)
			if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
				t.Errorf("ParseMix(%q) = %v, %v", tt.in, got, err)
			}
		})
	}
}

func TestMixPickFollowsTheWeightsExactly(t *testing.T) {
	m := Mix{80, 10, 10}
	var n [numKinds]int
	for i := uint64(0); i < 1000; i++ {
		n[m.pick(i*2654435761)]++
	}
	if n != [numKinds]int{800, 100, 100} {
		t.Errorf("1000 picks gave %v", n)
	}
}

func TestHostBuilderRequests(t *testing.T) {
	spec := hostSpec(t)
	b, err := NewHostBuilder("621234")(spec, 42)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	m := codec.NewMessage(spec)
	if k, err := b.Build(m, Void, now); err != nil || k != Purchase {
		t.Fatalf("void with nothing to void: built %v, %v; want a purchase", k, err)
	}
	pan := m.String(2)
	if m.MTI() != "0200" || m.String(3) != "000000" || len(pan) != 16 || !strings.HasPrefix(pan, "621234") ||
		luhn(pan[:15]) != pan[15:] || m.String(7) != "1127093000" || m.String(11) != "000001" {
		t.Fatalf("purchase: %s 3=%s card ok %v 7=%s 11=%s", m.MTI(), m.String(3), luhn(pan[:15]) == pan[15:], m.String(7), m.String(11))
	}
	resp := codec.NewMessage(spec)
	resp.SetString(39, "00")
	b.Answered(m, resp)
	amount := m.String(4)

	v := codec.NewMessage(spec)
	if k, err := b.Build(v, Void, now); err != nil || k != Void {
		t.Fatalf("void: %v %v", k, err)
	}
	if v.String(3) != "200000" || v.String(4) != amount || v.String(90) != "0200"+"000001"+"1127093000"+"00000000001"+"00000000000" {
		t.Errorf("void 3=%s 4=%s 90=%s", v.String(3), v.String(4), v.String(90))
	}
	bal := codec.NewMessage(spec)
	if k, _ := b.Build(bal, Balance, now); k != Balance || bal.MTI() != "0100" || bal.String(3) != "310000" || bal.Has(4) {
		t.Errorf("balance: %s 3=%s amount present %v", bal.MTI(), bal.String(3), bal.Has(4))
	}
}

func TestClosedLoopAgainstTheBankSimulator(t *testing.T) {
	s, addr := startBank(t, bank.Config{})
	ctl := httptest.NewServer(s.ControlHandler())
	defer ctl.Close()
	rep, err := Run(context.Background(), Config{Target: addr, Spec: hostSpec(t), Terminals: 8, Duration: time.Second,
		Mix: Mix{80, 10, 10}, MetricsURL: ctl.URL + "/metrics"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mode != "closed" || rep.TPS <= 0 || rep.Completed != rep.Sent || rep.Errors != 0 || rep.Timeouts != 0 {
		t.Fatalf("report %+v", rep)
	}
	if rep.Responses["00"] != rep.Completed {
		t.Errorf("responses %v of %d: voids of the terminals' own purchases must be approved too", rep.Responses, rep.Completed)
	}
	if rep.Kinds["void"] == 0 || rep.Kinds["balance"] == 0 {
		t.Errorf("kinds %v", rep.Kinds)
	}
	if rep.CPUPerTxn == nil || *rep.CPUPerTxn <= 0 || rep.LoadgenCPUPerTxn <= 0 {
		t.Errorf("CPU per txn: target %v, own %v", rep.CPUPerTxn, rep.LoadgenCPUPerTxn)
	}
	if !(rep.Latency.P50 > 0 && rep.Latency.P50 <= rep.Latency.P99 && rep.Latency.P99 <= rep.Latency.Max) {
		t.Errorf("latency %+v", rep.Latency)
	}
}

func TestOpenLoopKeepsTheRate(t *testing.T) {
	_, addr := startBank(t, bank.Config{})
	rep, err := Run(context.Background(), Config{Target: addr, Spec: hostSpec(t), Terminals: 4, Rate: 200, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mode != "open" || rep.Sent != 200 || rep.Completed != 200 {
		t.Errorf("mode %s, sent %d, answered %d; want open, 200, 200", rep.Mode, rep.Sent, rep.Completed)
	}
}

func TestOpenLoopChargesStallsToTheRequestsBehindThem(t *testing.T) {
	// One terminal asked for 50/s against a bank that takes 40 ms: every request waits for the one
	// before, so latency from the intended send time grows well past the service time.
	_, addr := startBank(t, bank.Config{Faults: bank.Faults{LatencyMS: 40}})
	rep, err := Run(context.Background(), Config{Target: addr, Spec: hostSpec(t), Terminals: 1, Rate: 50, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Latency.Max < 200 || rep.Latency.P50 < 80 {
		t.Errorf("latency %+v: queueing behind slow replies is not counted", rep.Latency)
	}
}

func TestTimeoutsAndUnmatchedReplies(t *testing.T) {
	tests := []struct {
		name   string
		faults bank.Faults
		check  func(*Report) bool
	}{
		{"no reply counts timeouts", bank.Faults{NoReply: 1}, func(r *Report) bool { return r.Timeouts > 0 && r.Completed == 0 }},
		{"duplicate replies are skipped as unmatched", bank.Faults{Duplicate: 1}, func(r *Report) bool {
			return r.Completed > 0 && r.Unmatched > 0 && r.Errors == 0
		}},
		{"garbage frames count errors", bank.Faults{Garbage: 1}, func(r *Report) bool { return r.Errors > 0 && r.Completed == 0 }},
		{"disconnects count errors and terminals reconnect", bank.Faults{DisconnectAfter: 5}, func(r *Report) bool {
			return r.Errors > 1 && r.Completed > 4
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startBank(t, bank.Config{Faults: tt.faults})
			rep, err := Run(context.Background(), Config{Target: addr, Spec: hostSpec(t), Terminals: 2,
				Duration: 400 * time.Millisecond, Timeout: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(rep) {
				t.Errorf("report: answered %d, timeouts %d, errors %d, unmatched %d", rep.Completed, rep.Timeouts, rep.Errors, rep.Unmatched)
			}
		})
	}
}

func TestRunFailsWhenNothingConnects(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	if _, err := Run(context.Background(), Config{Target: addr, Spec: hostSpec(t), Terminals: 2, Duration: time.Second}); err == nil {
		t.Fatal("no error with nothing listening")
	}
}

func TestReportFiles(t *testing.T) {
	_, addr := startBank(t, bank.Config{Faults: bank.Faults{LatencyMS: 1, JitterMS: 2}})
	rep, err := Run(context.Background(), Config{Target: addr, Spec: hostSpec(t), Terminals: 2, Duration: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	if err := WriteFile(jsonPath, rep.WriteJSON); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(htmlPath, rep.WriteHTML); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	data, _ := os.ReadFile(jsonPath)
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tps", "latency_ms", "responses", "errors", "timeouts", "cpu_us_per_txn", "series"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	lat, _ := m["latency_ms"].(map[string]any)
	for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
		if _, ok := lat[k].(float64); !ok {
			t.Errorf("latency_ms lacks %q", k)
		}
	}
	if len(rep.Series) < 1 || rep.Series[0].Count == 0 {
		t.Errorf("series %+v", rep.Series)
	}
	page, _ := os.ReadFile(htmlPath)
	if bytes.Count(page, []byte("<svg")) != 2 || bytes.Contains(page, []byte("<script")) || !bytes.Contains(page, []byte("<polyline")) ||
		!bytes.Contains(page, []byte("<rect")) {
		t.Errorf("HTML page: want two inline SVG charts (line and bars), no scripts")
	}
}

func TestParseCPU(t *testing.T) {
	tests := []struct {
		text string
		want float64
		ok   bool
	}{
		{"# HELP x\nprocess_cpu_seconds_total 12.5\n", 12.5, true},
		{"process_cpu_seconds_total_other 1\nprocess_cpu_seconds_total{job=\"a\"} 3\n", 3, true},
		{"go_goroutines 5\n", 0, false},
	}
	for _, tt := range tests {
		got, err := parseCPU(strings.NewReader(tt.text))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseCPU(%q) = %v, %v", tt.text, got, err)
		}
	}
}
