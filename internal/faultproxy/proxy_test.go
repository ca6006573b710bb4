package faultproxy

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// echoServer answers every connection with what it receives, and records the bytes it received.
type echoServer struct {
	l    net.Listener
	mu   sync.Mutex
	got  bytes.Buffer
	wg   sync.WaitGroup
	seen chan struct{} // one send per chunk received
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{l: l, seen: make(chan struct{}, 1024)}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						e.mu.Lock()
						e.got.Write(buf[:n])
						e.mu.Unlock()
						select {
						case e.seen <- struct{}{}:
						default:
						}
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return e
}

func (e *echoServer) received() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return bytes.Clone(e.got.Bytes())
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads len(msg) bytes back within 5 s.
func roundTrip(c net.Conn, msg []byte) ([]byte, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	got := make([]byte, len(msg))
	_, err := io.ReadFull(c, got)
	return got, err
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPassForwardsBothWaysAndCountsBytes(t *testing.T) {
	e := startEcho(t)
	p := Start(t, e.l.Addr().String())
	if p.Mode() != Pass || p.Upstream() != e.l.Addr().String() {
		t.Fatalf("mode %v upstream %q", p.Mode(), p.Upstream())
	}
	c := dial(t, p)
	msg := []byte("hello through the proxy")
	got, err := roundTrip(c, msg)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo %q, %v", got, err)
	}
	waitFor(t, "the counters", func() bool {
		s := p.Stats()
		return s.BytesUp == uint64(len(msg)) && s.BytesDown == uint64(len(msg)) && s.Accepted == 1 && s.Active == 1
	})
	c.Close()
	waitFor(t, "the pair to close", func() bool { return p.Stats().Active == 0 })
}

func TestHalfCloseIsPassedOnAndTheOtherDirectionFinishes(t *testing.T) {
	e := startEcho(t)
	p := Start(t, e.l.Addr().String())
	c := dial(t, p).(*net.TCPConn)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c) // the echo answers, sees EOF and closes: the proxy passes both on
	if err != nil || string(got) != "last words" {
		t.Fatalf("after the half close read %q, %v", got, err)
	}
}

func TestCutResetsOpenAndNewConnectionsUntilRestore(t *testing.T) {
	e := startEcho(t)
	p := Start(t, e.l.Addr().String())
	open := dial(t, p)
	if _, err := roundTrip(open, []byte("x")); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	if p.Mode() != Cut {
		t.Fatalf("mode %v", p.Mode())
	}
	_ = open.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := open.Read(make([]byte, 1)); err == nil {
		t.Fatal("an open connection survived the cut")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("an open connection was left hanging instead of being reset")
	}
	// New connections are accepted by the kernel and then reset before anything flows.
	// (The reset can come so soon that the dial itself reports it.)
	if fresh, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second); err == nil {
		defer fresh.Close()
		if _, err := roundTrip(fresh, []byte("y")); err == nil {
			t.Fatal("a connection made during the cut carried data")
		}
	}
	if s := p.Stats(); s.Reset < 2 {
		t.Fatalf("reset %d connections, want at least 2", s.Reset)
	}
	p.Restore()
	again := dial(t, p)
	if got, err := roundTrip(again, []byte("back")); err != nil || string(got) != "back" {
		t.Fatalf("after Restore: %q, %v", got, err)
	}
}

func TestBlackHoleHoldsBytesEitherWayUntilRestore(t *testing.T) {
	e := startEcho(t)
	p := Start(t, e.l.Addr().String())
	c := dial(t, p)
	if _, err := roundTrip(c, []byte("warm")); err != nil {
		t.Fatal(err)
	}
	p.BlackHole()
	before := len(e.received())
	_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 8)); err == nil {
		t.Fatalf("read %d bytes through a black hole", n)
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("the black hole closed the connection: %v", err)
	}
	if got := len(e.received()); got != before {
		t.Fatalf("the upstream received %d bytes through a black hole", got-before)
	}
	// A connection made during the black hole is accepted and held too.
	held := dial(t, p)
	_ = held.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := held.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	p.Restore()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "held" {
		t.Fatalf("after Restore the held bytes came back as %q, %v", got, err)
	}
	got = make([]byte, 3)
	if _, err := io.ReadFull(held, got); err != nil || string(got) != "new" {
		t.Fatalf("the connection made in the black hole got %q, %v", got, err)
	}
}

func TestDelayAddsLatencyPerChunkAndRestoreEndsIt(t *testing.T) {
	e := startEcho(t)
	p := Start(t, e.l.Addr().String())
	c := dial(t, p)
	const d = 150 * time.Millisecond
	p.Delay(d)
	start := time.Now()
	if _, err := roundTrip(c, []byte("slow")); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 2*d { // once each way
		t.Fatalf("round trip took %v, want at least %v", took, 2*d)
	}
	// Two chunks 50 ms apart both arrive d late each, not one d after the other.
	start = time.Now()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := c.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 2*d || took >= 4*d {
		t.Fatalf("two chunks 50 ms apart took %v, want about %v", took, 2*d+50*time.Millisecond)
	}
	p.Restore()
	start = time.Now()
	if _, err := roundTrip(c, []byte("fast")); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= 2*d {
		t.Fatalf("after Restore a round trip still took %v", took)
	}
}

func TestCorruptDamagesOnlyWhatUpstreamSends(t *testing.T) {
	cases := []struct {
		name  string
		fn    func([]byte) []byte
		check func(sent, got []byte) bool
		extra int // bytes added per chunk
	}{
		{"flip one byte", FlipBytes(1), func(sent, got []byte) bool {
			diff := 0
			for i := range sent {
				if sent[i] != got[i] {
					diff++
					if got[i] != ^sent[i] {
						return false
					}
				}
			}
			return diff == 1
		}, 0},
		{"garbage frame in front", GarbageFrames(2, 6), func(sent, got []byte) bool {
			return got[0] == 0 && got[1] == 6 && bytes.Equal(got[8:], sent)
		}, 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startEcho(t)
			p := Start(t, e.l.Addr().String())
			c := dial(t, p)
			p.Corrupt(tc.fn)
			sent := []byte("0200ABCDEFGH")
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(sent); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(sent)+tc.extra)
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			if up := e.received(); !bytes.Equal(up, []byte("0200ABCDEFGH")) {
				t.Fatalf("upstream received %q: the downstream -> upstream way must be unchanged", up)
			}
			if !tc.check([]byte("0200ABCDEFGH"), got) {
				t.Fatalf("downstream received %x", got)
			}
			if p.Stats().Corrupted == 0 {
				t.Fatal("no chunk counted as corrupted")
			}
		})
	}
}

func TestDialFailureClosesTheDownstreamConnection(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := Start(t, l.Addr().String())
	l.Close() // nothing listens there now (closed after New, so the proxy cannot get the same port)
	// The reset may beat the dial.
	if c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second); err == nil {
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("read from a proxy whose upstream is down")
		}
	}
	waitFor(t, "the dial failure count", func() bool { return p.Stats().DialFailed == 1 })
}

func TestCloseEndsConnectionsHeldInABlackHole(t *testing.T) {
	e := startEcho(t)
	p, err := New(e.l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	p.BlackHole()
	_, _ = c.Write([]byte("stuck"))
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung on a black-holed connection")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestStartForwardsAndClosesTheProxyWhenTheTestEnds(t *testing.T) {
	e := startEcho(t)
	var p *Proxy
	var c net.Conn
	t.Run("user", func(t *testing.T) {
		p = Start(t, e.l.Addr().String())
		c = dial(t, p)
		if got, err := roundTrip(c, []byte("hi")); err != nil || string(got) != "hi" {
			t.Fatalf("echo %q, %v", got, err)
		}
	})
	// The subtest's cleanups have run: the proxy no longer listens and its connections are gone.
	if fresh, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second); err == nil {
		fresh.Close()
		t.Fatal("the proxy still listens after the test that started it ended")
	}
	if s := p.Stats(); s.Active != 0 {
		t.Fatalf("%d connection pairs still open", s.Active)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
}

func TestModeNames(t *testing.T) {
	for m, want := range map[Mode]string{Pass: "pass", Cut: "cut", BlackHole: "blackhole", Delay: "delay", Corrupt: "corrupt", Mode(9): "mode(9)"} {
		if m.String() != want {
			t.Errorf("%d: %q, want %q", int(m), m.String(), want)
		}
	}
}

func TestGarbageFramesRefusesImpossibleSizes(t *testing.T) {
	for _, size := range []int{0, -1, 65536} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("size %d accepted", size)
				}
			}()
			GarbageFrames(1, size)
		}()
	}
}
