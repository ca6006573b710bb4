package limits

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
)

// value reads a counter or gauge.
func value(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	if pb.Counter != nil {
		return pb.Counter.GetValue()
	}
	return pb.Gauge.GetValue()
}

// gathered reads the one sample of the named family from reg.
func gathered(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			m := f.GetMetric()[0]
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// fakeClock is a manually advanced clock for the local limits.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newLocal(t testing.TB, src string) (*Limiter, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	l, err := New(mustParse(t, src), Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l, clk
}

var bg = context.Background()

const localLimits = `
terminal:
  default: {rate: 5, burst: 2}
  overrides:
    VIP: {}
merchant:
  default: {rate: 100, burst: 3}
  overrides:
    M-SLOW: {rate: 1, burst: 1, code: "61"}
channel:
  default: {concurrency: 2}
acquirer:
  overrides:
    boc: {rate: 1, burst: 1}
global: {rate: 1000, burst: 1000}
`

func TestAcquireRefusesWithTheRefusingLimitAndItsCode(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		n    int // requests before the one checked
		want Decision
	}{
		{"terminal burst spent", Request{Terminal: "T1"}, 2,
			Decision{Scope: ScopeTerminal, Key: "T1", Kind: KindRate, Code: "65", Source: "limits.yaml:3"}},
		{"merchant override with its own code", Request{Terminal: "VIP", Merchant: "M-SLOW"}, 1,
			Decision{Scope: ScopeMerchant, Key: "M-SLOW", Kind: KindRate, Code: "61", Source: "limits.yaml:9"}},
		{"merchant default", Request{Terminal: "VIP", Merchant: "M2"}, 3,
			Decision{Scope: ScopeMerchant, Key: "M2", Kind: KindRate, Code: "65", Source: "limits.yaml:7"}},
		{"acquirer default code 91", Request{Terminal: "VIP", Acquirer: "boc"}, 1,
			Decision{Scope: ScopeAcquirer, Key: "boc", Kind: KindRate, Code: "91", Source: "limits.yaml:14"}},
		{"channel concurrency code 96", Request{Terminal: "VIP", Channel: "kiosk"}, 2,
			Decision{Scope: ScopeChannel, Key: "kiosk", Kind: KindConcurrency, Code: "96", Source: "limits.yaml:11"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newLocal(t, localLimits)
			for i := range tt.n {
				if d := l.Acquire(bg, tt.req); !d.Allowed {
					t.Fatalf("request %d refused early: %v", i+1, d)
				}
			}
			if got := l.Acquire(bg, tt.req); got != tt.want {
				t.Errorf("got  %v at %s\nwant %v at %s", got, got.Source, tt.want, tt.want.Source)
			}
		})
	}
}

func TestAcquireSkipsScopesWithoutKeyAndExemptOverrides(t *testing.T) {
	l, _ := newLocal(t, localLimits)
	for i := range 50 {
		// VIP is exempt from the terminal limit; no merchant, channel or acquirer: only global applies.
		if d := l.Acquire(bg, Request{Terminal: "VIP"}); !d.Allowed {
			t.Fatalf("request %d refused: %v", i, d)
		}
	}
}

func TestAcquireRefillsAtTheConfiguredRate(t *testing.T) {
	l, clk := newLocal(t, localLimits)
	req := Request{Terminal: "T1"}
	admitted := 0
	for range 100 { // 10 s at one request per 100 ms against 5/s burst 2
		if l.Acquire(bg, req).Allowed {
			admitted++
		}
		clk.Advance(100 * time.Millisecond)
	}
	if want := 2 + 50 - 1; admitted < want-1 || admitted > want+1 {
		t.Errorf("admitted %d in 10 s at 5/s burst 2, want about %d", admitted, want)
	}
}

func TestRefusalAtALaterLevelBurnsNoEarlierToken(t *testing.T) {
	l, _ := newLocal(t, localLimits)
	// boc admits one request per second; the terminal has a burst of 2.
	if d := l.Acquire(bg, Request{Terminal: "T1", Acquirer: "boc"}); !d.Allowed {
		t.Fatalf("first request refused: %v", d)
	}
	for range 5 {
		if d := l.Acquire(bg, Request{Terminal: "T1", Acquirer: "boc"}); d.Allowed || d.Scope != ScopeAcquirer {
			t.Fatalf("want refusal by acquirer, got %v", d)
		}
	}
	// The five acquirer refusals took nothing from T1: its second token is still there.
	if d := l.Acquire(bg, Request{Terminal: "T1"}); !d.Allowed {
		t.Errorf("terminal token was burnt by refusals at the acquirer: %v", d)
	}
}

func TestConcurrencySlotIsReleasedExactlyOnce(t *testing.T) {
	l, _ := newLocal(t, localLimits)
	req := Request{Terminal: "VIP", Channel: "pos"}
	a, b := l.Acquire(bg, req), l.Acquire(bg, req)
	if !a.Allowed || !b.Allowed || a.Permit == nil {
		t.Fatalf("two slots of two: %v %v", a, b)
	}
	if d := l.Acquire(bg, req); d.Allowed || d.Kind != KindConcurrency {
		t.Fatalf("third in flight: %v, want concurrency refusal", d)
	}
	a.Permit.Release()
	a.Permit.Release() // a second release must not free b's slot
	if d := l.Acquire(bg, req); !d.Allowed {
		t.Fatalf("after release: %v", d)
	}
	if d := l.Acquire(bg, req); d.Allowed {
		t.Fatalf("double release freed a second slot")
	}
	var none *Permit
	none.Release() // nil-safe: requests without a cap get no permit
}

func TestRefusalGivesBackConcurrencySlotsTakenEarlier(t *testing.T) {
	l, _ := newLocal(t, `
channel:
  default: {concurrency: 1}
global: {rate: 1, burst: 1}
`)
	if d := l.Acquire(bg, Request{Channel: "pos"}); !d.Allowed {
		t.Fatal(d)
	} else {
		d.Permit.Release()
	}
	if d := l.Acquire(bg, Request{Channel: "pos"}); d.Allowed || d.Scope != ScopeGlobal {
		t.Fatalf("want global rate refusal, got %v", d)
	}
	e := l.local.get(entryKey{scope: ScopeChannel, key: "pos"}, l.table.Load().cfg.spec(ScopeChannel, "pos"), time.Now())
	if n := e.inflight.Load(); n != 0 {
		t.Errorf("channel in flight after a global refusal = %d, want 0", n)
	}
}

func TestConcurrentAcquireNeverExceedsTheCap(t *testing.T) {
	l, _ := newLocal(t, "channel:\n  default: {concurrency: 3}\n")
	var mu sync.Mutex
	inFlight, peak := 0, 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				d := l.Acquire(bg, Request{Channel: "c"})
				if !d.Allowed {
					continue
				}
				mu.Lock()
				inFlight++
				peak = max(peak, inFlight)
				mu.Unlock()
				mu.Lock()
				inFlight--
				mu.Unlock()
				d.Permit.Release()
			}
		}()
	}
	wg.Wait()
	if peak > 3 {
		t.Errorf("peak in flight %d, cap 3", peak)
	}
}

func TestReloadSwapsLimitsAndKeepsStateOfUnchangedOnes(t *testing.T) {
	l, _ := newLocal(t, `
terminal:
  default: {rate: 1, burst: 3}
merchant:
  default: {rate: 1, burst: 1}
`)
	for range 2 {
		l.Acquire(bg, Request{Terminal: "T1"}) // T1 has 1 token left
	}
	l.Acquire(bg, Request{Merchant: "M1"}) // M1 has none
	// Terminal limit unchanged (moved to another line); merchant limit raised.
	if err := l.Reload(mustParse(t, `
merchant:
  default: {rate: 1, burst: 5}

terminal:
  default: {rate: 1, burst: 3}
`)); err != nil {
		t.Fatal(err)
	}
	if d := l.Acquire(bg, Request{Terminal: "T1"}); !d.Allowed {
		t.Fatalf("T1's last token lost on reload: %v", d)
	}
	if d := l.Acquire(bg, Request{Terminal: "T1"}); d.Allowed {
		t.Fatal("T1's bucket was refilled by a reload that did not change it")
	}
	if d := l.Acquire(bg, Request{Merchant: "M1"}); d.Allowed {
		t.Fatal("a raised burst must keep the tokens left (none), not refill")
	}
	if d := l.Acquire(bg, Request{Merchant: "M1"}); d.Source != "limits.yaml:3" {
		t.Errorf("refusal source after reload = %q, want the new file's line", d.Source)
	}
	// Removing the limit admits at once.
	if err := l.Reload(mustParse(t, "")); err != nil {
		t.Fatal(err)
	}
	if d := l.Acquire(bg, Request{Merchant: "M1"}); !d.Allowed {
		t.Errorf("limit removed but refused: %v", d)
	}
}

func TestReloadFromConcurrencyOnlyToRateLimitsAtTheNewRate(t *testing.T) {
	l, clk := newLocal(t, "terminal:\n  default: {concurrency: 5}\n")
	d := l.Acquire(bg, Request{Terminal: "T1"})
	d.Permit.Release()
	if err := l.Reload(mustParse(t, "terminal:\n  default: {rate: 10, burst: 1}\n")); err != nil {
		t.Fatal(err)
	}
	admitted := 0
	for range 20 {
		clk.Advance(100 * time.Millisecond)
		if l.Acquire(bg, Request{Terminal: "T1"}).Allowed {
			admitted++
		}
		l.Acquire(bg, Request{Terminal: "T1"}) // one more per tick: only one of the two can pass
	}
	if admitted != 20 {
		t.Errorf("admitted %d of 20 ticks at 10/s, burst 1", admitted)
	}
}

func TestNewRejectsClusterLimitsWithoutRedis(t *testing.T) {
	cfg := mustParse(t, "global: {rate: 1, cluster: true}\n")
	if _, err := New(cfg, Options{}); err == nil {
		t.Error("New without Redis accepted a cluster-wide limit")
	}
	l, _ := newLocal(t, "")
	if err := l.Reload(cfg); err == nil {
		t.Error("Reload without Redis accepted a cluster-wide limit")
	}
}

func TestNewRejectsAConfigBuiltInGoWithoutItsSettings(t *testing.T) {
	ok := func() *Config { return mustParse(t, "terminal:\n  default: {rate: 5}\n") }
	tests := []struct {
		name  string
		spoil func(*Config)
	}{
		{"zero value", func(c *Config) { *c = Config{} }},
		{"no lease ttl", func(c *Config) { c.Cluster.LeaseTTL = 0 }},
		{"rate without burst", func(c *Config) { c.Scopes[ScopeTerminal].Default.Burst = 0 }},
		{"no response code", func(c *Config) { c.Scopes[ScopeTerminal].Default.Code = "" }},
	}
	if _, err := New(ok(), Options{}); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	for _, tt := range tests {
		cfg := ok()
		tt.spoil(cfg)
		if _, err := New(cfg, Options{}); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}

func TestNewRejectsARedisClientThatIgnoresDeadlines(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	if _, err := New(mustParse(t, ""), Options{Redis: rdb}); err == nil || !strings.Contains(err.Error(), "ContextTimeoutEnabled") {
		t.Errorf("New with a client that ignores context deadlines: %v", err)
	}
}

func TestMetricsCountAllowedAndRefusedByScope(t *testing.T) {
	reg := prometheus.NewRegistry()
	l, err := New(mustParse(t, localLimits), Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		l.Acquire(bg, Request{Terminal: "T9"})
	}
	refused := value(t, l.m.refused[ScopeTerminal][KindRate][ReasonExceeded])
	if allowed := gathered(t, reg, "railswitch_limits_allowed_total"); allowed != 2 || refused != 1 {
		t.Errorf("allowed %v refused %v, want 2 and 1", allowed, refused)
	}
	if n := gathered(t, reg, "railswitch_limits_local_keys"); n != 2 {
		t.Errorf("local keys = %v, want 2 (T9 and global)", n)
	}
	l.Close()
	if _, err := New(mustParse(t, ""), Options{Registerer: reg}); err != nil {
		t.Errorf("Close did not unregister the metrics: %v", err)
	}
}

func TestDecisionStringNamesTheLimit(t *testing.T) {
	d := Decision{Scope: ScopeTerminal, Key: "T1", Kind: KindRate, Reason: ReasonExceeded, Code: "65"}
	if got, want := d.String(), "refused by terminal T1 rate (exceeded), code 65"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	d = Decision{Scope: ScopeGlobal, Kind: KindConcurrency, Reason: ReasonRedisDown, Code: "96"}
	if got, want := d.String(), "refused by global concurrency (redis_down), code 96"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	if got := (Decision{Allowed: true}).String(); got != "allowed" {
		t.Errorf("%q", got)
	}
}
