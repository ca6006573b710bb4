//go:build faults

package faults

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestTerminalAt100TimesItsRateLimitIsRefusedWhileOthersAreUnaffected: demo terminal 22003601 may make one
// purchase a second (server/demo/limits.yaml); it sends about 100 a second for 5 s while four other terminals
// transact. It must get at most its budget approved and response code 65 for the rest; the others must see no
// 65, no failure and no large latency change; the money invariants hold.
func TestTerminalAt100TimesItsRateLimitIsRefusedWhileOthersAreUnaffected(t *testing.T) {
	r := startRig(t, rigOptions{})
	b := newBook()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); runTraffic(ctx, r.posAddr(), b, trafficOptions{}) }()
	defer func() { cancel(); wg.Wait() }()

	time.Sleep(2 * time.Second)
	hotFrom := time.Now()
	const hammerFor, limit = 5 * time.Second, 1.0 // purchases a second
	hammer, err := dialTerm(r.posAddr(), "22003601", "104512541110001", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer hammer.Close()
	if err := hammer.signOn(); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	sent := 0
	for end := time.Now().Add(hammerFor); time.Now().Before(end); {
		<-tick.C
		o, err := hammer.purchase(card{PAN: luhnPAN(prefixA, uint64(900000+sent), 16)}, 7)
		b.add(o, err)
		if err != nil {
			t.Fatalf("the hammering terminal got no answer: %v", err)
		}
		sent++
	}
	tick.Stop()
	hotTo := time.Now()
	time.Sleep(time.Second)
	cancel()
	wg.Wait()

	_, errs := b.snapshot()
	if len(errs) > 0 {
		t.Errorf("%d requests got no answer, first: %v", len(errs), errs[0])
	}
	isHammer := func(o outcome) bool { return o.TID == "22003601" }
	ham := b.filter(isHammer)
	approved, refused := 0, 0
	for _, o := range ham {
		switch o.Code {
		case "00":
			approved++
		case "65":
			refused++
		default:
			t.Errorf("the hammering terminal got %q", o.Code)
		}
	}
	rate := float64(sent) / hotTo.Sub(hotFrom).Seconds()
	if rate < 30*limit {
		t.Errorf("the hammering terminal reached only %.0f purchases a second; the test needs many times its limit", rate)
	}
	if budget := int(hammerFor.Seconds()*limit) + 1 + 2; approved > budget { // rate x time, the burst, slack for the clock
		t.Errorf("%d of the hammering terminal's purchases approved, the limit allows about %d", approved, budget)
	}
	others := func(o outcome) bool { return !isHammer(o) }
	base := b.filter(func(o outcome) bool { return others(o) && o.At.Before(hotFrom) })
	hot := b.filter(func(o outcome) bool { return others(o) && o.At.After(hotFrom) && o.At.Before(hotTo) })
	for _, o := range b.filter(others) {
		if o.Code != "00" {
			t.Errorf("a well-behaved terminal got %q: %+v", o.Code, o)
			break
		}
	}
	lat := func(out []outcome) []time.Duration {
		d := make([]time.Duration, len(out))
		for i, o := range out {
			d[i] = o.Latency
		}
		return d
	}
	if p99b, p99h := pct(lat(base), 99), pct(lat(hot), 99); p99h > 5*p99b+200*time.Millisecond {
		t.Errorf("the others' p99 went from %v to %v while one terminal hammered", p99b, p99h)
	}
	r.checkMoney(b)
	t.Logf("hammering terminal: %d purchases in %v (%.0f/s, %.0fx its limit of %.0f/s): %d approved, %d refused with 65; %s",
		sent, hotTo.Sub(hotFrom).Round(time.Millisecond), rate, rate/limit, limit, approved, refused, summary(ham))
	t.Logf("others before: %s", summary(base))
	t.Logf("others while it hammered: %s", summary(hot))
}

// dialSmallBuffer connects with a 4 KiB receive buffer, so that a terminal that stops reading fills the
// switch's side quickly.
func dialSmallBuffer(addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	return d.Dial("tcp", addr)
}

// TestSlowReadingTerminalLeavesMemoryBoundedAndOthersUnaffected: one terminal signs on and then keeps
// sending requests (purchases under a wrong MAK, answered A0 by the switch itself) for 8 s without reading a
// reply. The switch must keep its heap bounded and must not stop serving the terminal without closing it, while
// three other terminals transact with no failure; the money invariants hold.
func TestSlowReadingTerminalLeavesMemoryBoundedAndOthersUnaffected(t *testing.T) {
	r := startRig(t, rigOptions{})
	b := newBook()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runTraffic(ctx, r.posAddr(), b, trafficOptions{TIDs: []string{"LT000001", "LT000002", "LT000003"}})
	}()
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(time.Second)
	_, heap0 := settle()

	var heapMax atomic.Uint64
	sampling := make(chan struct{})
	go func() {
		defer close(sampling)
		for ctx.Err() == nil {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > heapMax.Load() {
				heapMax.Store(ms.HeapInuse)
			}
			sleepCtx(ctx, 100*time.Millisecond)
		}
	}()

	c, err := dialSmallBuffer(r.posAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	slow := newTerm(c, "10000005", "898110000000001", nil)
	if err := slow.signOn(); err != nil {
		t.Fatal(err)
	}
	// Purchases under a wrong MAK: each is answered at once with A0 without reaching a bank, so the requests
	// are cheap for the switch and only its output to this terminal grows.
	slow.mak = []byte("wrongkey")
	start := time.Now()
	written, bytesOut := 0, 0
	var closedAfter time.Duration
	var cause error
	for time.Since(start) < 8*time.Second {
		m, _, err := slow.purchaseMessage(card{PAN: luhnPAN(prefixA, uint64(written), 16)}, 1)
		if err != nil {
			t.Fatal(err)
		}
		frame, err := slow.frame(m, true)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(frame); err != nil {
			closedAfter, cause = time.Since(start), err
			break
		}
		written++
		bytesOut += len(frame)
		time.Sleep(time.Millisecond) // below the in-flight limit: the test is about output, not input
	}
	// The switch either closes the terminal (its output queue over MaxQueuedBytes, or more requests in flight
	// than allowed) or goes on taking its requests while the kernel's send buffer, autotuned up to
	// net.ipv4.tcp_wmem's 4 MiB, holds the replies. What it must not do is stop reading and keep the connection.
	if ne, ok := cause.(net.Error); ok && ne.Timeout() {
		t.Errorf("the switch stopped reading from the slow terminal but did not close it: %v", cause)
	}
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	<-sampling
	_, errs := b.snapshot()
	if len(errs) > 0 {
		t.Errorf("%d requests of the other terminals got no answer, first: %v", len(errs), errs[0])
	}
	for _, o := range b.filter(func(outcome) bool { return true }) {
		if o.Code != "00" {
			t.Errorf("a well-behaved terminal got %q", o.Code)
			break
		}
	}
	grew := int64(heapMax.Load()) - int64(heap0)
	if grew > 64<<20 {
		t.Errorf("the heap grew by %d MiB while a terminal did not read", grew>>20)
	}
	r.checkMoney(b)
	st := r.sw.Channels()[0].Stats()
	for _, l := range r.logs.lines("") {
		t.Logf("switch: %s", l)
	}
	if cause != nil {
		t.Logf("slow reader: %d requests (%d bytes) written, connection closed by the switch after %v (%v)",
			written, bytesOut, closedAfter.Round(time.Millisecond), cause)
	} else {
		t.Logf("slow reader: %d requests (%d bytes) written in %v, none read; the switch kept taking them", written, bytesOut, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("heap in use: %d MiB before, at most %d MiB during (growth %+d KiB); pos channel %+v",
		heap0>>20, heapMax.Load()>>20, grew>>10, st)
	t.Logf("other terminals: %s", summary(b.filter(func(outcome) bool { return true })))
}

// raiseNoFile raises RLIMIT_NOFILE to its hard limit and returns the soft limit now in force.
func raiseNoFile(t testing.TB) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max {
		old := lim.Cur
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Logf("raising RLIMIT_NOFILE from %d: %v", old, err)
			lim.Cur = old
		}
	}
	return lim.Cur
}

// closeReset closes c with a reset (linger 0) rather than an orderly close, and leaves no TIME_WAIT behind.
func closeReset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// TestTenThousandConnectionsInChurnReturnGoroutinesAndFDsToBaseline opens and closes 10,000 connections to the
// POS channel, 32 at a time, in four ways (closed at once, reset at once, reset after half a frame, a complete
// sign-on and an orderly close) while two terminals transact. Afterwards the switch's goroutines and file
// descriptors must come back to the baseline, the channel must count no open session, and the terminals must
// have had no failure.
func TestTenThousandConnectionsInChurnReturnGoroutinesAndFDsToBaseline(t *testing.T) {
	nofile := raiseNoFile(t)
	r := startRig(t, rigOptions{})
	ch := r.sw.Channels()[0]
	time.Sleep(200 * time.Millisecond)
	g0, heap0 := settle()
	fd0 := procFDs()

	b := newBook()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runTraffic(ctx, r.posAddr(), b, trafficOptions{TIDs: []string{"LT000001", "LT000002"}, Pause: 20 * time.Millisecond})
	}()
	defer func() { cancel(); wg.Wait() }()

	const total, workers = 10000, 32
	var next, dialErrs, signOns, signOnErrs atomic.Int64
	var firstErr atomic.Pointer[error]
	start := time.Now()
	var cw sync.WaitGroup
	for w := range workers {
		cw.Add(1)
		go func() {
			defer cw.Done()
			trace := new(atomic.Int64)
			tid := fmt.Sprintf("1000000%d", 1+w%4)
			for i := next.Add(1); i <= total; i = next.Add(1) {
				c, err := net.DialTimeout("tcp", r.posAddr(), 5*time.Second)
				if err != nil {
					dialErrs.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				switch i % 4 {
				case 0:
					_ = c.Close()
				case 1:
					closeReset(c)
				case 2:
					_, _ = c.Write([]byte{0x00, 0x40, 0x60, 0x00, 0x03}) // a length header promising 64 bytes, 3 given
					closeReset(c)
				case 3:
					tt := newTerm(c, tid, "898110000000001", trace)
					if err := tt.signOn(); err != nil {
						signOnErrs.Add(1)
						firstErr.CompareAndSwap(nil, &err)
					} else {
						signOns.Add(1)
					}
					_ = c.Close()
				}
			}
		}()
	}
	cw.Wait()
	churn := time.Since(start)
	cancel()
	wg.Wait()

	g1, fd1, took := waitBaseline(t, g0, fd0, 5, 30*time.Second)
	_, heap1 := settle()
	deadline := time.Now().Add(10 * time.Second)
	for ch.Stats().Open != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	st := ch.Stats()
	if st.Open != 0 {
		t.Errorf("the channel still counts %d open sessions", st.Open)
	}
	if n := dialErrs.Load() + signOnErrs.Load(); n > 0 {
		t.Errorf("%d connections failed (%d dials, %d sign-ons), first: %v", n, dialErrs.Load(), signOnErrs.Load(), *firstErr.Load())
	}
	if st.Accepted < total {
		t.Errorf("the channel accepted %d connections, want at least %d", st.Accepted, total)
	}
	_, errs := b.snapshot()
	if len(errs) > 0 {
		t.Errorf("%d requests of the transacting terminals got no answer, first: %v", len(errs), errs[0])
	}
	for _, o := range b.filter(func(outcome) bool { return true }) {
		if o.Code != "00" {
			t.Errorf("a transacting terminal got %q", o.Code)
			break
		}
	}
	r.checkMoney(b)
	t.Logf("churn: %d connections in %v (%.0f/s), %d with a sign-on; RLIMIT_NOFILE %d", total, churn.Round(time.Millisecond),
		float64(total)/churn.Seconds(), signOns.Load(), nofile)
	t.Logf("goroutines %d -> %d, fds %d -> %d (back within %v), heap in use %d -> %d KiB; pos channel %+v",
		g0, g1, fd0, fd1, took.Round(time.Millisecond), heap0>>10, heap1>>10, st)
	t.Logf("terminals meanwhile: %s", summary(b.filter(func(outcome) bool { return true })))
}

// TestSignOnChurnRetainsABoundedHeap signs four terminals on 1,000 times each and reports the heap each sign-on
// leaves behind. Sign-on needs no MAC, so anyone who can reach the channel and knows a terminal id can make the
// switch generate keys. Today each sign-on's new working keys stay opened in hsm.Software's key cache until it
// holds 65,536 keys (about 1.5 KiB a sign-on, some 50 MiB at the cap); the test fails past 4 KiB a sign-on.
func TestSignOnChurnRetainsABoundedHeap(t *testing.T) {
	r := startRig(t, rigOptions{})
	time.Sleep(200 * time.Millisecond)
	_, h0 := settle()
	const each = 1000
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tt, err := dialTerm(r.posAddr(), fmt.Sprintf("1000000%d", i+1), "898110000000001", nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer tt.Close()
			for range each {
				if err := tt.signOn(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	_, h1 := settle()
	per := (int64(h1) - int64(h0)) / (4 * each)
	if per > 4<<10 {
		t.Errorf("each sign-on left %d bytes on the heap", per)
	}
	t.Logf("%d sign-ons in %v (%.0f/s): heap in use %d KiB -> %d KiB, %d bytes retained per sign-on",
		4*each, took.Round(time.Millisecond), 4*each/took.Seconds(), h0>>10, h1>>10, per)
}
