package limits

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// testPipeline is Options.Pipeline for the nodes newNode builds; TestPipelined... runs the tests again with it set.
var testPipeline int

// node is one switch node's limiter in a miniredis test.
type node struct {
	*Limiter
	clk  *fakeClock
	reg  *prometheus.Registry
	logs *observer.ObservedLogs
}

// startMini runs a miniredis whose clock (read by the scripts through TIME) is frozen at t0.
func startMini(t *testing.T) (*miniredis.Miniredis, time.Time) {
	m := miniredis.RunT(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m.SetTime(t0)
	return m, t0
}

func newNode(t testing.TB, addr, src, id string) *node {
	t.Helper()
	// Fail fast on a dead server, as docs/limits.md advises for production clients.
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond, DialerRetries: 1,
		ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	core, logs := observer.New(zapcore.InfoLevel)
	n := &node{clk: newFakeClock(), reg: prometheus.NewRegistry(), logs: logs}
	cfg := mustParse(t, src)
	if !strings.Contains(src, "timeout") {
		cfg.Cluster.Timeout = 2 * time.Second // the machine is shared and busy; outages here are refused connections
	}
	l, err := New(cfg, Options{Redis: rdb, Registerer: n.reg, Logger: zap.New(core), Now: n.clk.Now, NodeID: id, Pipeline: testPipeline})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	n.Limiter = l
	return n
}

// admitted counts how many of n requests are allowed, releasing each permit at once.
func (n *node) admitted(req Request, count int) int {
	ok := 0
	for range count {
		if d := n.Acquire(bg, req); d.Allowed {
			ok++
			d.Permit.Release()
		}
	}
	return ok
}

func TestClusterRateAdmitsTheBurstThenTheRate(t *testing.T) {
	m, t0 := startMini(t)
	n := newNode(t, m.Addr(), "acquirer:\n  default: {rate: 10, burst: 5, cluster: true}\n", "a")
	req := Request{Acquirer: "icbc"}
	steps := []struct {
		at    time.Duration // miniredis clock
		tries int
		want  int
	}{
		{0, 8, 5},                            // the burst
		{100 * time.Millisecond, 3, 1},       // one interval later, one token
		{350 * time.Millisecond, 3, 2},       // 250 ms more: 2.5 tokens, 2 whole
		{10 * time.Second, 20, 5},            // a long pause refills only up to the burst
		{10*time.Second + 999_999, 1, 0},     // just short of the next interval
		{10*time.Second + 100_000_000, 1, 1}, // exactly one interval
	}
	for _, s := range steps {
		m.SetTime(t0.Add(s.at))
		if got := n.admitted(req, s.tries); got != s.want {
			t.Errorf("at +%v: admitted %d of %d, want %d", s.at, got, s.tries, s.want)
		}
	}
	d := n.Acquire(bg, req)
	if d.Allowed || d.Scope != ScopeAcquirer || d.Key != "icbc" || d.Kind != KindRate || d.Code != "91" {
		t.Errorf("refusal = %v", d)
	}
}

func TestClusterKeysShareOneHashTag(t *testing.T) {
	m, _ := startMini(t)
	n := newNode(t, m.Addr(), `
cluster: {key_prefix: "rs:t1"}
terminal:
  default: {rate: 10, cluster: true}
acquirer:
  default: {concurrency: 10, cluster: true}
global: {rate: 100, cluster: true}
`, "a")
	n.Acquire(bg, Request{Terminal: "T1", Acquirer: "boc"})
	keys := m.Keys()
	want := []string{"{rs:t1}:lease:acquirer:boc", "{rs:t1}:rate:global", "{rs:t1}:rate:terminal:T1"}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("keys %q, want %q", keys, want)
	}
}

func TestClusterRefusalTakesNothingFromTheOtherLimits(t *testing.T) {
	m, _ := startMini(t)
	n := newNode(t, m.Addr(), `
terminal:
  default: {rate: 1, burst: 1}
acquirer:
  default: {rate: 100, burst: 100, concurrency: 5, cluster: true}
global: {rate: 1, burst: 1, cluster: true}
`, "a")
	if got := n.admitted(Request{Terminal: "T0", Acquirer: "boc"}, 1); got != 1 {
		t.Fatal("first request refused")
	}
	tatBefore, _ := m.Get("{railswitch:limits}:rate:acquirer:boc")
	d := n.Acquire(bg, Request{Terminal: "T1", Acquirer: "boc"})
	if d.Allowed || d.Scope != ScopeGlobal || d.Code != "96" {
		t.Fatalf("want refusal by the global limit, got %v", d)
	}
	if tat, _ := m.Get("{railswitch:limits}:rate:acquirer:boc"); tat != tatBefore {
		t.Errorf("acquirer bucket moved from %s to %s on a global refusal", tatBefore, tat)
	}
	if members, _ := m.ZMembers("{railswitch:limits}:lease:acquirer:boc"); len(members) != 0 {
		t.Errorf("leases left after a refusal: %v", members)
	}
	e := n.local.get(entryKey{scope: ScopeTerminal, key: "T1"}, n.table.Load().cfg.spec(ScopeTerminal, "T1"), n.clk.Now())
	if tokens := e.lim.Load().TokensAt(n.clk.Now()); tokens != 1 {
		t.Errorf("T1 has %v tokens after a cluster refusal, want 1 (untouched)", tokens)
	}
}

func TestClusterConcurrencyLeasesAreReleasedOnce(t *testing.T) {
	m, _ := startMini(t)
	n := newNode(t, m.Addr(), "acquirer:\n  default: {concurrency: 2, cluster: true}\n", "a")
	req := Request{Acquirer: "boc"}
	a, b := n.Acquire(bg, req), n.Acquire(bg, req)
	if !a.Allowed || !b.Allowed {
		t.Fatalf("%v %v", a, b)
	}
	if d := n.Acquire(bg, req); d.Allowed || d.Kind != KindConcurrency || d.Code != "91" {
		t.Fatalf("third lease: %v", d)
	}
	a.Permit.Release()
	a.Permit.Release()
	if members, _ := m.ZMembers("{railswitch:limits}:lease:acquirer:boc"); len(members) != 1 {
		t.Errorf("leases after releasing one of two (twice): %v", members)
	}
	if len(n.cluster.held) != 1 {
		t.Errorf("node renews %d leases, want 1", len(n.cluster.held))
	}
}

func TestDeadNodesLeasesExpireAndReturn(t *testing.T) {
	m, t0 := startMini(t)
	src := "cluster: {lease_ttl: 5s}\nacquirer:\n  default: {concurrency: 2, cluster: true}\n"
	dead := newNode(t, m.Addr(), src, "dead")
	live := newNode(t, m.Addr(), src, "live")
	req := Request{Acquirer: "boc"}
	for range 2 {
		if d := dead.Acquire(bg, req); !d.Allowed {
			t.Fatal(d)
		}
	}
	dead.Close() // crashes holding both leases: no release, no renewal
	if d := live.Acquire(bg, req); d.Allowed {
		t.Fatal("the dead node's leases were not counted")
	}
	m.SetTime(t0.Add(4 * time.Second))
	if d := live.Acquire(bg, req); d.Allowed {
		t.Fatal("leases returned before lease_ttl")
	}
	m.SetTime(t0.Add(5*time.Second + time.Millisecond))
	if got := live.admitted(req, 1); got != 1 {
		t.Fatal("the dead node's leases did not expire after lease_ttl")
	}
}

func TestHolderRenewsItsLeases(t *testing.T) {
	m, t0 := startMini(t)
	src := "cluster: {lease_ttl: 300ms}\nacquirer:\n  default: {concurrency: 1, cluster: true}\n"
	holder := newNode(t, m.Addr(), src, "holder")
	other := newNode(t, m.Addr(), src, "other")
	req := Request{Acquirer: "boc"}
	d := holder.Acquire(bg, req)
	if !d.Allowed {
		t.Fatal(d)
	}
	const key = "{railswitch:limits}:lease:acquirer:boc"
	first, _ := m.ZScore(key, d.Permit.leaseID)
	// Redis time moves on; the holder renews every 100 ms of real time.
	m.SetTime(t0.Add(250 * time.Millisecond))
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if score, _ := m.ZScore(key, d.Permit.leaseID); score > first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the holder did not renew its lease")
		}
	}
	m.SetTime(t0.Add(400 * time.Millisecond)) // past the first deadline, before the renewed one
	if o := other.Acquire(bg, req); o.Allowed {
		t.Fatal("a renewed lease expired at its first deadline")
	}
	d.Permit.Release()
	if got := other.admitted(req, 1); got != 1 {
		t.Fatal("the released lease still counts")
	}
}

const outageLimits = `
cluster: {nodes: 2, retry_interval: 50ms, timeout: 2s}
acquirer:
  default: {rate: 10, burst: 10, concurrency: 4, cluster: true}
  overrides:
    strict: {rate: 10, cluster: true, on_redis_down: refuse, down_code: "92"}
    leases: {concurrency: 4, cluster: true, on_redis_down: refuse}
`

func TestOutagePolicyLocalAdmitsThisNodesShare(t *testing.T) {
	m, _ := startMini(t)
	n := newNode(t, m.Addr(), outageLimits, "a")
	m.Close()
	req := Request{Acquirer: "boc"}
	// Half of burst 10 at a frozen local clock; the first call finds Redis down.
	if got := n.admitted(req, 20); got != 5 {
		t.Errorf("admitted %d during the outage, want 5 (half the burst)", got)
	}
	d := n.Acquire(bg, req)
	if d.Allowed || d.Scope != ScopeAcquirer || d.Reason != ReasonExceeded || d.Code != "91" {
		t.Errorf("refusal by the local share = %v", d)
	}
	n.clk.Advance(time.Second)
	if got := n.admitted(req, 20); got != 5 {
		t.Errorf("admitted %d in the next second, want 5 (half of 10/s)", got)
	}
	// Concurrency: half of 4.
	var held []Decision
	for range 4 {
		n.clk.Advance(time.Second)
		if d := n.Acquire(bg, req); d.Allowed {
			held = append(held, d)
		}
	}
	if len(held) != 2 {
		t.Errorf("%d in flight during the outage, want 2 (half of 4)", len(held))
	}
	for _, d := range held {
		d.Permit.Release()
	}
	if up := value(t, n.m.redisUp); up != 0 {
		t.Errorf("redis_up = %v during the outage", up)
	}
	if v := value(t, n.m.outageChecks[PolicyLocal]); v < 40 {
		t.Errorf("outage checks (local) = %v, want one per request", v)
	}
}

func TestOutagePolicyRefuseRefusesWithTheDownCode(t *testing.T) {
	tests := []struct {
		key  string
		kind Kind
		code string
	}{
		{"strict", KindRate, "92"},
		{"leases", KindConcurrency, "96"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			m, _ := startMini(t)
			n := newNode(t, m.Addr(), outageLimits, "a")
			m.Close()
			for range 3 {
				d := n.Acquire(bg, Request{Acquirer: tt.key})
				if d.Allowed || d.Reason != ReasonRedisDown || d.Kind != tt.kind || d.Code != tt.code {
					t.Fatalf("got %v, want refusal (redis_down) with %s", d, tt.code)
				}
			}
			if v := value(t, n.m.refused[ScopeAcquirer][tt.kind][ReasonRedisDown]); v != 3 {
				t.Errorf("refused{reason=redis_down} = %v, want 3", v)
			}
		})
	}
}

func TestRecoveryAfterAnOutageIsAutomaticAndLoggedOnce(t *testing.T) {
	m, _ := startMini(t)
	n := newNode(t, m.Addr(), outageLimits, "a")
	req := Request{Acquirer: "strict"}
	if got := n.admitted(req, 1); got != 1 {
		t.Fatal("refused before the outage")
	}
	m.Close()
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) { // many requests, several retries of Redis
		if d := n.Acquire(bg, req); d.Reason != ReasonRedisDown {
			t.Fatalf("during the outage: %v", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if errs := value(t, n.m.redisErrors); errs < 1 || errs > 10 {
		t.Errorf("redis errors = %v over 300 ms with a probe every 50 ms, want a handful, not one per request", errs)
	}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); n.cluster.down.Load() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // the probe runs every retry interval (50 ms)
	}
	if got := n.admitted(req, 1); got != 1 {
		t.Fatal("not admitted through Redis after it came back")
	}
	if up := value(t, n.m.redisUp); up != 1 {
		t.Errorf("redis_up = %v after recovery", up)
	}
	down := n.logs.FilterMessageSnippet("unreachable").Len()
	back := n.logs.FilterMessageSnippet("reachable again").Len()
	if down < 1 || down > 2 || back != 1 {
		t.Errorf("log lines: %d unreachable, %d reachable again; want 1-2 and 1 (rate-limited, not per request)", down, back)
	}
}

func TestCallerCancellationDoesNotMarkRedisDown(t *testing.T) {
	m, _ := startMini(t)
	n := newNode(t, m.Addr(), outageLimits, "a")
	ctx, cancel := context.WithCancel(bg)
	cancel()
	d := n.Acquire(ctx, Request{Acquirer: "strict"})
	if d.Allowed || d.Reason != ReasonRedisDown {
		t.Errorf("cancelled request: %v, want the outage policy for this request", d)
	}
	if n.cluster.down.Load() {
		t.Error("a cancelled caller marked Redis down")
	}
	if got := n.admitted(Request{Acquirer: "strict"}, 1); got != 1 {
		t.Error("the next request did not go to Redis")
	}
}

func TestHangingRedisCostsOneTimeoutThenThePolicy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn // accepted and never answered
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	n := newNode(t, ln.Addr().String(), `
cluster: {timeout: 100ms, retry_interval: 1h}
global: {rate: 10, cluster: true, on_redis_down: refuse}
`, "a")
	start := time.Now()
	d := n.Acquire(bg, Request{})
	if took := time.Since(start); took < 90*time.Millisecond || took > time.Second {
		t.Errorf("first call took %v, want about the 100 ms timeout", took)
	}
	if d.Allowed || d.Reason != ReasonRedisDown || !n.cluster.down.Load() {
		t.Fatalf("got %v, want refusal by policy with Redis marked down", d)
	}
	start = time.Now()
	for range 100 {
		n.Acquire(bg, Request{})
	}
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("100 calls while Redis is down took %v: they must not wait for it", took)
	}
}

func TestScriptsReloadAfterRedisForgetsThem(t *testing.T) {
	m, _ := startMini(t)
	n := newNode(t, m.Addr(), "global: {rate: 100, cluster: true}\n", "a")
	if got := n.admitted(Request{}, 1); got != 1 {
		t.Fatal("refused")
	}
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	if err := rdb.ScriptFlush(bg).Err(); err != nil {
		t.Fatal(err)
	}
	if d := n.Acquire(bg, Request{}); !d.Allowed {
		t.Fatalf("after SCRIPT FLUSH: %v", d)
	}
}

func TestConcurrentClusterChecksSpendTheBudgetExactly(t *testing.T) {
	m, _ := startMini(t) // frozen clock: no refill during the test
	n := newNode(t, m.Addr(), "acquirer:\n  default: {rate: 1, burst: 100, concurrency: 1000, cluster: true}\n", "a")
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := n.admitted(Request{Acquirer: "boc"}, 25)
			mu.Lock()
			admitted += got
			mu.Unlock()
		}()
	}
	wg.Wait()
	if admitted != 100 {
		t.Errorf("500 concurrent checks against burst 100 admitted %d", admitted)
	}
	if members, _ := m.ZMembers("{railswitch:limits}:lease:acquirer:boc"); len(members) != 0 {
		t.Errorf("%d leases left after every permit was released", len(members))
	}
}

func TestPipelinedChecksBehaveLikeSingleCalls(t *testing.T) {
	testPipeline = 16
	defer func() { testPipeline = 0 }()
	for _, tt := range []struct {
		name string
		test func(*testing.T)
	}{
		{"rate", TestClusterRateAdmitsTheBurstThenTheRate},
		{"hash tag", TestClusterKeysShareOneHashTag},
		{"refusal takes nothing", TestClusterRefusalTakesNothingFromTheOtherLimits},
		{"leases", TestClusterConcurrencyLeasesAreReleasedOnce},
		{"dead node", TestDeadNodesLeasesExpireAndReturn},
		{"renewal", TestHolderRenewsItsLeases},
		{"outage local", TestOutagePolicyLocalAdmitsThisNodesShare},
		{"outage refuse", TestOutagePolicyRefuseRefusesWithTheDownCode},
		{"recovery", TestRecoveryAfterAnOutageIsAutomaticAndLoggedOnce},
		{"cancellation", TestCallerCancellationDoesNotMarkRedisDown},
		{"hanging redis", TestHangingRedisCostsOneTimeoutThenThePolicy},
		{"script flush", TestScriptsReloadAfterRedisForgetsThem},
		{"concurrent budget", TestConcurrentClusterChecksSpendTheBudgetExactly},
	} {
		t.Run(tt.name, tt.test)
	}
}
