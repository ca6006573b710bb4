package channel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/railswitch/railswitch/codec"
	"go.uber.org/zap"
)

// Handler receives the frames of a channel. Frame runs on its own goroutine, never on an event loop; it owns
// body (the frame after its length header: TPDU, header and message) and calls s.Done when it has finished,
// whether or not it replied.
type Handler interface {
	Frame(s *Session, body []byte)
	Closed(s *Session, reason string)
}

// Config is one channel as the switch's configuration describes it.
type Config struct {
	Name           string
	Addr           string         // host:port to listen on
	Framing        codec.Framing  // from the channel's spec, possibly overridden
	Allow          []netip.Prefix // source networks allowed to connect; empty allows all
	MaxConns       int            // connections at once; 0 means 10,000
	IdleTimeout    time.Duration  // close a session that sent nothing (not even a keep-alive) for this long; 0: never
	MaxInFlight    int            // frames a session may have with the handler at once; 0 means 4
	MaxQueuedBytes int            // bytes queued for a terminal that does not read; 0 means 64 KiB
	MaxTotal       int            // frames with the handler across all sessions; 0 means 50,000
	TLS            *tls.Config    // when set, a crypto/tls acceptor serves the channel instead of gnet
	Loops          int            // gnet event loops; 0 means one per CPU
}

func (c *Config) setDefaults() {
	if c.MaxConns == 0 {
		c.MaxConns = 10000
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 4
	}
	if c.MaxQueuedBytes == 0 {
		c.MaxQueuedBytes = 64 << 10
	}
	if c.MaxTotal == 0 {
		c.MaxTotal = 50000
	}
}

// Stats are a channel's counters.
type Stats struct {
	Open, Accepted, Refused, Frames, KeepAlives, Malformed, IdleClosed, Overloaded uint64
}

// Channel is one listener and its sessions.
type Channel struct {
	cfg     Config
	h       Handler
	log     *zap.Logger
	now     func() time.Time
	nextID  atomic.Uint64
	total   atomic.Int64
	open    atomic.Int64
	stats   struct{ accepted, refused, frames, keepAlives, malformed, idleClosed, overloaded atomic.Uint64 }
	mu      sync.Mutex
	byID    map[uint64]*Session
	addr    atomic.Pointer[string]
	stop    func(context.Context) error
	done    chan struct{}
	started chan error
	idle    chan work // idle workers wait here for their next frame (workers.go)
}

// New prepares a channel; Start opens its listener.
func New(cfg Config, h Handler, log *zap.Logger) *Channel {
	cfg.setDefaults()
	if log == nil {
		log = zap.NewNop()
	}
	return &Channel{cfg: cfg, h: h, log: log.With(zap.String("channel", cfg.Name)), now: time.Now,
		byID: map[uint64]*Session{}, done: make(chan struct{}), started: make(chan error, 1),
		idle: make(chan work)}
}

// Name is the channel's name.
func (c *Channel) Name() string { return c.cfg.Name }

// Addr is the address the channel listens on, once started (useful with port 0).
func (c *Channel) Addr() string {
	if p := c.addr.Load(); p != nil {
		return *p
	}
	return ""
}

// Stats returns the channel's counters.
func (c *Channel) Stats() Stats {
	return Stats{Open: uint64(c.open.Load()), Accepted: c.stats.accepted.Load(), Refused: c.stats.refused.Load(),
		Frames: c.stats.frames.Load(), KeepAlives: c.stats.keepAlives.Load(), Malformed: c.stats.malformed.Load(),
		IdleClosed: c.stats.idleClosed.Load(), Overloaded: c.stats.overloaded.Load()}
}

// Start opens the listener and returns once it accepts connections (or failed to).
func (c *Channel) Start() error {
	var err error
	if c.cfg.TLS != nil {
		err = c.startTLS()
	} else {
		err = c.startGnet()
	}
	if err != nil {
		return fmt.Errorf("channel %s: %w", c.cfg.Name, err)
	}
	go c.sweep()
	return nil
}

// Stop stops accepting, closes every session and waits for the listener to end.
func (c *Channel) Stop(ctx context.Context) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	close(c.done)
	c.mu.Lock()
	for _, s := range c.byID {
		s.Close("channel stopping")
	}
	c.mu.Unlock()
	if c.stop != nil {
		return c.stop(ctx)
	}
	return nil
}

// Sessions returns the open sessions.
func (c *Channel) Sessions() []*Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Session, 0, len(c.byID))
	for _, s := range c.byID {
		out = append(out, s)
	}
	return out
}

// admit decides whether a new connection from remote may open.
func (c *Channel) admit(remote net.Addr) (string, bool) {
	addr := remote.String()
	if int(c.open.Load()) >= c.cfg.MaxConns {
		return addr, c.refuse(addr, "too many connections")
	}
	if len(c.cfg.Allow) > 0 {
		ap, err := netip.ParseAddrPort(addr)
		allowed := false
		if err == nil {
			ip := ap.Addr().Unmap()
			for _, p := range c.cfg.Allow {
				if p.Contains(ip) {
					allowed = true
					break
				}
			}
		}
		if !allowed {
			return addr, c.refuse(addr, "source address not in the channel's allowed networks")
		}
	}
	return addr, true
}

func (c *Channel) refuse(addr, reason string) bool {
	c.stats.refused.Add(1)
	c.log.Warn("connection refused", zap.String("remote", addr), zap.String("reason", reason))
	return false
}

func (c *Channel) register(remote string, cn conn) *Session {
	s := &Session{id: c.nextID.Add(1), ch: c, remote: remote, conn: cn, opened: c.now()}
	s.touch(s.opened)
	c.mu.Lock()
	c.byID[s.id] = s
	c.mu.Unlock()
	c.open.Add(1)
	c.stats.accepted.Add(1)
	return s
}

func (c *Channel) unregister(s *Session) {
	c.mu.Lock()
	_, ok := c.byID[s.id]
	delete(c.byID, s.id)
	c.mu.Unlock()
	if !ok {
		return
	}
	s.closed.Store(true)
	c.open.Add(-1)
	reason := s.closeReason()
	c.log.Debug("session closed", zap.Uint64("session", s.id), zap.String("remote", s.remote), zap.String("reason", reason))
	c.h.Closed(s, reason)
}

// errProtocol closes a session whose bytes cannot be framed.
var errProtocol = errors.New("framing error")

// ingest frames the bytes received so far and dispatches whole frames. It returns how many bytes it consumed;
// an error means the session must be closed (the reason has been set and logged).
func (c *Channel) ingest(s *Session, b []byte) (int, error) {
	fr := c.cfg.Framing
	used := 0
	for used < len(b) {
		body, n, err := fr.Split(b[used:])
		if err == codec.ErrNeedMore {
			break
		}
		if err != nil {
			c.stats.malformed.Add(1)
			reason := "unframeable input: " + err.Error()
			c.log.Warn("closing session", zap.Uint64("session", s.id), zap.String("remote", s.remote), zap.String("reason", reason))
			s.Close(reason)
			return used, errProtocol
		}
		used += n
		s.touch(c.now())
		if fr.IsKeepAlive(body) {
			c.stats.keepAlives.Add(1)
			continue
		}
		if int(s.inFlight.Add(1)) > c.cfg.MaxInFlight {
			s.inFlight.Add(-1)
			reason := fmt.Sprintf("more than %d requests in flight", c.cfg.MaxInFlight)
			c.log.Warn("closing session", zap.Uint64("session", s.id), zap.String("remote", s.remote), zap.String("reason", reason))
			s.Close(reason)
			return used, errProtocol
		}
		c.stats.frames.Add(1)
		frame := append([]byte(nil), body...) // the loop's buffer is reused once we return
		if c.total.Add(1) > int64(c.cfg.MaxTotal) {
			c.stats.overloaded.Add(1)
		}
		c.dispatchWarm(s, frame)
	}
	return used, nil
}

func (c *Channel) dispatch(s *Session, frame []byte) {
	defer c.total.Add(-1)
	c.h.Frame(s, frame)
}

// Overloaded reports whether more frames are with the handler than the channel's total limit; a handler
// answers such frames at once (for example with response code 96) instead of sending them upstream.
func (c *Channel) Overloaded() bool { return c.total.Load() > int64(c.cfg.MaxTotal) }

// sweep closes idle sessions; gnet has no per-connection timers.
func (c *Channel) sweep() {
	if c.cfg.IdleTimeout <= 0 {
		return
	}
	period := c.cfg.IdleTimeout / 4
	if period > time.Second {
		period = time.Second
	}
	if period < 10*time.Millisecond {
		period = 10 * time.Millisecond
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		limit := c.now().Add(-c.cfg.IdleTimeout).UnixNano()
		for _, s := range c.Sessions() {
			if s.active.Load() < limit && s.InFlight() == 0 {
				c.stats.idleClosed.Add(1)
				s.Close("idle timeout")
			}
		}
	}
}
