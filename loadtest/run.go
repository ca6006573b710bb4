package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/railswitch/railswitch/codec"
)

// Config is one load test.
type Config struct {
	Target    string      // host:port
	Spec      *codec.Spec // the target's spec
	Terminals int         // virtual terminals, each with its own connection and one request in flight
	// Rate is the arrival rate in requests a second over all terminals (open loop); 0 runs a closed loop at
	// maximum throughput.
	Rate     float64
	Duration time.Duration
	Mix      Mix           // zero: DefaultMix
	Timeout  time.Duration // how long a terminal waits for a reply; 0: DefaultTimeout
	// NewBuilder makes each terminal's requests; nil: NewHostBuilder(DefaultPANPrefix).
	NewBuilder NewBuilder
	// MetricsURL is the target's Prometheus endpoint; when set, the target's CPU per transaction is
	// reported.
	MetricsURL string
}

// Defaults of Config.
const (
	DefaultTimeout   = 5 * time.Second
	DefaultPANPrefix = "621234"
	dialParallel     = 256 // connections being set up at once
	reconnectPause   = 100 * time.Millisecond
)

// Run runs a load test and reports it. Cancelling ctx ends it early with the results so far.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	terms := make([]*terminal, cfg.Terminals)
	for i := range terms {
		b, err := cfg.NewBuilder(cfg.Spec, i)
		if err != nil {
			return nil, err
		}
		t := &terminal{id: i, cfg: &cfg, b: b, req: codec.NewMessage(cfg.Spec), resp: codec.NewMessage(cfg.Spec),
			buf: make([]byte, 0, 2048)}
		t.session, _ = b.(Session)
		t.sealer, _ = b.(Sealer)
		terms[i] = t
	}
	// The recorder exists before the terminals connect and sign on, to count their failures; its clock
	// starts with the measured traffic.
	rec := newRecorder(min(cfg.Terminals, 4*runtime.GOMAXPROCS(0)), time.Now(), seriesInterval(cfg.Duration))
	connected := connectAll(ctx, terms, rec)
	defer func() {
		for _, t := range terms {
			if t.conn != nil {
				t.conn.Close()
			}
		}
	}()
	if connected == 0 {
		return nil, fmt.Errorf("no terminal could connect to %s and sign on: %v", cfg.Target, terms[0].connErr)
	}
	cpuBefore, err := scrapeCPU(ctx, cfg.MetricsURL)
	if err != nil {
		return nil, err
	}
	ownBefore := processCPU()
	start := time.Now()
	rec.start = start
	deadline := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for _, t := range terms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.run(ctx, rec, start, deadline)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	ownAfter := processCPU()
	cpuAfter, err := scrapeCPU(context.WithoutCancel(ctx), cfg.MetricsURL)
	if err != nil {
		return nil, err
	}
	rep := newReport(&cfg, rec, elapsed)
	if n := rep.Completed; n > 0 {
		rep.LoadgenCPUPerTxn = float64(ownAfter-ownBefore) / float64(time.Microsecond) / float64(n)
		if cfg.MetricsURL != "" {
			v := (cpuAfter - cpuBefore) * 1e6 / float64(n)
			rep.CPUPerTxn = &v
		}
	}
	return rep, nil
}

func (c *Config) fill() error {
	switch {
	case c.Spec == nil:
		return errors.New("loadtest: no spec")
	case c.Terminals < 1:
		return errors.New("loadtest: terminals must be at least 1")
	case c.Duration <= 0:
		return errors.New("loadtest: duration must be positive")
	case c.Rate < 0:
		return errors.New("loadtest: rate must not be negative")
	}
	if c.Mix.total() == 0 {
		c.Mix = DefaultMix
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.NewBuilder == nil {
		c.NewBuilder = NewHostBuilder(DefaultPANPrefix)
	}
	return nil
}

// seriesInterval keeps the latency-over-time series near 120 points or fewer, at least a second apart.
func seriesInterval(d time.Duration) time.Duration {
	return max(time.Second, (d / 120).Round(time.Second))
}

// connectAll connects every terminal and signs it on, dialParallel at a time, and returns how many are ready.
func connectAll(ctx context.Context, terms []*terminal, rec *recorder) int {
	sem := make(chan struct{}, dialParallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for _, t := range terms {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if t.connect(ctx, rec.shard(t.id)) {
				mu.Lock()
				n++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return n
}

// terminal is one virtual terminal: its connection, its builder and its buffers.
type terminal struct {
	id        int
	cfg       *Config
	b         Builder
	session   Session // b when it signs on, or nil
	sealer    Sealer  // b when it seals its frames, or nil
	conn      net.Conn
	connErr   error // why the last connect failed
	req, resp *codec.Message
	out       []byte
	buf       []byte // bytes read and not yet used
	seq       uint64 // requests built, for the mix
}

// connect dials the target and signs the terminal on when its builder has a session. A failed dial counts
// as an error, a failed sign-on as a sign-on failure; either leaves the terminal without a connection.
func (t *terminal) connect(ctx context.Context, sh *shard) bool {
	d := net.Dialer{Timeout: t.cfg.Timeout}
	c, err := d.DialContext(ctx, "tcp", t.cfg.Target)
	t.conn, t.connErr, t.buf = c, err, t.buf[:0]
	if err != nil {
		sh.add(&sh.errors)
		return false
	}
	if t.session == nil {
		return true
	}
	if err := t.signOn(sh); err != nil {
		t.connErr = err
		sh.add(&sh.signOnFailures)
		t.conn.Close()
		t.conn = nil
		return false
	}
	sh.add(&sh.signOns)
	return true
}

// signOn sends the session's sign-on request and hands it the reply.
func (t *terminal) signOn(sh *shard) error {
	t.req.Reset()
	if err := t.session.BuildSignOn(t.req, time.Now()); err != nil {
		return err
	}
	if err := t.send(); err != nil {
		return fmt.Errorf("sign-on: %w", err)
	}
	used, err := t.await(sh)
	if err != nil {
		return fmt.Errorf("sign-on: %w", err)
	}
	defer t.consume(used)
	if !replyMTI(t.req, t.resp) {
		return fmt.Errorf("sign-on answered with MTI %s", t.resp.MTI())
	}
	return t.session.SignedOn(t.resp)
}

// run sends requests until the deadline: back to back in a closed loop, or at the terminal's share of the
// rate in an open loop, where latency counts from the intended send time so a slow reply also delays (and
// is charged to) the requests queued behind it.
func (t *terminal) run(ctx context.Context, rec *recorder, start, deadline time.Time) {
	sh := rec.shard(t.id)
	var interval, phase time.Duration
	if t.cfg.Rate > 0 {
		interval = time.Duration(float64(t.cfg.Terminals) / t.cfg.Rate * float64(time.Second))
		phase = time.Duration(float64(t.id) / t.cfg.Rate * float64(time.Second))
	}
	for k := 0; ctx.Err() == nil; k++ {
		intended := time.Now()
		if interval > 0 {
			intended = start.Add(phase + time.Duration(k)*interval)
			if !intended.Before(deadline) {
				return
			}
			if !sleepUntil(ctx, intended) {
				return
			}
		} else if !intended.Before(deadline) {
			return
		}
		if t.conn == nil && !t.connect(ctx, sh) {
			sleepUntil(ctx, time.Now().Add(reconnectPause))
			continue
		}
		t.exchange(rec, sh, intended)
	}
}

func sleepUntil(ctx context.Context, when time.Time) bool {
	d := time.Until(when)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// exchange sends one request and waits for its reply, skipping replies to earlier requests (late or
// duplicated ones) and keep-alives.
func (t *terminal) exchange(rec *recorder, sh *shard, intended time.Time) {
	k := t.cfg.Mix.pick(t.seq*2654435761 + uint64(t.id))
	t.seq++
	t.req.Reset()
	k, err := t.b.Build(t.req, k, time.Now())
	if err != nil {
		sh.add(&sh.errors)
		return
	}
	sh.sentOne(k)
	if err := t.send(); err != nil {
		if errors.Is(err, errWrite) {
			t.broken(sh)
		} else {
			sh.add(&sh.errors)
		}
		return
	}
	used, err := t.await(sh)
	switch {
	case err == nil:
	case errors.Is(err, errTimeout):
		sh.add(&sh.timeouts)
		t.b.Answered(t.req, nil)
		return
	default:
		t.broken(sh)
		return
	}
	defer t.consume(used)
	if !replyMTI(t.req, t.resp) || t.b.Answered(t.req, t.resp) != nil {
		sh.add(&sh.invalid)
		return
	}
	code, _ := t.resp.Value(39)
	rec.answered(sh, code, intended, time.Now())
}

var (
	errWrite   = errors.New("connection lost while sending")
	errTimeout = errors.New("no reply in time")
)

// send frames t.req, seals it when the builder does, and writes it.
func (t *terminal) send() error {
	var err error
	if t.out, err = t.req.AppendFrame(t.cfg.Spec.Framing(), t.out[:0]); err != nil {
		return err
	}
	if t.sealer != nil {
		t.sealer.Seal(t.req, t.out)
	}
	if _, err := t.conn.Write(t.out); err != nil {
		return errWrite
	}
	return nil
}

// await reads until the reply matching t.req (same 11 and 41) is in t.resp and returns the bytes of t.buf
// it used, to consume once done with t.resp. Keep-alives are skipped; undecodable frames count as errors
// and replies to other requests as unmatched. It returns errTimeout when no reply came in time, or another
// error when the connection is unusable.
func (t *terminal) await(sh *shard) (int, error) {
	t.conn.SetReadDeadline(time.Now().Add(t.cfg.Timeout))
	fr := t.cfg.Spec.Framing()
	stan, _ := t.req.Value(11)
	tid, _ := t.req.Value(41)
	for {
		body, used, err := fr.Split(t.buf)
		if err == codec.ErrNeedMore {
			if err := t.fill(); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					return 0, errTimeout
				}
				return 0, err
			}
			continue
		}
		if err != nil { // a bad length header: the stream cannot be resynchronised
			return 0, err
		}
		if fr.IsKeepAlive(body) {
			t.consume(used)
			continue
		}
		t.resp.Reset()
		switch err := t.resp.UnpackFrame(fr, body); {
		case err != nil:
			sh.add(&sh.errors)
		case !equal(t.resp, 11, stan) || !equal(t.resp, 41, tid):
			sh.add(&sh.unmatched)
		default:
			return used, nil
		}
		t.consume(used)
	}
}

// replyMTI reports whether resp's MTI answers req's: the same with the function digit plus one (0200 ->
// 0210).
func replyMTI(req, resp *codec.Message) bool {
	q, r := req.MTIBytes(), resp.MTIBytes()
	return len(q) == 4 && len(r) == 4 && q[0] == r[0] && q[1] == r[1] && q[2]+1 == r[2] && q[3] == r[3]
}

func equal(m *codec.Message, n int, want []byte) bool {
	v, _ := m.Value(n)
	return string(v) == string(want)
}

// fill reads more bytes into t.buf.
func (t *terminal) fill() error {
	if len(t.buf) == cap(t.buf) {
		t.buf = append(t.buf, make([]byte, cap(t.buf))...)[:len(t.buf)]
	}
	n, err := t.conn.Read(t.buf[len(t.buf):cap(t.buf)])
	t.buf = t.buf[:len(t.buf)+n]
	if n > 0 {
		return nil
	}
	return err
}

// consume drops the first n bytes of t.buf. The message that referenced them must be done with.
func (t *terminal) consume(n int) {
	t.buf = t.buf[:copy(t.buf, t.buf[n:])]
}

// broken counts an error and drops the connection; the next request reconnects.
func (t *terminal) broken(sh *shard) {
	sh.add(&sh.errors)
	t.b.Answered(t.req, nil)
	t.conn.Close()
	t.conn = nil
}
