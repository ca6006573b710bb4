package nodestate

import (
	"net"
	"sync"
	"testing"
	"time"
)

// tcpProxy forwards a local port to a target and can take the target away in two ways: Cut closes every
// connection and refuses new ones (Redis down, connection refused), Stall keeps the connections open but
// forwards nothing (a hung Redis or a dropped network: the case where only a deadline ends a call). Restore
// undoes either. It lets a test take Redis away without touching the machine's shared Redis.
type tcpProxy struct {
	t      testing.TB
	addr   string
	target string

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]bool
	stalled bool
	resume  chan struct{} // closed by Restore after a Stall
	wg      sync.WaitGroup
}

func startProxy(t testing.TB, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, addr: ln.Addr().String(), target: target, conns: map[net.Conn]bool{}}
	p.serve(ln)
	t.Cleanup(func() {
		p.Restore()
		p.close()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.pipe(c)
		}
	}()
}

func (p *tcpProxy) pipe(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	p.wg.Add(2)
	go p.copyHalf(up, c)
	go p.copyHalf(c, up)
}

// copyHalf forwards src to dst; what arrives while stalled is never forwarded, so the caller never hears
// back (its deadline is what ends its call).
func (p *tcpProxy) copyHalf(dst, src net.Conn) {
	defer p.wg.Done()
	defer func() {
		dst.Close()
		src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			stalled, resume := p.stalled, p.resume
			p.mu.Unlock()
			if stalled {
				// Hold the bytes back until Restore, then close: the client gave up on this connection (its
				// deadline), so nothing of it may reach Redis late.
				<-resume
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Cut closes the listener and every connection: new connections are refused.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// Stall stops forwarding: connections stay open, requests get no answer.
func (p *tcpProxy) Stall() {
	p.mu.Lock()
	if !p.stalled {
		p.stalled, p.resume = true, make(chan struct{})
	}
	p.mu.Unlock()
}

// Restore forwards again, listening again after a Cut.
func (p *tcpProxy) Restore() {
	p.mu.Lock()
	if p.stalled {
		p.stalled = false
		close(p.resume)
	}
	cut := p.ln == nil
	p.mu.Unlock()
	if !cut {
		return
	}
	var err error
	for range 100 { // the port was just closed; rebinding may need a moment
		var ln net.Listener
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(ln)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
}

// close ends the proxy for good.
func (p *tcpProxy) close() { p.Cut() }
