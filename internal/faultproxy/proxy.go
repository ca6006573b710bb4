// Package faultproxy is a TCP proxy for tests that breaks the network between two peers on demand. A test puts
// it between the switch and a bank (or Redis, PostgreSQL, an HSM): New listens on 127.0.0.1:0 and forwards every
// connection it accepts to the upstream address (Start does the same for a test and closes the proxy when the
// test ends); the test then switches the mode at run time:
//
//	Restore       forward everything (the starting mode)
//	Cut           reset every open connection and every new one, as a dead host or a pulled cable does
//	BlackHole     keep the connections (and accept new ones) but forward nothing either way until Restore
//	Delay(d)      forward each chunk d late, in order
//	Corrupt(fn)   forward what upstream sends through fn (FlipBytes, GarbageFrames), the other way unchanged
//
// Bytes a black hole holds are not lost: they wait in the kernel's buffers (and at most one chunk per direction
// in the proxy) and flow on at Restore, as after a network partition heals. Stats counts connections and bytes.
package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Mode is what the proxy does to the traffic.
type Mode int

// The modes; see the package documentation.
const (
	Pass Mode = iota
	Cut
	BlackHole
	Delay
	Corrupt
)

var modeNames = [...]string{Pass: "pass", Cut: "cut", BlackHole: "blackhole", Delay: "delay", Corrupt: "corrupt"}

// String returns the mode's name.
func (m Mode) String() string {
	if m < 0 || int(m) >= len(modeNames) {
		return fmt.Sprintf("mode(%d)", int(m))
	}
	return modeNames[m]
}

// Stats are the proxy's counters since New.
type Stats struct {
	Accepted   uint64 // connections accepted from downstream
	Active     int64  // connection pairs open now
	Reset      uint64 // connections reset by Cut (open ones and new ones refused)
	DialFailed uint64 // connections closed because the upstream could not be dialled
	BytesUp    uint64 // bytes forwarded downstream -> upstream
	BytesDown  uint64 // bytes forwarded upstream -> downstream (after corruption)
	Corrupted  uint64 // chunks passed through the corruption function
}

// state is one mode with its parameters; the proxy swaps it atomically.
type state struct {
	mode    Mode
	delay   time.Duration
	corrupt func([]byte) []byte
	changed chan struct{} // closed when the next state replaces this one
}

// Proxy is a running fault proxy. Its methods are safe for concurrent use.
type Proxy struct {
	upstream string
	l        net.Listener
	st       atomic.Pointer[state]
	mu       sync.Mutex // guards set's swap and conns
	conns    map[*pair]struct{}
	wg       sync.WaitGroup
	closed   atomic.Bool

	accepted, reset, dialFailed, up, down, corrupted atomic.Uint64
	active                                           atomic.Int64
}

// pair is a downstream connection and its upstream connection.
type pair struct {
	down, up net.Conn
	once     sync.Once
}

// close resets both ends (linger 0), so each peer sees a reset rather than an orderly end of stream.
func (p *pair) close() {
	p.once.Do(func() {
		for _, c := range []net.Conn{p.down, p.up} {
			if c == nil {
				continue
			}
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
	})
}

// New listens on 127.0.0.1 on a port the kernel picks and forwards to upstream (host:port) in Pass mode.
func New(upstream string) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{upstream: upstream, l: l, conns: map[*pair]struct{}{}}
	p.st.Store(&state{mode: Pass, changed: make(chan struct{})})
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Start is New for a test: it fails t if the proxy cannot listen, and closes the proxy when the test (or
// subtest) that started it ends.
func Start(t testing.TB, upstream string) *Proxy {
	t.Helper()
	p, err := New(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// Addr is the address the proxy listens on: configure the client with it instead of the upstream's.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// Upstream is the address the proxy forwards to.
func (p *Proxy) Upstream() string { return p.upstream }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode { return p.st.Load().mode }

// Restore forwards everything again; connections held by a black hole carry on with what they held.
func (p *Proxy) Restore() { p.set(&state{mode: Pass}) }

// Cut resets every open connection and, until another mode is set, every connection accepted.
func (p *Proxy) Cut() {
	p.set(&state{mode: Cut})
	p.mu.Lock()
	pairs := make([]*pair, 0, len(p.conns))
	for c := range p.conns {
		pairs = append(pairs, c)
	}
	p.mu.Unlock()
	for _, c := range pairs {
		p.reset.Add(1)
		c.close()
	}
}

// BlackHole stops forwarding in both directions without closing anything; new connections are accepted and
// held too. Restore lets the held bytes through.
func (p *Proxy) BlackHole() { p.set(&state{mode: BlackHole}) }

// Delay forwards each chunk, in either direction, d after it was read, in order: a steady stream arrives d
// late with its spacing kept (up to 16 chunks a direction wait in the proxy; beyond that the reader waits).
func (p *Proxy) Delay(d time.Duration) { p.set(&state{mode: Delay, delay: d}) }

// Corrupt forwards every chunk from upstream to downstream through fn (which may change it in place and may
// return a longer or shorter slice); downstream to upstream is unchanged. See FlipBytes and GarbageFrames.
func (p *Proxy) Corrupt(fn func(chunk []byte) []byte) { p.set(&state{mode: Corrupt, corrupt: fn}) }

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	return Stats{Accepted: p.accepted.Load(), Active: p.active.Load(), Reset: p.reset.Load(),
		DialFailed: p.dialFailed.Load(), BytesUp: p.up.Load(), BytesDown: p.down.Load(), Corrupted: p.corrupted.Load()}
}

// Close stops listening, closes every connection and waits for the proxy's goroutines.
func (p *Proxy) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := p.l.Close()
	p.set(&state{mode: Cut}) // wakes forwarders held by a black hole
	p.mu.Lock()
	for c := range p.conns {
		c.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) set(s *state) {
	s.changed = make(chan struct{})
	p.mu.Lock()
	old := p.st.Swap(s)
	p.mu.Unlock()
	close(old.changed)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			if p.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		p.accepted.Add(1)
		if p.Mode() == Cut {
			p.reset.Add(1)
			(&pair{down: c}).close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve dials the upstream for the accepted connection c and forwards both ways until either side ends.
func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		p.dialFailed.Add(1)
		(&pair{down: c}).close()
		return
	}
	pr := &pair{down: c, up: up}
	p.mu.Lock()
	if p.closed.Load() || p.st.Load().mode == Cut { // cut while dialling
		p.mu.Unlock()
		p.reset.Add(1)
		pr.close()
		return
	}
	p.conns[pr] = struct{}{}
	p.active.Add(1)
	p.mu.Unlock()
	done := make(chan bool, 2) // true: the direction ended with its source's orderly end of stream
	go func() { done <- p.forward(up, c, &p.up, false) }()
	go func() { done <- p.forward(c, up, &p.down, true) }()
	if clean := <-done; !clean {
		pr.close()
	}
	if clean := <-done; !clean {
		pr.close()
	}
	pr.close()
	p.mu.Lock()
	delete(p.conns, pr)
	p.mu.Unlock()
	p.active.Add(-1)
}

// chunk is what one read returned, with the time it was read.
type chunk struct {
	b  []byte
	at time.Time
}

// forward copies src to dst chunk by chunk; fromUpstream says which direction this is (corruption applies to
// upstream -> downstream only). A reader goroutine stamps each chunk with the time it was read, so that Delay
// adds d to each chunk's own arrival rather than to the previous chunk's delivery. It reports whether src ended
// in an orderly way, in which case dst's write side was closed and the other direction may go on.
func (p *Proxy) forward(dst, src net.Conn, count *atomic.Uint64, fromUpstream bool) bool {
	chunks := make(chan chunk, 16) // bounded: a slow or held writer stops the reader, and the kernel buffers the rest
	stop := make(chan struct{})
	defer close(stop)
	var readErr error
	p.wg.Add(1) // Close waits for the readers too
	go func() {
		defer p.wg.Done()
		defer close(chunks)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				c := chunk{b: append([]byte(nil), buf[:n]...), at: time.Now()}
				p.holdWhileBlackHole()
				select {
				case chunks <- c:
				case <-stop:
					return
				}
			}
			if err != nil {
				readErr = err // read by forward after chunks is closed
				return
			}
		}
	}()
	for c := range chunks {
		s := p.holdWhileBlackHole()
		switch s.mode {
		case Cut:
			return false
		case Delay:
			if wait := time.Until(c.at.Add(s.delay)); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-s.changed: // Restore or Cut while waiting: deliver now or drop with the connection
					t.Stop()
					if p.Mode() == Cut {
						return false
					}
				}
			}
		case Corrupt:
			if fromUpstream && s.corrupt != nil {
				c.b = s.corrupt(c.b)
				p.corrupted.Add(1)
			}
		}
		if _, err := dst.Write(c.b); err != nil {
			return false
		}
		count.Add(uint64(len(c.b)))
	}
	if tc, ok := dst.(*net.TCPConn); ok && readErr == io.EOF { // pass the half close on
		return tc.CloseWrite() == nil
	}
	return false
}

// holdWhileBlackHole waits while the proxy is a black hole and returns the state that ended the wait (or the
// current one).
func (p *Proxy) holdWhileBlackHole() *state {
	s := p.st.Load()
	for s.mode == BlackHole {
		<-s.changed
		s = p.st.Load()
	}
	return s
}

// FlipBytes returns a corruption that inverts one byte at a random place in every chunk. seed makes the
// places repeat from run to run.
func FlipBytes(seed uint64) func([]byte) []byte {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	return func(b []byte) []byte {
		if len(b) == 0 {
			return b
		}
		mu.Lock()
		i := r.IntN(len(b))
		mu.Unlock()
		b[i] ^= 0xFF
		return b
	}
}

// GarbageFrames returns a corruption that puts a well-framed frame of size random bytes (a 2-byte big-endian
// length, the framing of ISO 8583 links) in front of every chunk, so the receiver's framer stays in step and
// its decoder meets the garbage. size must be 1 to 65535.
func GarbageFrames(seed uint64, size int) func([]byte) []byte {
	if size < 1 || size > 0xFFFF {
		panic(fmt.Sprintf("faultproxy: garbage frame size %d is not within 1-65535", size))
	}
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, 0x2545f4914f6cdd1d))
	return func(b []byte) []byte {
		out := make([]byte, 2+size, 2+size+len(b))
		out[0], out[1] = byte(size>>8), byte(size)
		mu.Lock()
		for i := 2; i < len(out); i++ {
			out[i] = byte(r.Uint32())
		}
		mu.Unlock()
		return append(out, b...)
	}
}
