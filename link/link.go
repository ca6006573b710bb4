package link

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/railswitch/railswitch/codec"
	"go.uber.org/zap"
)

// State is where a link is in its lifecycle.
type State int32

// Link states. Only a ready link carries requests.
const (
	StateDown       State = iota // not connected: waiting to redial, or closed
	StateConnecting              // dialling (TCP connect and TLS handshake)
	StateSigningOn               // connected; the sign-on 0800 is out
	StateReady                   // signed on: carries requests
	StateDraining                // closing: refuses new requests, waits for those in flight, signs off
)

var stateNames = [...]string{"down", "connecting", "signing-on", "ready", "draining"}

// String names the state.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(?)"
}

// Link is one persistent connection to one bank endpoint. Create it with New, start it with Start, send with
// Send, stop it with Close. It is safe for concurrent use.
type Link struct {
	cfg   Config
	fr    codec.Framing
	keys  keyer
	queue chan item // frames for the writer of the current connection

	frames sync.Pool // *[]byte frame buffers
	resps  sync.Pool // *Response

	mu       sync.Mutex
	state    State
	pending  map[Key]*call
	external int // entries of pending sent through Send (not the link's own 0800s)
	since    time.Time
	lastEcho time.Time
	lastErr  string
	drained  bool // by the operator: no new requests, connection kept
	started  bool
	closed   bool

	pubMu sync.Mutex // orders Up and Down events
	up    bool       // what the last Up or Down said

	closing    context.Context // cancelled when Close begins: stop dialling, drain and sign off
	beginClose context.CancelFunc
	closeCtx   context.Context // Close's context: bounds the drain and the sign-off
	hard       context.Context // cancelled when Close's context ends: drop everything
	kill       context.CancelFunc
	wg         sync.WaitGroup
	done       chan struct{}
}

// New checks cfg, fills its defaults and returns a link that is down until Start.
func New(cfg Config) (*Link, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	fr := cfg.Spec.Framing()
	if fr.Length == codec.LenNone {
		return nil, fmt.Errorf("link %s: spec %s has no length header", cfg.ID, cfg.Spec.Name())
	}
	keys, _ := newKeyer(cfg.KeyFields) // checked by setDefaults
	l := &Link{
		cfg: cfg, fr: fr, keys: keys,
		queue:   make(chan item, cfg.QueueSize),
		pending: make(map[Key]*call),
		since:   cfg.Now(),
		done:    make(chan struct{}),
	}
	l.frames.New = func() any { b := make([]byte, 0, 512); return &b }
	l.resps.New = func() any { return &Response{Message: codec.NewMessage(cfg.Spec), link: l} }
	l.closing, l.beginClose = context.WithCancel(context.Background())
	l.hard, l.kill = context.WithCancel(context.Background())
	return l, nil
}

// ID returns the link's id.
func (l *Link) ID() LinkID { return l.cfg.ID }

// Start dials and keeps the link up until Close. Calling it again does nothing.
func (l *Link) Start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started || l.closed {
		return
	}
	l.started = true
	runDone := make(chan struct{})
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		defer close(runDone)
		l.run()
	}()
	go l.sweep(runDone)
	go func() {
		l.wg.Wait()
		close(l.done)
	}()
}

// Close drains the link: new requests are refused, requests in flight get their responses until ctx ends,
// then a sign-off is sent and the connection closed. When ctx ends first, the connection is dropped and what
// is still in flight fails with ErrClosed. Close returns ctx's error in that case, else nil.
func (l *Link) Close(ctx context.Context) error {
	l.mu.Lock()
	first := !l.closed
	l.closed = true
	started := l.started
	if first {
		l.closeCtx = ctx
	}
	l.mu.Unlock()
	if !started {
		if first {
			l.kill()
			l.beginClose()
			close(l.done)
		}
		return nil
	}
	if first {
		l.beginClose()
	}
	defer l.kill() // releases the contexts once the link has stopped
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		l.kill()
		<-l.done
		return ctx.Err()
	}
}

// Status is a link's state for the admin API.
type Status struct {
	ID        LinkID
	Address   string
	State     State
	Since     time.Time // when the link entered State
	Drained   bool      // drained by the operator (see Drain)
	InFlight  int       // requests awaiting a response (Send's only)
	LastEcho  time.Time // last echo test answered 00; zero if none yet
	LastError string    // why the last connection ended or failed ("" if none)
}

// Status returns the link's current status.
func (l *Link) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Status{ID: l.cfg.ID, Address: l.cfg.Address, State: l.state, Since: l.since, Drained: l.drained, InFlight: l.external,
		LastEcho: l.lastEcho, LastError: l.lastErr}
}

// State returns the link's current state.
func (l *Link) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

func (l *Link) setState(s State) {
	l.mu.Lock()
	l.setStateLocked(s)
	l.mu.Unlock()
}

func (l *Link) setStateLocked(s State) {
	if l.state != s {
		l.state, l.since = s, l.cfg.Now()
	}
}

// publish emits Up or Down when whether the link takes requests (ready and not drained) changed since the
// last one.
func (l *Link) publish() {
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	l.mu.Lock()
	up := l.state == StateReady && !l.drained
	changed := up != l.up
	l.up = up
	l.mu.Unlock()
	switch {
	case changed && up:
		l.emit(Up)
	case changed:
		l.emit(Down)
	}
}

// Drain stops the link from taking new requests while it stays connected and signed on: requests in flight
// finish, echo goes on, and a redial keeps it drained. The router sees Down. Enable undoes it.
func (l *Link) Drain() {
	l.mu.Lock()
	l.drained = true
	l.mu.Unlock()
	l.publish()
}

// Enable lets a drained link take requests again (Up once it is ready).
func (l *Link) Enable() {
	l.mu.Lock()
	l.drained = false
	l.mu.Unlock()
	l.publish()
}

func (l *Link) emit(ev Event) {
	if l.cfg.OnEvent != nil {
		l.cfg.OnEvent(l.cfg.ID, ev)
	}
}

// run dials, serves and redials with backoff until Close.
func (l *Link) run() {
	log := l.cfg.Log.With(zap.Stringer("link", l.cfg.ID), zap.String("address", l.cfg.Address))
	for attempt := 0; l.closing.Err() == nil; attempt++ {
		l.setState(StateConnecting)
		nc, err := l.dial()
		if err == nil {
			var wasReady bool
			wasReady, err = l.serve(nc, log)
			if wasReady {
				attempt = 0
			}
		}
		l.mu.Lock()
		l.setStateLocked(StateDown)
		l.lastErr = err.Error()
		l.mu.Unlock()
		if l.closing.Err() != nil {
			return
		}
		d := l.cfg.Backoff.Delay(attempt, l.cfg.Rand())
		log.Warn("bank link down, redialling", zap.Error(err), zap.Duration("backoff", d))
		if l.cfg.Wait(l.closing, d) != nil {
			return
		}
	}
}

func (l *Link) dial() (net.Conn, error) {
	ctx, cancel := context.WithTimeout(l.closing, l.cfg.DialTimeout)
	defer cancel()
	nc, err := l.cfg.Dial(ctx, "tcp", l.cfg.Address)
	if err != nil || l.cfg.TLS == nil {
		return nc, err
	}
	tc := tls.Client(nc, l.tlsConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

// tlsConfig is the configured TLS client config, naming the server by the address's host when it names none.
func (l *Link) tlsConfig() *tls.Config {
	cfg := l.cfg.TLS
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		cfg = cfg.Clone()
		cfg.ServerName, _, _ = net.SplitHostPort(l.cfg.Address)
	}
	return cfg
}

// serve runs one connection: sign-on, echo, and the graceful close. It returns once the connection is torn
// down, saying whether it got ready and why it ended.
func (l *Link) serve(nc net.Conn, log *zap.Logger) (bool, error) {
	c := l.newConn(nc)
	// Sign-on and echo end with the connection or when Close begins, so Close never waits on an unanswered one.
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	stop := context.AfterFunc(l.closing, cancel)
	defer stop()
	l.setState(StateSigningOn)
	if err := l.netExchange(ctx, l.cfg.SignOnCode); err != nil {
		err = fmt.Errorf("sign-on: %w", err)
		l.teardown(c, err, log)
		return false, err
	}
	l.setState(StateReady)
	log.Info("bank link signed on")
	l.publish()

	var tick <-chan time.Time
	if l.cfg.EchoInterval > 0 {
		t := time.NewTicker(l.cfg.EchoInterval)
		defer t.Stop()
		tick = t.C
	}
	misses := 0
	for {
		select {
		case <-c.dead:
			l.teardown(c, c.err, log)
			return true, c.err
		case <-tick:
			err := l.netExchange(ctx, l.cfg.EchoCode)
			if err == nil {
				misses = 0
				l.mu.Lock()
				l.lastEcho = l.cfg.Now()
				l.mu.Unlock()
				continue
			}
			if ctx.Err() != nil {
				continue // the connection died or Close began: the next turn handles it
			}
			misses++
			log.Warn("echo test failed", zap.Int("misses", misses), zap.Error(err))
			if misses >= l.cfg.EchoMisses {
				err = fmt.Errorf("echo: %d misses in a row: %w", misses, err)
				l.teardown(c, err, log)
				return true, err
			}
		case <-l.closing.Done():
			l.drain(c, log)
			l.teardown(c, ErrClosed, log)
			return true, ErrClosed
		}
	}
}

// drain refuses new requests, waits for those in flight (bounded by Close's context), then signs off.
func (l *Link) drain(c *conn, log *zap.Logger) {
	l.setState(StateDraining)
	l.publish()
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	stop := context.AfterFunc(l.closeCtx, cancel)
	defer stop()
	t := time.NewTicker(l.cfg.SweepInterval)
	defer t.Stop()
	for {
		l.mu.Lock()
		n := l.external
		l.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
	if err := l.netExchange(ctx, l.cfg.SignOffCode); err != nil {
		log.Warn("sign-off failed", zap.Error(err))
		return
	}
	log.Info("bank link signed off")
}

// teardown closes the connection, waits for its goroutines, drops queued frames and fails every pending
// request, saying for each whether it was written.
func (l *Link) teardown(c *conn, cause error, log *zap.Logger) {
	l.setState(StateDown)
	l.publish()

	c.fail(cause)
	c.wg.Wait()
	for drained := false; !drained; {
		select {
		case it := <-l.queue:
			l.putFrame(it.frame)
		default:
			drained = true
		}
	}

	l.mu.Lock()
	calls := make([]*call, 0, len(l.pending))
	for k, cl := range l.pending {
		calls = append(calls, cl)
		delete(l.pending, k)
	}
	l.external = 0
	l.mu.Unlock()
	reason := ErrConnLost
	if errors.Is(cause, ErrClosed) {
		reason = ErrClosed
	}
	for _, cl := range calls {
		cl.err = &SendError{Err: reason, Written: cl.abandon()}
		if !cl.internal {
			l.emit(Failure)
		}
		close(cl.done)
	}
	log.Info("bank link connection closed", zap.NamedError("reason", cause), zap.Int("failed_in_flight", len(calls)))
}

// netMessage builds an 0800 with field 70 = code, 7 and 11 set.
func (l *Link) netMessage(ctx context.Context, code string) (*codec.Message, error) {
	stan, _, err := l.cfg.Counter.Next(ctx, l.cfg.ID.Acquirer)
	if err != nil {
		return nil, err
	}
	m := codec.NewMessage(l.cfg.Spec)
	err = errors.Join(m.SetMTI("0800"),
		m.SetString(7, l.cfg.Now().UTC().Format("0102150405")),
		m.SetString(11, stan),
		m.SetString(70, code))
	for f, v := range l.cfg.NetworkFields {
		err = errors.Join(err, m.SetString(f, v))
	}
	return m, err
}

// netExchange sends one of the link's own 0800s and wants 39 = 00 back within NetTimeout.
func (l *Link) netExchange(ctx context.Context, code string) error {
	m, err := l.netMessage(ctx, code)
	if err != nil {
		return fmt.Errorf("0800/%s: %w", code, err)
	}
	resp, err := l.exchange(ctx, m, l.cfg.Now().Add(l.cfg.NetTimeout), true)
	if err != nil {
		return fmt.Errorf("0800/%s: %w", code, err)
	}
	defer resp.Release()
	if rc := resp.String(39); rc != "00" {
		return fmt.Errorf("0800/%s answered with response code %q", code, rc)
	}
	return nil
}
