package channel

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// TLS channels: gnet has no TLS, so a TLS channel is served by a crypto/tls acceptor with one reading goroutine
// per connection. It shares ingest (framing, keep-alives, limits) and the Handler with the gnet path.

// writeTimeout bounds one write to a TLS terminal.
const writeTimeout = 10 * time.Second

type tlsConn struct {
	c  net.Conn
	mu sync.Mutex
}

func (t *tlsConn) write(frame []byte, done func(error)) error {
	t.mu.Lock()
	_ = t.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := t.c.Write(frame)
	t.mu.Unlock()
	done(err)
	return err
}

func (t *tlsConn) close() { _ = t.c.Close() }

func (c *Channel) startTLS() error {
	l, err := net.Listen("tcp", c.cfg.Addr)
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	c.addr.Store(&addr)
	tl := tls.NewListener(l, c.cfg.TLS)
	var wg sync.WaitGroup
	c.stop = func(ctx context.Context) error {
		_ = tl.Close()
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
		select {
		case <-finished:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := tl.Accept()
			if err != nil {
				select {
				case <-c.done:
					return
				default:
				}
				c.log.Warn("accept failed")
				time.Sleep(10 * time.Millisecond)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.serveTLS(nc)
			}()
		}
	}()
	c.log.Info("TLS channel listening")
	return nil
}

// serveTLS reads one TLS connection: handshake, then frames into a bounded buffer.
func (c *Channel) serveTLS(nc net.Conn) {
	remote, ok := c.admit(nc.RemoteAddr())
	if !ok {
		_ = nc.Close()
		return
	}
	tc := &tlsConn{c: nc}
	s := c.register(remote, tc)
	defer c.unregister(s)
	defer tc.close()
	limit := c.cfg.Framing.MaxFrame
	if limit <= 0 {
		limit = 65535
	}
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 4096)
	for {
		n, err := nc.Read(tmp)
		if n > 0 {
			buf = append(buf, tmp[:n]...)
			used, ierr := c.ingest(s, buf)
			if ierr != nil {
				return
			}
			buf = append(buf[:0], buf[used:]...)
			if len(buf) > limit+8 {
				s.Close("frame larger than the channel allows")
				return
			}
		}
		if err != nil {
			return
		}
	}
}
