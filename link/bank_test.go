package link

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/specs"
)

// fakeBank is a small acquirer host for the tests: it answers every request the way handle says (default:
// the matching response with 39 = 00) and records what it received.
type fakeBank struct {
	t      *testing.T
	ln     net.Listener
	spec   *codec.Spec
	fr     codec.Framing
	handle func(c *bankConn, req *codec.Message) // nil: answer with 00
	accept func(n int) bool                      // false closes connection n (from 1) at once; nil keeps all

	accepted atomic.Int32
	mu       sync.Mutex
	conns    []*bankConn
	got      []string // "0800/001", "0200", ... in arrival order
	recv     chan *codec.Message
	wg       sync.WaitGroup
}

// bankConn is one connection the fake bank accepted.
type bankConn struct {
	b   *fakeBank
	nc  net.Conn
	wmu sync.Mutex
}

func testSpec(t testing.TB) *codec.Spec {
	t.Helper()
	s, err := specs.Get("iso87-ascii")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newFakeBank listens on 127.0.0.1:0; set handle and accept before the link dials.
func newFakeBank(t testing.TB) *fakeBank {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tt, _ := t.(*testing.T)
	b := &fakeBank{t: tt, ln: ln, spec: testSpec(t), recv: make(chan *codec.Message, 1024)}
	b.fr = b.spec.Framing()
	t.Cleanup(b.close)
	return b
}

func (b *fakeBank) addr() string { return b.ln.Addr().String() }

func (b *fakeBank) start() *fakeBank {
	b.wg.Add(1)
	go b.serve()
	return b
}

func (b *fakeBank) serve() {
	defer b.wg.Done()
	for {
		nc, err := b.ln.Accept()
		if err != nil {
			return
		}
		n := int(b.accepted.Add(1))
		if b.accept != nil && !b.accept(n) {
			nc.Close()
			continue
		}
		c := &bankConn{b: b, nc: nc}
		b.mu.Lock()
		b.conns = append(b.conns, c)
		b.mu.Unlock()
		b.wg.Add(1)
		go c.read()
	}
}

// close stops the listener and every connection and waits for their goroutines.
func (b *fakeBank) close() {
	b.ln.Close()
	b.dropAll()
	b.wg.Wait()
}

// dropAll closes every open connection.
func (b *fakeBank) dropAll() {
	b.mu.Lock()
	for _, c := range b.conns {
		c.nc.Close()
	}
	b.conns = nil
	b.mu.Unlock()
}

// received returns what the bank got so far.
func (b *fakeBank) received() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.got...)
}

// last returns the newest connection.
func (b *fakeBank) last() *bankConn {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.conns) == 0 {
		return nil
	}
	return b.conns[len(b.conns)-1]
}

func (c *bankConn) read() {
	defer c.b.wg.Done()
	defer c.nc.Close()
	buf := make([]byte, 64<<10)
	n := 0
	for {
		got, err := c.nc.Read(buf[n:])
		n += got
		off := 0
		for {
			body, used, serr := c.b.fr.Split(buf[off:n])
			if serr != nil {
				break
			}
			off += used
			m := codec.NewMessage(c.b.spec)
			if err := m.UnpackFrame(c.b.fr, append([]byte(nil), body...)); err != nil {
				continue
			}
			name := m.MTI()
			if m.Has(70) {
				name += "/" + m.String(70)
			}
			c.b.mu.Lock()
			c.b.got = append(c.b.got, name)
			c.b.mu.Unlock()
			select {
			case c.b.recv <- m:
			default:
			}
			if h := c.b.handle; h != nil {
				h(c, m)
			} else if isRequest(m.MTIBytes()) {
				c.send(answer(m, "00"))
			}
		}
		n = copy(buf, buf[off:n])
		if err != nil {
			return
		}
	}
}

// send writes one message; errors are ignored (the link may have gone).
func (c *bankConn) send(m *codec.Message) {
	frame, err := m.AppendFrame(c.b.fr, nil)
	if err != nil {
		panic(err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.Write(frame)
}

// answer builds the response to req: MTI + 10, fields 4, 7, 11, 41, 70 copied, 39 = code.
func answer(req *codec.Message, code string) *codec.Message {
	resp := codec.NewMessage(req.Spec())
	mti := []byte(req.MTI())
	mti[2]++
	resp.SetMTI(string(mti))
	for _, f := range []int{4, 7, 11, 41, 70} {
		resp.CopyField(f, req)
	}
	resp.SetString(39, code)
	return resp
}

// networkOnly answers 0800s with 00 and passes other requests to h.
func networkOnly(h func(c *bankConn, req *codec.Message)) func(c *bankConn, req *codec.Message) {
	return func(c *bankConn, req *codec.Message) {
		switch {
		case req.MTI() == "0800":
			c.send(answer(req, "00"))
		case isRequest(req.MTIBytes()):
			h(c, req)
		}
	}
}

// blockingConn wraps a connection whose writes can be held: while held, Write waits until release or Close.
type blockingConn struct {
	net.Conn
	mu      sync.Mutex
	held    bool
	waiting atomic.Int32 // writes waiting on the hold
	release chan struct{}
	closed  chan struct{}
	once    sync.Once
}

func newBlockingConn(nc net.Conn) *blockingConn {
	return &blockingConn{Conn: nc, release: make(chan struct{}), closed: make(chan struct{})}
}

func (c *blockingConn) hold() {
	c.mu.Lock()
	c.held = true
	c.mu.Unlock()
}

func (c *blockingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	held := c.held
	c.mu.Unlock()
	if held {
		c.waiting.Add(1)
		select {
		case <-c.release:
		case <-c.closed:
			return 0, errors.New("blocking conn closed")
		}
	}
	return c.Conn.Write(p)
}

func (c *blockingConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// waitFor polls cond until it holds or a few seconds pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
