package channel

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"github.com/panjf2000/gnet/v2"
)

// gnetServer adapts a Channel to gnet's event handler. Every callback runs on an event loop and returns
// quickly: framing only, frames leave the loop as copies.
type gnetServer struct {
	gnet.BuiltinEventEngine
	c      *Channel
	eng    gnet.Engine
	booted chan struct{}
}

// gnetConn writes through gnet's asynchronous, concurrency-safe write.
type gnetConn struct{ c gnet.Conn }

func (g gnetConn) write(frame []byte, done func(error)) error {
	// The callback runs on the event loop once the frame was written to the socket (or gnet's outbound
	// buffer for it), or with net.ErrClosed when the connection closed before.
	err := g.c.AsyncWrite(frame, func(_ gnet.Conn, err error) error { done(err); return nil })
	if err != nil {
		done(err)
	}
	return err
}

func (g gnetConn) close() { _ = g.c.Close() }

func (g *gnetServer) OnBoot(eng gnet.Engine) gnet.Action {
	g.eng = eng
	close(g.booted)
	return gnet.None
}

func (g *gnetServer) OnOpen(cn gnet.Conn) ([]byte, gnet.Action) {
	remote, ok := g.c.admit(cn.RemoteAddr())
	if !ok {
		return nil, gnet.Close
	}
	s := g.c.register(remote, gnetConn{cn})
	cn.SetContext(s)
	return nil, gnet.None
}

func (g *gnetServer) OnTraffic(cn gnet.Conn) gnet.Action {
	s, ok := cn.Context().(*Session)
	if !ok {
		return gnet.Close
	}
	buf, _ := cn.Peek(cn.InboundBuffered())
	used, err := g.c.ingest(s, buf)
	if used > 0 { // gnet's Discard(0) would drop everything buffered
		_, _ = cn.Discard(used)
	}
	if err != nil {
		return gnet.Close
	}
	return gnet.None
}

func (g *gnetServer) OnClose(cn gnet.Conn, _ error) gnet.Action {
	if s, ok := cn.Context().(*Session); ok {
		g.c.unregister(s)
	}
	return gnet.None
}

// startGnet runs the gnet engine for the channel and waits until it is booted.
func (c *Channel) startGnet() error {
	addr := c.cfg.Addr
	g := &gnetServer{c: c, booted: make(chan struct{})}
	loops := c.cfg.Loops
	if loops <= 0 {
		loops = runtime.NumCPU()
	}
	errc := make(chan error, 1)
	go func() {
		errc <- gnet.Run(g, "tcp://"+addr, gnet.WithMulticore(true), gnet.WithNumEventLoop(loops),
			gnet.WithReusePort(false), gnet.WithReuseAddr(true), gnet.WithTCPNoDelay(gnet.TCPNoDelay), gnet.WithLogger(gnetLogger{c}))
	}()
	select {
	case err := <-errc:
		return err
	case <-g.booted:
	}
	if bound, err := boundAddr(g.eng); err == nil {
		addr = bound
	}
	c.addr.Store(&addr)
	c.stop = func(ctx context.Context) error { return g.eng.Stop(ctx) }
	c.log.Info("channel listening")
	return nil
}

// boundAddr asks the engine's listener for its address, which tells the port the kernel chose for port 0.
func boundAddr(eng gnet.Engine) (string, error) {
	fd, err := eng.Dup()
	if err != nil {
		return "", err
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// gnetLogger sends gnet's own log lines to the channel's zap logger.
type gnetLogger struct{ c *Channel }

func (l gnetLogger) Debugf(format string, args ...any) { l.c.log.Debug(fmt.Sprintf(format, args...)) }
func (l gnetLogger) Infof(format string, args ...any)  { l.c.log.Debug(fmt.Sprintf(format, args...)) }
func (l gnetLogger) Warnf(format string, args ...any)  { l.c.log.Warn(fmt.Sprintf(format, args...)) }
func (l gnetLogger) Errorf(format string, args ...any) { l.c.log.Error(fmt.Sprintf(format, args...)) }
func (l gnetLogger) Fatalf(format string, args ...any) { l.c.log.Error(fmt.Sprintf(format, args...)) }
