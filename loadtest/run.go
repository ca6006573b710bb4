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
		terms[i] = &terminal{id: i, cfg: &cfg, b: b, req: codec.NewMessage(cfg.Spec), resp: codec.NewMessage(cfg.Spec),
			buf: make([]byte, 0, 2048)}
	}
	connected := dialAll(ctx, terms)
	defer func() {
		for _, t := range terms {
			if t.conn != nil {
				t.conn.Close()
			}
		}
	}()
	if connected == 0 {
		return nil, fmt.Errorf("no terminal could connect to %s: %v", cfg.Target, terms[0].dialErr)
	}
	cpuBefore, err := scrapeCPU(ctx, cfg.MetricsURL)
	if err != nil {
		return nil, err
	}
	ownBefore := processCPU()
	start := time.Now()
	rec := newRecorder(min(cfg.Terminals, 4*runtime.GOMAXPROCS(0)), start, seriesInterval(cfg.Duration))
	for _, t := range terms {
		if t.dialErr != nil {
			rec.shard(t.id).add(&rec.shard(t.id).errors)
		}
	}
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

// dialAll connects every terminal, dialParallel at a time, and returns how many connected.
func dialAll(ctx context.Context, terms []*terminal) int {
	sem := make(chan struct{}, dialParallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for _, t := range terms {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if t.dial(ctx) == nil {
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
	conn      net.Conn
	dialErr   error
	req, resp *codec.Message
	out       []byte
	buf       []byte // bytes read and not yet used
	seq       uint64 // requests built, for the mix
}

func (t *terminal) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: t.cfg.Timeout}
	c, err := d.DialContext(ctx, "tcp", t.cfg.Target)
	t.conn, t.dialErr, t.buf = c, err, t.buf[:0]
	return err
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
		if t.conn == nil {
			if err := t.dial(ctx); err != nil {
				sh.add(&sh.errors)
				sleepUntil(ctx, time.Now().Add(reconnectPause))
				continue
			}
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
	now := time.Now()
	k, err := t.b.Build(t.req, k, now)
	if err != nil {
		sh.add(&sh.errors)
		return
	}
	if t.out, err = t.req.AppendFrame(t.cfg.Spec.Framing(), t.out[:0]); err != nil {
		sh.add(&sh.errors)
		return
	}
	sh.sentOne(k)
	if _, err := t.conn.Write(t.out); err != nil {
		t.broken(sh)
		return
	}
	t.conn.SetReadDeadline(now.Add(t.cfg.Timeout))
	fr := t.cfg.Spec.Framing()
	stan, _ := t.req.Value(11)
	tid, _ := t.req.Value(41)
	for {
		body, used, err := fr.Split(t.buf)
		if err == codec.ErrNeedMore {
			if err := t.fill(); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					sh.add(&sh.timeouts)
					t.b.Answered(t.req, nil)
					return
				}
				t.broken(sh)
				return
			}
			continue
		}
		if err != nil { // a bad length header: the stream cannot be resynchronised
			t.broken(sh)
			return
		}
		t.resp.Reset()
		uerr := error(nil)
		if !fr.IsKeepAlive(body) {
			uerr = t.resp.UnpackFrame(fr, body)
		}
		switch {
		case fr.IsKeepAlive(body):
		case uerr != nil:
			sh.add(&sh.errors)
		case !equal(t.resp, 11, stan) || !equal(t.resp, 41, tid):
			sh.add(&sh.unmatched)
		default:
			code, _ := t.resp.Value(39)
			rec.answered(sh, code, intended, time.Now())
			t.b.Answered(t.req, t.resp)
			t.consume(used)
			return
		}
		t.consume(used)
	}
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
