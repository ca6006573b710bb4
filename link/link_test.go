package link

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// events records what a link reported.
type events struct {
	mu   sync.Mutex
	list []Event
}

func (e *events) on(_ LinkID, ev Event) {
	e.mu.Lock()
	e.list = append(e.list, ev)
	e.mu.Unlock()
}

func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return fmt.Sprint(e.list)
}

func (e *events) count(ev Event) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, x := range e.list {
		if x == ev {
			n++
		}
	}
	return n
}

func newCounter(t testing.TB) Counter {
	t.Helper()
	c, err := NewLocalCounter(CounterConfig{Node: 1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testConfig is a link to b with echo off, short timeouts and fast redial.
func testConfig(t testing.TB, b *fakeBank) Config {
	return Config{
		ID:            LinkID{Acquirer: "bank1", Endpoint: "a", Conn: 0},
		Address:       b.addr(),
		Spec:          b.spec,
		Counter:       newCounter(t),
		EchoInterval:  -1,
		NetTimeout:    2 * time.Second,
		Backoff:       Backoff{Base: 2 * time.Millisecond, Max: 10 * time.Millisecond},
		SweepInterval: 2 * time.Millisecond,
	}
}

// startLink starts a link and closes it when the test ends.
func startLink(t testing.TB, cfg Config) *Link {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l.Close(ctx)
	})
	return l
}

func waitState(t testing.TB, l *Link, s State) {
	t.Helper()
	waitFor(t, "link "+s.String(), func() bool { return l.State() == s })
}

// purchase builds an 0200 with the given STAN and terminal id.
func purchase(t testing.TB, spec *codec.Spec, stan, tid string) *codec.Message {
	t.Helper()
	m := codec.NewMessage(spec)
	err := errors.Join(m.SetMTI("0200"), m.SetString(3, "000000"), m.SetString(4, "000000001000"),
		m.SetString(7, "1127093001"), m.SetString(11, stan), m.SetString(41, tid))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func soon() time.Time { return time.Now().Add(2 * time.Second) }

func TestSendIsRefusedUntilSignOnIsAnswered(t *testing.T) {
	b := newFakeBank(t)
	release := make(chan struct{})
	b.handle = func(c *bankConn, req *codec.Message) {
		if req.MTI() == "0800" {
			go func() { <-release; c.send(answer(req, "00")) }()
			return
		}
		c.send(answer(req, "00"))
	}
	b.start()
	l := startLink(t, testConfig(t, b))
	waitState(t, l, StateSigningOn)

	if _, err := l.Send(context.Background(), purchase(t, b.spec, "000001", "TERM0001"), soon()); !errors.Is(err, ErrNotReady) || Written(err) {
		t.Fatalf("send while signing on: %v, want ErrNotReady and not written", err)
	}
	close(release)
	waitState(t, l, StateReady)
	resp, err := l.Send(context.Background(), purchase(t, b.spec, "000001", "TERM0001"), soon())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	if got := b.received(); len(got) != 2 || got[0] != "0800/001" || got[1] != "0200" {
		t.Errorf("bank received %v, want sign-on then the purchase", got)
	}
}

func TestSignOnUsesTheAcquirersCodeAndIsRetriedWhenRefused(t *testing.T) {
	for _, tc := range []struct{ configured, want string }{{"", "0800/001"}, {"101", "0800/101"}} {
		t.Run(tc.want, func(t *testing.T) {
			b := newFakeBank(t)
			var signOns atomic32
			b.handle = func(c *bankConn, req *codec.Message) {
				code := "00"
				if req.MTI() == "0800" && signOns.add() == 1 {
					code = "91" // the first sign-on is refused
				}
				c.send(answer(req, code))
			}
			b.start()
			cfg := testConfig(t, b)
			cfg.SignOnCode = tc.configured
			ev := &events{}
			cfg.OnEvent = ev.on
			l := startLink(t, cfg)
			waitState(t, l, StateReady)
			got := b.received()
			if len(got) != 2 || got[0] != tc.want || got[1] != tc.want {
				t.Errorf("bank received %v, want two sign-ons %s", got, tc.want)
			}
			if n := b.accepted.Load(); n != 2 {
				t.Errorf("%d connections, want a redial after the refused sign-on", n)
			}
			if ev.count(Up) != 1 || ev.count(Down) != 0 {
				t.Errorf("events %v: want one Up and no Down (never ready before)", ev)
			}
		})
	}
}

// atomic32 is a counter for handlers.
type atomic32 struct {
	mu sync.Mutex
	n  int
}

func (a *atomic32) add() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	return a.n
}

func TestEchoMissesMakeTheLinkRedial(t *testing.T) {
	b := newFakeBank(t)
	b.handle = func(c *bankConn, req *codec.Message) {
		if req.String(70) == "301" && b.accepted.Load() == 1 {
			return // the first connection stops answering echoes
		}
		c.send(answer(req, "00"))
	}
	b.start()
	cfg := testConfig(t, b)
	cfg.EchoInterval, cfg.EchoMisses, cfg.NetTimeout = 10*time.Millisecond, 2, 20*time.Millisecond
	ev := &events{}
	cfg.OnEvent = ev.on
	l := startLink(t, cfg)
	waitFor(t, "an answered echo on the second connection", func() bool { return !l.Status().LastEcho.IsZero() })
	if n := b.accepted.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
	if !strings.Contains(l.Status().LastError, "echo: 2 misses") {
		t.Errorf("last error %q, want the echo misses", l.Status().LastError)
	}
	if ev.count(Down) != 1 || ev.count(Up) != 2 {
		t.Errorf("events %v: want Up, Down, Up", ev)
	}
}

func TestBankInitiatedNetworkManagementIsAnswered(t *testing.T) {
	for _, tc := range []struct {
		name, code string
		hook       func(ctx context.Context, req, resp *codec.Message) string
		want, f48  string
	}{
		{name: "echo", code: "301", want: "00"},
		{name: "sign-on", code: "001", want: "00"},
		{name: "sign-off", code: "002", want: "00"},
		{name: "unknown code", code: "999", want: "12"},
		{name: "key change without hook", code: "161", want: "96"},
		{name: "key change by hook", code: "161", want: "00", f48: "KCV123",
			hook: func(_ context.Context, req, resp *codec.Message) string {
				resp.SetString(48, "KCV123")
				return "00"
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBank(t).start()
			cfg := testConfig(t, b)
			cfg.OnKeyChange = tc.hook
			l := startLink(t, cfg)
			waitState(t, l, StateReady)
			<-b.recv // the sign-on
			req := codec.NewMessage(b.spec)
			req.SetMTI("0800")
			req.SetString(7, "1127093001")
			req.SetString(11, "777777")
			req.SetString(70, tc.code)
			b.last().send(req)
			select {
			case got := <-b.recv:
				if got.MTI() != "0810" || got.String(11) != "777777" || got.String(70) != tc.code || got.String(39) != tc.want || got.String(48) != tc.f48 {
					t.Errorf("answer %s 11=%s 70=%s 39=%s 48=%q, want 0810 777777 %s %s %q", got.MTI(), got.String(11),
						got.String(70), got.String(39), got.String(48), tc.code, tc.want, tc.f48)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("no answer to the bank's 0800")
			}
		})
	}
}

func TestConcurrentRequestsMatchResponsesInShuffledOrder(t *testing.T) {
	const n = 64
	b := newFakeBank(t)
	var mu sync.Mutex
	var held []*codec.Message
	b.handle = networkOnly(func(c *bankConn, req *codec.Message) {
		mu.Lock()
		held = append(held, req)
		if len(held) < n {
			mu.Unlock()
			return
		}
		all := held
		held = nil
		mu.Unlock()
		r := rand.New(rand.NewPCG(7, 8))
		r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		for _, m := range all {
			c.send(answer(m, "00"))
		}
	})
	b.start()
	ev := &events{}
	cfg := testConfig(t, b)
	cfg.OnEvent = ev.on
	l := startLink(t, cfg)
	waitState(t, l, StateReady)

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			// Half the requests share STANs with the other half, on other terminals.
			req := purchase(t, b.spec, fmt.Sprintf("%06d", 100+i%(n/2)), fmt.Sprintf("TERM%04d", i))
			req.SetAmount(4, int64(1000+i))
			resp, err := l.Send(context.Background(), req, soon())
			if err != nil {
				errs <- err
				return
			}
			defer resp.Release()
			if amt, _ := resp.Amount(4); amt != int64(1000+i) || resp.String(41) != fmt.Sprintf("TERM%04d", i) {
				errs <- fmt.Errorf("request %d got the response of amount %d terminal %s", i, amt, resp.String(41))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ev.count(Success) != n {
		t.Errorf("%d Success events, want %d", ev.count(Success), n)
	}
	if st := l.Status(); st.InFlight != 0 {
		t.Errorf("%d in flight after all answered", st.InFlight)
	}
}

func TestDuplicateKeyInFlightIsRefusedAndTheFirstKeepsItsEntry(t *testing.T) {
	for _, tc := range []struct {
		name      string
		keyFields []int
		second    func(m *codec.Message) // how the second request differs from the first
		dup       bool
	}{
		{name: "same STAN and terminal", dup: true, second: func(m *codec.Message) { m.SetAmount(4, 5) }},
		{name: "same STAN, other terminal", second: func(m *codec.Message) { m.SetString(41, "TERM0002") }},
		{name: "11+7 keys: other terminal, same time", keyFields: []int{11, 7}, dup: true,
			second: func(m *codec.Message) { m.SetString(41, "TERM0002") }},
		{name: "11+7 keys: other time", keyFields: []int{11, 7},
			second: func(m *codec.Message) { m.SetString(7, "1127093002") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBank(t)
			hold := make(chan *codec.Message, 4)
			b.handle = networkOnly(func(c *bankConn, req *codec.Message) { hold <- req })
			b.start()
			cfg := testConfig(t, b)
			cfg.KeyFields = tc.keyFields
			l := startLink(t, cfg)
			waitState(t, l, StateReady)

			first := make(chan error, 1)
			go func() {
				resp, err := l.Send(context.Background(), purchase(t, b.spec, "000042", "TERM0001"), soon())
				if err == nil && resp.String(41) != "TERM0001" {
					err = fmt.Errorf("first request got terminal %s", resp.String(41))
				}
				resp.Release()
				first <- err
			}()
			req1 := <-hold
			m := purchase(t, b.spec, "000042", "TERM0001")
			tc.second(m)
			if tc.dup {
				if _, err := l.Send(context.Background(), m, soon()); !errors.Is(err, ErrDuplicateKey) || Written(err) {
					t.Fatalf("second send: %v, want ErrDuplicateKey, not written", err)
				}
			} else {
				done := make(chan error, 1)
				go func() {
					resp, err := l.Send(context.Background(), m, soon())
					resp.Release()
					done <- err
				}()
				b.last().send(answer(<-hold, "00"))
				if err := <-done; err != nil {
					t.Fatalf("second send with another key: %v", err)
				}
			}
			b.last().send(answer(req1, "00"))
			if err := <-first; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestLateResponseTimesOutAndGoesToOnUnmatched(t *testing.T) {
	b := newFakeBank(t)
	hold := make(chan *codec.Message, 1)
	b.handle = networkOnly(func(c *bankConn, req *codec.Message) { hold <- req })
	b.start()
	cfg := testConfig(t, b)
	late := make(chan string, 1)
	cfg.OnUnmatched = func(_ LinkID, r *Response) {
		late <- r.MTI() + " " + r.String(11) + " " + r.String(39)
		r.Release()
	}
	ev := &events{}
	cfg.OnEvent = ev.on
	l := startLink(t, cfg)
	waitState(t, l, StateReady)

	start := time.Now()
	_, err := l.Send(context.Background(), purchase(t, b.spec, "000050", "TERM0001"), time.Now().Add(30*time.Millisecond))
	var se *SendError
	if !errors.As(err, &se) || !errors.Is(err, ErrTimeout) || !se.Written {
		t.Fatalf("send: %v, want ErrTimeout written", err)
	}
	if el := time.Since(start); el < 30*time.Millisecond || el > time.Second {
		t.Errorf("timed out after %v, want about 30ms", el)
	}
	if ev.count(Timeout) != 1 {
		t.Errorf("events %v, want one Timeout", ev)
	}
	b.last().send(answer(<-hold, "00"))
	select {
	case got := <-late:
		if got != "0210 000050 00" {
			t.Errorf("unmatched %q, want the late approval", got)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("late response not passed to OnUnmatched")
	}
}

func TestCancelledContextGivesUpTheRequest(t *testing.T) {
	b := newFakeBank(t)
	b.handle = networkOnly(func(*bankConn, *codec.Message) {})
	b.start()
	l := startLink(t, testConfig(t, b))
	waitState(t, l, StateReady)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := l.Send(ctx, purchase(t, b.spec, "000060", "TERM0001"), soon())
	if !errors.Is(err, context.DeadlineExceeded) || !Written(err) {
		t.Fatalf("send: %v, want the context's error, written", err)
	}
	if st := l.Status(); st.InFlight != 0 {
		t.Errorf("%d in flight after the cancel", st.InFlight)
	}
}

// heldLink is a ready link whose connection's writes can be held, with a bank that never answers requests.
func heldLink(t *testing.T, mod func(*Config)) (*Link, *fakeBank, chan *blockingConn) {
	b := newFakeBank(t)
	b.handle = networkOnly(func(*bankConn, *codec.Message) {})
	b.start()
	cfg := testConfig(t, b)
	cfg.NetTimeout = 300 * time.Millisecond // the sign-off at cleanup waits behind held writes
	conns := make(chan *blockingConn, 4)
	var d net.Dialer
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		bc := newBlockingConn(nc)
		conns <- bc
		return bc, nil
	}
	if mod != nil {
		mod(&cfg)
	}
	l := startLink(t, cfg)
	waitState(t, l, StateReady)
	return l, b, conns
}

func TestConnectionLossSaysWhichRequestsWereWritten(t *testing.T) {
	ev := &events{}
	l, b, conns := heldLink(t, func(c *Config) { c.OnEvent = ev.on })
	bc := <-conns
	type result struct {
		stan string
		err  error
	}
	results := make(chan result, 3)
	send := func(stan string) {
		go func() {
			_, err := l.Send(context.Background(), purchase(t, b.spec, stan, "TERM0001"), soon())
			results <- result{stan, err}
		}()
	}
	send("000001") // written: the bank receives it
	waitFor(t, "the bank to receive the first request", func() bool { return len(b.received()) == 2 })
	bc.hold()
	send("000002") // the writer is stuck in its write
	waitFor(t, "the writer stuck on the second request", func() bool { return bc.waiting.Load() == 1 })
	send("000003") // queued behind the stuck write
	waitFor(t, "the third request in flight", func() bool { return l.Status().InFlight == 3 })
	bank := b.last()
	b.dropAll()

	want := map[string]bool{"000001": true, "000002": false, "000003": false}
	for range 3 {
		r := <-results
		var se *SendError
		if !errors.As(r.err, &se) || !errors.Is(r.err, ErrConnLost) || se.Written != want[r.stan] {
			t.Errorf("request %s: %v, want ErrConnLost with written=%t", r.stan, r.err, want[r.stan])
		}
	}
	if ev.count(Failure) != 3 || ev.count(Down) != 1 {
		t.Errorf("events %v, want 3 Failure and a Down", ev)
	}
	waitFor(t, "a new connection", func() bool { return b.last() != nil && b.last() != bank })
	waitState(t, l, StateReady) // and it comes back
}

func TestBoundedQueueAndInFlightRefuseAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		hold bool
		want error
	}{
		{name: "write queue", mod: func(c *Config) { c.QueueSize = 1 }, hold: true, want: ErrQueueFull},
		{name: "in flight", mod: func(c *Config) { c.MaxInFlight = 2 }, want: ErrTooManyInFlight},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, b, conns := heldLink(t, tc.mod)
			bc := <-conns
			if tc.hold {
				bc.hold()
			}
			for i := range 2 { // with a held write: one in the writer, one in the queue
				go l.Send(context.Background(), purchase(t, b.spec, fmt.Sprintf("%06d", i+1), "TERM0001"), time.Now().Add(300*time.Millisecond))
				waitFor(t, "request in flight", func() bool { return l.Status().InFlight == i+1 })
				if tc.hold && i == 0 {
					waitFor(t, "the writer stuck", func() bool { return bc.waiting.Load() == 1 })
				}
			}
			start := time.Now()
			_, err := l.Send(context.Background(), purchase(t, b.spec, "000009", "TERM0001"), soon())
			if !errors.Is(err, tc.want) || Written(err) {
				t.Fatalf("send: %v, want %v", err, tc.want)
			}
			if el := time.Since(start); el > 100*time.Millisecond {
				t.Errorf("refusal took %v", el)
			}
		})
	}
}

func TestRedialUsesCappedBackoffAndResetsAfterReady(t *testing.T) {
	b := newFakeBank(t)
	b.accept = func(n int) bool { return n > 4 } // the first four connections are dropped at once
	b.start()
	cfg := testConfig(t, b)
	cfg.Backoff = Backoff{Base: 10 * time.Millisecond, Max: 40 * time.Millisecond, Jitter: 0.5}
	cfg.Rand = func() float64 { return 0.5 }
	var mu sync.Mutex
	var waits []time.Duration
	cfg.Wait = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return ctx.Err()
	}
	l := startLink(t, cfg)
	waitState(t, l, StateReady)
	b.dropAll()
	waitFor(t, "the redial after a loss", func() bool { return b.accepted.Load() == 6 })
	waitState(t, l, StateReady)

	mu.Lock()
	got := slices.Clone(waits)
	mu.Unlock()
	// 10, 20, 40, 40 (capped) less a quarter of jitter each; then 10 again after a ready connection.
	want := []time.Duration{7500 * time.Microsecond, 15 * time.Millisecond, 30 * time.Millisecond, 30 * time.Millisecond, 7500 * time.Microsecond}
	if !slices.Equal(got, want) {
		t.Errorf("waits %v, want %v", got, want)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second, Jitter: 0.5}
	for _, tc := range []struct {
		n    int
		r    float64
		want time.Duration
	}{
		{0, 0, 100 * time.Millisecond},
		{1, 0, 200 * time.Millisecond},
		{3, 0, 800 * time.Millisecond},
		{4, 0, time.Second},
		{60, 0, time.Second},
		{2, 0.5, 300 * time.Millisecond},
		{9, 0.999, 500500 * time.Microsecond},
	} {
		if got := b.Delay(tc.n, tc.r); got != tc.want {
			t.Errorf("Delay(%d, %v) = %v, want %v", tc.n, tc.r, got, tc.want)
		}
	}
}

func TestCloseDrainsInFlightThenSignsOff(t *testing.T) {
	b := newFakeBank(t)
	b.handle = networkOnly(func(c *bankConn, req *codec.Message) {
		time.AfterFunc(50*time.Millisecond, func() { c.send(answer(req, "00")) })
	})
	b.start()
	l, err := New(testConfig(t, b))
	if err != nil {
		t.Fatal(err)
	}
	l.Start()
	waitState(t, l, StateReady)
	done := make(chan error, 1)
	go func() {
		resp, err := l.Send(context.Background(), purchase(t, b.spec, "000070", "TERM0001"), soon())
		resp.Release()
		done <- err
	}()
	waitFor(t, "the request in flight", func() bool { return l.Status().InFlight == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("request in flight at Close: %v, want its response", err)
	}
	if got := b.received(); len(got) != 3 || got[2] != "0800/002" {
		t.Errorf("bank received %v, want sign-on, purchase, sign-off", got)
	}
	if _, err := l.Send(context.Background(), purchase(t, b.spec, "000071", "TERM0001"), soon()); !errors.Is(err, ErrClosed) {
		t.Errorf("send after close: %v, want ErrClosed", err)
	}
	if s := l.State(); s != StateDown {
		t.Errorf("state %s after close", s)
	}
}

func TestCloseWithoutStartAndTwice(t *testing.T) {
	b := newFakeBank(t)
	l, err := New(testConfig(t, b))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	l.Start() // does nothing once closed
	if s := l.State(); s != StateDown {
		t.Errorf("state %s", s)
	}
}

func TestCloseDropsWhatIsStillInFlightWhenItsContextEnds(t *testing.T) {
	b := newFakeBank(t)
	b.handle = networkOnly(func(*bankConn, *codec.Message) {})
	b.start()
	ev := &events{}
	cfg := testConfig(t, b)
	cfg.OnEvent = ev.on
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l.Start()
	waitState(t, l, StateReady)
	done := make(chan error, 1)
	go func() {
		_, err := l.Send(context.Background(), purchase(t, b.spec, "000075", "TERM0001"), time.Now().Add(time.Minute))
		done <- err
	}()
	waitFor(t, "the request in flight", func() bool { return len(b.received()) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("close: %v, want the deadline", err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) || !Written(err) {
		t.Errorf("request in flight: %v, want ErrClosed, written", err)
	}
	if ev.count(Failure) != 1 || ev.count(Down) != 1 {
		t.Errorf("events %v, want a Failure and a Down", ev)
	}
}

func TestDrainRefusesNewRequestsButKeepsTheConnection(t *testing.T) {
	b := newFakeBank(t).start()
	ev := &events{}
	cfg := testConfig(t, b)
	cfg.OnEvent = ev.on
	cfg.EchoInterval = 5 * time.Millisecond
	l := startLink(t, cfg)
	waitState(t, l, StateReady)

	l.Drain()
	if _, err := l.Send(context.Background(), purchase(t, b.spec, "000200", "TERM0001"), soon()); !errors.Is(err, ErrNotReady) {
		t.Fatalf("send while drained: %v, want ErrNotReady", err)
	}
	echoes := count(b.received(), "0800/301")
	waitFor(t, "echoes while drained", func() bool { return count(b.received(), "0800/301") > echoes })
	if st := l.Status(); !st.Drained || st.State != StateReady || b.accepted.Load() != 1 {
		t.Errorf("status %+v after %d connections, want drained, ready, one connection", st, b.accepted.Load())
	}
	l.Enable()
	resp, err := l.Send(context.Background(), purchase(t, b.spec, "000201", "TERM0001"), soon())
	if err != nil {
		t.Fatalf("send after enable: %v", err)
	}
	resp.Release()
	if got := ev.String(); got != "[up down up success]" {
		t.Errorf("events %s, want [up down up success]", got)
	}
}
