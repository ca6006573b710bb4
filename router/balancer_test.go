package router

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// testAcquirer makes an acquirer with one endpoint per weight, named e0, e1...
func testAcquirer(name string, s Strategy, conns int, weights ...int) *Acquirer {
	a := &Acquirer{Name: name, Strategy: s, Breaker: BreakerConfig{Failures: 2, Cooldown: 10 * time.Second}}
	for i, w := range weights {
		a.Endpoints = append(a.Endpoints, Endpoint{Name: fmt.Sprintf("e%d", i), Address: fmt.Sprintf("10.0.0.%d:7001", i),
			Weight: w, Connections: conns})
	}
	return a
}

// allUp reports Up for every link of the acquirers.
func allUp(t *testing.T, b *Balancer, acqs ...*Acquirer) {
	t.Helper()
	for _, a := range acqs {
		for _, e := range a.Endpoints {
			for c := range max(e.Connections, 1) {
				if err := b.Observe(LinkID{a.Name, e.Name, c}, Up); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// send picks, sends and completes one request, and gives the endpoint it went to.
func send(t *testing.T, b *Balancer, a *Acquirer, fallbacks ...*Acquirer) string {
	t.Helper()
	at := b.Begin(a, fallbacks)
	c, err := at.Next()
	if err != nil {
		t.Fatal(err)
	}
	at.Sent()
	at.Done(Success)
	return c.Link.Acquirer + "/" + c.Link.Endpoint
}

func TestStrategiesSpreadRequestsAsConfigured(t *testing.T) {
	tests := []struct {
		name string
		acq  *Acquirer
		want map[string]int
	}{
		{"round-robin: evenly", testAcquirer("rr", RoundRobin, 1, 1, 1, 1), map[string]int{"rr/e0": 1000, "rr/e1": 1000, "rr/e2": 1000}},
		{"weighted: by weight", testAcquirer("w", Weighted, 1, 3, 1, 2), map[string]int{"w/e0": 1500, "w/e1": 500, "w/e2": 1000}},
		{"weighted: weight 0 is a standby", testAcquirer("s", Weighted, 1, 1, 0), map[string]int{"s/e0": 3000}},
		{"least in flight: evenly when requests complete", testAcquirer("l", LeastInFlight, 1, 1, 1, 1),
			map[string]int{"l/e0": 1000, "l/e1": 1000, "l/e2": 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBalancer([]*Acquirer{tt.acq}, nil, nil)
			allUp(t, b, tt.acq)
			got := map[string]int{}
			for range 3000 {
				got[send(t, b, tt.acq)]++
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("spread = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWeightedInterleavesRatherThanRuns(t *testing.T) {
	a := testAcquirer("w", Weighted, 1, 5, 1)
	b := NewBalancer([]*Acquirer{a}, nil, nil)
	allUp(t, b, a)
	run, longest, last := 0, 0, ""
	for range 60 {
		e := send(t, b, a)
		if e == last {
			run++
		} else {
			run = 1
		}
		last, longest = e, max(longest, run)
	}
	if longest > 5 {
		t.Fatalf("longest run on one endpoint = %d, want at most its weight 5", longest)
	}
}

func TestLeastInFlightPicksTheLeastLoadedEndpointAndLink(t *testing.T) {
	a := testAcquirer("l", LeastInFlight, 2, 1, 1)
	b := NewBalancer([]*Acquirer{a}, nil, nil)
	allUp(t, b, a)
	count := map[LinkID]int{}
	var held []Attempt
	for range 8 { // requests that stay in flight
		at := b.Begin(a, nil)
		c, err := at.Next()
		if err != nil {
			t.Fatal(err)
		}
		at.Sent()
		count[c.Link]++
		held = append(held, at)
	}
	for id, n := range count {
		if n != 2 {
			t.Errorf("%v holds %d requests, want 2 (of 8 over 2 endpoints x 2 links)", id, n)
		}
	}
	for i := range held {
		held[i].Done(Success)
	}
	for _, s := range b.Status("l") {
		if s.InFlight != 0 {
			t.Errorf("%s: %d in flight after every Done", s.Endpoint, s.InFlight)
		}
	}
}

func TestLinkHealthDecidesWhichEndpointsArePicked(t *testing.T) {
	a := testAcquirer("rr", RoundRobin, 1, 1, 1)
	b := NewBalancer([]*Acquirer{a}, nil, nil)
	at := b.Begin(a, nil)
	if _, err := at.Next(); !errors.Is(err, ErrNoEndpoint) {
		t.Fatalf("links start down: err = %v, want ErrNoEndpoint", err)
	}
	allUp(t, b, a)
	_ = b.Observe(LinkID{"rr", "e0", 0}, Down)
	for range 10 {
		if e := send(t, b, a); e != "rr/e1" {
			t.Fatalf("picked %s while e0 is down", e)
		}
	}
	_ = b.Observe(LinkID{"rr", "e0", 0}, Up)
	seen := map[string]bool{}
	for range 4 {
		seen[send(t, b, a)] = true
	}
	if !seen["rr/e0"] {
		t.Fatal("e0 is not picked after it came back up")
	}
	if err := b.Observe(LinkID{"rr", "e9", 0}, Up); !errors.Is(err, ErrUnknownLink) {
		t.Fatalf("Observe of an unknown link: %v", err)
	}
}

func TestBreakerTransitions(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	b := newBreaker(BreakerConfig{Failures: 2, Cooldown: 10 * time.Second, Probes: 1, Successes: 2}, clk.now)
	type step struct {
		do    string // "ok", "fail", "probe-ok", "probe-fail", "acquire", "refused", "wait"
		state BreakerState
	}
	steps := []step{
		{"fail", Closed}, {"ok", Closed}, // a success resets the count of consecutive failures
		{"fail", Closed}, {"fail", Open},
		{"refused", Open}, {"wait", Open}, // 10 s have passed: the next request is a probe
		{"probe", HalfOpen}, {"refused", HalfOpen}, // one probe at a time
		{"probe-ok", HalfOpen}, {"probe", HalfOpen}, {"probe-ok", Closed},
		{"fail", Closed}, {"fail", Open}, {"wait", Open},
		{"probe", HalfOpen}, {"probe-fail", Open}, {"refused", Open}, // a failed probe opens it again, for a new cool-down
		{"wait", Open}, {"probe", HalfOpen}, {"unused", HalfOpen}, {"probe", HalfOpen}, // an unsent probe is given back
	}
	for i, s := range steps {
		switch s.do {
		case "ok", "fail":
			b.record(s.do == "ok", false)
		case "probe-ok", "probe-fail":
			b.record(s.do == "probe-ok", true)
		case "probe":
			if ok, probe := b.acquire(); !ok || !probe {
				t.Fatalf("step %d: acquire = %v, %v; want a probe", i, ok, probe)
			}
		case "unused":
			b.unused(true)
		case "refused":
			if ok, _ := b.acquire(); ok || b.ready() {
				t.Fatalf("step %d: a request was let through", i)
			}
		case "wait":
			clk.advance(10 * time.Second)
		}
		if b.State() != s.state {
			t.Fatalf("step %d (%s): state %s, want %s", i, s.do, b.State(), s.state)
		}
	}
}

func TestOpenBreakerSendsTrafficElsewhereThenProbes(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	a := testAcquirer("rr", RoundRobin, 1, 1, 1)
	b := NewBalancer([]*Acquirer{a}, clk.now, nil)
	allUp(t, b, a)
	for fails := 0; fails < 2; { // time out two requests on e0
		at := b.Begin(a, nil)
		c, _ := at.Next()
		at.Sent()
		if c.Link.Endpoint == "e0" {
			at.Done(Timeout)
			fails++
		} else {
			at.Done(Success)
		}
	}
	for range 5 {
		if e := send(t, b, a); e != "rr/e1" {
			t.Fatalf("picked %s with e0's breaker open", e)
		}
	}
	clk.advance(10 * time.Second)
	seen := map[string]int{}
	for range 4 {
		seen[send(t, b, a)]++
	}
	if seen["rr/e0"] == 0 || b.Status("rr")[0].Breaker != Closed {
		t.Fatalf("after the cool-down: picks %v, e0 breaker %s; want a probe to e0 that closes it", seen, b.Status("rr")[0].Breaker)
	}
}

func TestFailoverOnlyForRequestsNeverSent(t *testing.T) {
	pri := testAcquirer("ccb", RoundRobin, 1, 1, 1)
	fb := testAcquirer("icbc", RoundRobin, 1, 1)
	b := NewBalancer([]*Acquirer{pri, fb}, nil, nil)
	allUp(t, b, pri, fb)

	// The fallbacks name the primary again (a BIN-table rule's fallbacks can): it is not tried twice.
	at := b.Begin(pri, []*Acquirer{pri, fb})
	var order []string
	for {
		c, err := at.Next()
		if errors.Is(err, ErrNoEndpoint) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, c.Link.Acquirer)
		at.NotSent()
	}
	if fmt.Sprint(order) != "[ccb ccb icbc]" {
		t.Fatalf("not-sent failover went %v, want both ccb endpoints, then the fallback icbc", order)
	}

	at = b.Begin(pri, []*Acquirer{fb})
	if _, err := at.Next(); err != nil {
		t.Fatal(err)
	}
	at.Sent()
	if _, err := at.Next(); !errors.Is(err, ErrAlreadySent) {
		t.Fatalf("Next after Sent: %v, want ErrAlreadySent", err)
	}
	at.Done(Timeout)
	if _, err := at.Next(); !errors.Is(err, ErrAlreadySent) {
		t.Fatalf("Next after Done: %v, want ErrAlreadySent", err)
	}

	for _, e := range pri.Endpoints {
		_ = b.Observe(LinkID{"ccb", e.Name, 0}, Down)
	}
	if got := send(t, b, pri, fb); got != "icbc/e0" {
		t.Fatalf("with every ccb link down the request went to %s, want the fallback", got)
	}
	for _, a := range []string{"ccb", "icbc"} {
		for _, s := range b.Status(a) {
			if s.InFlight != 0 {
				t.Errorf("%s/%s: %d in flight at the end", a, s.Endpoint, s.InFlight)
			}
		}
	}
}

func TestPinnedAttemptUsesOnlyItsLink(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	a := testAcquirer("ccb", RoundRobin, 2, 1, 1)
	b := NewBalancer([]*Acquirer{a}, clk.now, nil)
	allUp(t, b, a)
	id := LinkID{"ccb", "e1", 1}
	ep, _ := b.find(id)
	ep.br.record(false, false)
	ep.br.record(false, false) // open: a reversal still goes to its original link

	at := b.BeginPinned(id)
	c, err := at.Next()
	if err != nil || c.Link != id {
		t.Fatalf("pinned pick = %v, %v; want %v", c.Link, err, id)
	}
	at.NotSent()
	if _, err := at.Next(); !errors.Is(err, ErrLinkDown) {
		t.Fatalf("pinned retry after NotSent: %v, want ErrLinkDown (never another link)", err)
	}

	_ = b.Observe(id, Down)
	at = b.BeginPinned(id)
	if _, err := at.Next(); !errors.Is(err, ErrLinkDown) {
		t.Fatalf("pinned pick of a down link: %v, want ErrLinkDown", err)
	}
	at = b.BeginPinned(LinkID{"ccb", "e1", 7})
	if _, err := at.Next(); !errors.Is(err, ErrUnknownLink) {
		t.Fatalf("pinned pick of an unknown link: %v, want ErrUnknownLink", err)
	}
}

func TestNewBalancerKeepsTheStateOfUnchangedEndpoints(t *testing.T) {
	a := testAcquirer("ccb", RoundRobin, 1, 1, 1)
	old := NewBalancer([]*Acquirer{a}, nil, nil)
	allUp(t, old, a)
	changed := testAcquirer("ccb", RoundRobin, 1, 1, 1)
	changed.Endpoints[1].Address = "10.9.9.9:7001"
	nb := NewBalancer([]*Acquirer{changed}, nil, old)
	st := nb.Status("ccb")
	if st[0].LinksUp != 1 || st[1].LinksUp != 0 {
		t.Fatalf("links up = %d, %d; want the unchanged e0 up and the moved e1 down", st[0].LinksUp, st[1].LinksUp)
	}
}

func TestConcurrentAttemptsBalanceTheirInFlightCounts(t *testing.T) {
	a := testAcquirer("l", LeastInFlight, 2, 1, 1, 1)
	fb := testAcquirer("f", Weighted, 1, 2, 1)
	b := NewBalancer([]*Acquirer{a, fb}, nil, nil)
	allUp(t, b, a, fb)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				at := b.Begin(a, []*Acquirer{fb})
				if _, err := at.Next(); err != nil {
					t.Error(err)
					return
				}
				if (i+g)%3 == 0 {
					at.NotSent()
					if _, err := at.Next(); err != nil {
						t.Error(err)
						return
					}
				}
				at.Sent()
				at.Done(Success)
			}
		})
	}
	wg.Wait()
	for _, name := range []string{"l", "f"} {
		for _, s := range b.Status(name) {
			if s.InFlight != 0 {
				t.Errorf("%s/%s: %d in flight", name, s.Endpoint, s.InFlight)
			}
		}
	}
}

// BenchmarkPick measures one request's balancer work: Begin, Next, Sent, Done.
func BenchmarkPick(b *testing.B) {
	for _, s := range []Strategy{RoundRobin, Weighted, LeastInFlight} {
		b.Run(s.String(), func(b *testing.B) {
			a := testAcquirer("a", s, 4, 3, 2, 1, 1)
			bal := NewBalancer([]*Acquirer{a}, nil, nil)
			for _, e := range a.Endpoints {
				for c := range e.Connections {
					_ = bal.Observe(LinkID{"a", e.Name, c}, Up)
				}
			}
			b.ReportAllocs()
			start, n := cpuTime(), 0
			for ; b.Loop(); n++ {
				at := bal.Begin(a, nil)
				if _, err := at.Next(); err != nil {
					b.Fatal(err)
				}
				at.Sent()
				at.Done(Success)
			}
			reportCPU(b, start, n)
		})
	}
}
