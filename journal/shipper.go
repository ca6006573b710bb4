package journal

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// ShipperOptions configure a Shipper; zero values take the defaults in brackets. The yaml tags are the keys a
// sink's section of the switch's config may carry.
type ShipperOptions struct {
	BatchSize  int           `yaml:"batch_size"`  // records per Deliver call [256]
	MinBackoff time.Duration `yaml:"min_backoff"` // first wait after a failed Deliver [100ms]
	MaxBackoff time.Duration `yaml:"max_backoff"` // cap of the doubling wait [30s]
	Interval   time.Duration `yaml:"interval"`    // wake-up without an append signal [1s]
	// Linger is how long a partial batch waits for more records before it is delivered [20ms]: under load it
	// turns one Deliver and one checkpoint per commit into one per Linger; negative delivers at once.
	Linger         time.Duration `yaml:"linger"`
	DeliverTimeout time.Duration `yaml:"deliver_timeout"` // bound of one Deliver call [30s]
	// CheckpointEvery is the least time between two checkpoint writes [200ms]; negative writes one after every
	// delivered batch. A checkpoint file write (temporary file, rename) costs far more than a batch under load;
	// after a crash the sink receives again at most what was delivered in this time (at least once, with
	// idempotency keys). An idle shipper writes the pending checkpoint once the time is up.
	CheckpointEvery time.Duration `yaml:"checkpoint_every"`
	// RetryHorizon is how long the shipper may keep retrying one batch before it raises the horizon alarm;
	// sinks keep their idempotency keys at least this long plus the longest switch downtime [24h].
	RetryHorizon time.Duration         `yaml:"retry_horizon"`
	Logger       *zap.Logger           `yaml:"-"` // [no logs]
	Registerer   prometheus.Registerer `yaml:"-"` // [no metrics]
	Now          func() time.Time      `yaml:"-"` // [time.Now]
}

func (o *ShipperOptions) defaults() {
	setDefault(&o.BatchSize, 256)
	setDefault(&o.MinBackoff, 100*time.Millisecond)
	setDefault(&o.MaxBackoff, 30*time.Second)
	setDefault(&o.Interval, time.Second)
	if o.Linger == 0 {
		o.Linger = 20 * time.Millisecond
	}
	setDefault(&o.DeliverTimeout, 30*time.Second)
	if o.CheckpointEvery == 0 {
		o.CheckpointEvery = 200 * time.Millisecond
	}
	setDefault(&o.RetryHorizon, 24*time.Hour)
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Shipper feeds one Sink from the journal, at least once: it reads from the sink's durable checkpoint, delivers
// a batch, and moves the checkpoint only after Deliver returned nil. Failed deliveries are retried with capped
// exponential backoff, for as long as it takes; Append never waits for a shipper. Each sink has its own
// Shipper and checkpoint, so sinks progress independently.
type Shipper struct {
	j    *Journal
	sink Sink
	name string
	opts ShipperOptions
	log  *zap.Logger

	running       atomic.Bool
	delivered     atomic.Uint64
	failures      atomic.Uint64
	retryingSince atomic.Int64 // Unix nanoseconds of the first failure of the current batch, 0 when none

	mu          sync.Mutex
	lastErr     string
	lastErrTime time.Time

	// afterDeliver, set by tests, runs between a successful Deliver and the checkpoint; an error ends Run
	// there, as a crash would.
	afterDeliver func() error
}

// Status is a snapshot of a Shipper's progress.
type Status struct {
	Sink          string
	Checkpoint    Position  // last record shipped
	LagRecords    uint64    // records journaled but not shipped
	LagBytes      int64     // their bytes
	Delivered     uint64    // records delivered since the Shipper was made, redeliveries included
	Failures      uint64    // failed Deliver calls and checkpoint writes
	LastError     string    // text of the last failure, "" if none
	LastErrorAt   time.Time // when it failed
	RetryingSince time.Time // first failure of the batch being retried; zero when not retrying
}

// NewShipper makes the Shipper of sink. A sink without a checkpoint starts at the oldest record on disk; its
// checkpoint file is created now, so retention keeps its records from here on.
func NewShipper(j *Journal, sink Sink, opts ShipperOptions) (*Shipper, error) {
	name := sink.Name()
	if !sinkNameRE.MatchString(name) {
		return nil, fmt.Errorf("journal: sink name %q: want 1-64 letters, digits, '_' or '-'", name)
	}
	opts.defaults()
	s := &Shipper{j: j, sink: sink, name: name, opts: opts, log: opts.Logger.Named("shipper").With(zap.String("sink", name))}
	if _, ok := j.checkpoint(name); !ok {
		start := j.firstAvailable()
		if err := j.commitCheckpoint(name, start); err != nil {
			return nil, err
		}
		s.log.Info("new sink starts at the oldest record", zap.Uint64("seq", start.Seq+1))
	}
	if err := s.registerMetrics(); err != nil {
		return nil, err
	}
	return s, nil
}

// Run ships until ctx is done (returning ctx.Err()) or the journal cannot be read (a *CorruptionError, for
// example). Only one Run of a Shipper may be active.
func (s *Shipper) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return fmt.Errorf("journal: shipper of %s already running", s.name)
	}
	defer s.running.Store(false)
	ckpt, _ := s.j.checkpoint(s.name)
	rd, err := s.j.NewReader(ckpt.Seq + 1)
	if err != nil {
		return err
	}
	defer rd.Close()
	wake := s.j.subscribe()
	defer s.j.unsubscribe(wake)
	tick := time.NewTicker(s.opts.Interval)
	defer tick.Stop()

	batch := make([]Record, 0, s.opts.BatchSize)
	var (
		end, ckptPos Position
		ckptPending  bool      // ckptPos is delivered but not yet the durable checkpoint
		ckptAt       time.Time // when the last checkpoint was written
		due          *time.Timer
	)
	defer func() {
		if due != nil {
			due.Stop()
		}
	}()
	// checkpoint writes the pending checkpoint; a failed write is retried (until then the records since the
	// last checkpoint may be delivered again).
	checkpoint := func() error {
		err := s.retry(ctx, "checkpoint", func() error { return s.j.commitCheckpoint(s.name, ckptPos) })
		if err == nil {
			ckptPending, ckptAt = false, time.Now()
		}
		return err
	}
	lingered := false
	for {
		for len(batch) < s.opts.BatchSize {
			e, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				s.log.Error("cannot read the journal", zap.Error(err))
				return err
			}
			batch = append(batch, e.Record)
			end = e.End
		}
		if len(batch) == 0 {
			var dueC <-chan time.Time
			if ckptPending {
				wait := s.opts.CheckpointEvery - time.Since(ckptAt)
				if wait <= 0 {
					if err := checkpoint(); err != nil {
						return err
					}
					continue
				}
				if due == nil {
					due = time.NewTimer(wait)
				} else {
					due.Reset(wait)
				}
				dueC = due.C
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-wake:
			case <-tick.C:
			case <-dueC:
			}
			continue
		}
		if len(batch) < s.opts.BatchSize && !lingered && s.opts.Linger > 0 {
			lingered = true
			if err := sleep(ctx, s.opts.Linger); err != nil {
				return err
			}
			continue
		}
		if err := s.retry(ctx, "deliver", func() error { return s.deliver(ctx, batch) }); err != nil {
			return err
		}
		s.delivered.Add(uint64(len(batch)))
		if s.afterDeliver != nil {
			if err := s.afterDeliver(); err != nil {
				return err
			}
		}
		ckptPos, ckptPending = end, true
		if s.opts.CheckpointEvery < 0 || time.Since(ckptAt) >= s.opts.CheckpointEvery {
			if err := checkpoint(); err != nil {
				return err
			}
		}
		batch, lingered = batch[:0], false
	}
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (s *Shipper) deliver(ctx context.Context, batch []Record) error {
	dctx, cancel := context.WithTimeout(ctx, s.opts.DeliverTimeout)
	defer cancel()
	return s.sink.Deliver(dctx, batch)
}

// retry calls op until it succeeds, waiting between failures with capped exponential backoff and jitter. It
// returns only nil or ctx.Err().
func (s *Shipper) retry(ctx context.Context, what string, op func() error) error {
	wait := s.opts.MinBackoff
	horizonAlarm := false
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil {
			if attempt > 1 {
				s.log.Info(what+" succeeded after failures", zap.Int("attempts", attempt))
			}
			s.retryingSince.Store(0)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now := s.opts.Now()
		s.failures.Add(1)
		s.mu.Lock()
		s.lastErr, s.lastErrTime = err.Error(), now
		s.mu.Unlock()
		s.retryingSince.CompareAndSwap(0, now.UnixNano())
		retrying := now.Sub(time.Unix(0, s.retryingSince.Load()))
		s.log.Warn(what+" failed; retrying", zap.Error(err), zap.Int("attempt", attempt), zap.Duration("retrying_for", retrying))
		if retrying > s.opts.RetryHorizon && !horizonAlarm {
			horizonAlarm = true
			s.log.Error("retry horizon exceeded: a sink whose idempotency window is the horizon may apply a redelivered record twice",
				zap.Duration("horizon", s.opts.RetryHorizon))
		}
		// Sleep between wait/2 and wait, so nodes retrying the same sink spread out.
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, s.opts.MaxBackoff)
	}
}

// Status returns the shipper's progress.
func (s *Shipper) Status() Status {
	ckpt, _ := s.j.checkpoint(s.name)
	end := s.j.End()
	st := Status{
		Sink:       s.name,
		Checkpoint: ckpt,
		LagRecords: end.Seq - min(ckpt.Seq, end.Seq),
		LagBytes:   max(0, end.Bytes-ckpt.Bytes),
		Delivered:  s.delivered.Load(),
		Failures:   s.failures.Load(),
	}
	if ns := s.retryingSince.Load(); ns != 0 {
		st.RetryingSince = time.Unix(0, ns)
	}
	s.mu.Lock()
	st.LastError, st.LastErrorAt = s.lastErr, s.lastErrTime
	s.mu.Unlock()
	return st
}
