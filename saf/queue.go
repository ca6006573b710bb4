package saf

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/railswitch/railswitch/codec"
	"go.uber.org/zap"
)

// Sender delivers one queued message to an acquirer and returns the response code (field 39) of the bank's
// answer. link is "acquirer/endpoint/conn" to send on, or "" for any signed-on link of the acquirer. An
// error means no answer (not sent, timeout, connection lost) and the entry is retried. msg is only valid
// during the call: the queue wipes it afterwards.
type Sender interface {
	Send(ctx context.Context, acquirer, link string, msg []byte) (responseCode string, err error)
}

// Errors a caller branches on.
var (
	// ErrClosed means the queue (or its store) is closed.
	ErrClosed = errors.New("saf: closed")
	// ErrNotFound means no entry has the given id.
	ErrNotFound = errors.New("saf: no such entry")
	// ErrNotDead means Retry was asked for an entry that is still pending.
	ErrNotDead = errors.New("saf: entry is not a dead letter")
)

// Alarm reports an entry queued for longer than its acquirer's MaxAge.
type Alarm struct {
	Acquirer, ID, TxnID string
	Kind                Kind
	Age                 time.Duration
	Attempts            int
	LastError           string
}

// Config wires a Queue. Store, Sealer and Sender are required.
type Config struct {
	Store  Store // the Queue owns it: Close closes it
	Sealer Sealer
	Sender Sender
	// Node names this switch node in entry ids (default "local").
	Node string
	// Spec returns an acquirer's link spec, for the MTI encoding of its messages (nil, or a nil spec: ASCII).
	Spec func(acquirer string) *codec.Spec
	// Policy returns an acquirer's policy, read when its queue starts (nil: DefaultPolicy for all).
	Policy func(acquirer string) Policy
	// OnAlarm is called once per entry that passes its MaxAge (from the alarm check goroutine).
	OnAlarm func(Alarm)
	// CheckEvery is the period of the age check (default 10s).
	CheckEvery time.Duration
	// Registerer receives the queue's metrics (nil: none); Close unregisters them.
	Registerer prometheus.Registerer
	Log        *zap.Logger
	// Now and Wait are the clock and the backoff wait (defaults: time.Now and a timer); tests inject them.
	// Wait returns early with ctx's error when the queue closes.
	Now  func() time.Time
	Wait func(ctx context.Context, d time.Duration) error
}

// Queue is the store-and-forward queue: durable, sealed at rest, drained in order per acquirer. It
// satisfies the transaction flow's Reversals interface.
type Queue struct {
	cfg     Config
	ctx     context.Context
	cancel  context.CancelFunc
	metrics *metrics

	mu     sync.Mutex
	queues map[string]*acqQueue
	closed bool

	enqueuing sync.WaitGroup // Enqueue calls in progress
	workers   sync.WaitGroup
	seq       atomic.Uint64
}

// acqQueue is one acquirer's entries, pending and dead, in Seq order, and its worker's wake-up.
type acqQueue struct {
	name    string
	policy  Policy
	enc     codec.MTIEncoding
	entries []*Entry
	alarmed map[string]bool // ids of entries the alarm was raised for
	wake    chan struct{}
}

// Open loads the entries of cfg.Store and starts draining them. From then on the Queue owns the store; when
// Open fails the caller still closes it.
func Open(ctx context.Context, cfg Config) (*Queue, error) {
	if cfg.Store == nil || cfg.Sealer == nil || cfg.Sender == nil {
		return nil, errors.New("saf: Store, Sealer and Sender are required")
	}
	if cfg.Node == "" {
		cfg.Node = "local"
	}
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Wait == nil {
		cfg.Wait = sleep
	}
	entries, err := cfg.Store.Load(ctx)
	if err != nil {
		return nil, err
	}
	q := &Queue{cfg: cfg, queues: map[string]*acqQueue{}}
	// Ids stay unique across restarts: the sequence starts at the clock (microseconds) or after the last
	// loaded entry, whichever is later.
	last := uint64(cfg.Now().UnixMicro())
	for _, e := range entries {
		aq := q.queueLocked(e.Acquirer)
		aq.entries = append(aq.entries, e)
		last = max(last, e.Seq)
	}
	q.seq.Store(last)
	if q.metrics, err = newMetrics(q, cfg.Registerer); err != nil {
		return nil, err
	}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	for _, aq := range q.queues {
		slices.SortFunc(aq.entries, func(a, b *Entry) int { return cmpUint(a.Seq, b.Seq) })
		dead := 0
		for _, e := range aq.entries {
			if e.Dead {
				dead++
			}
		}
		cfg.Log.Info("saf: queue loaded", zap.String("acquirer", aq.name), zap.Int("pending", len(aq.entries)-dead),
			zap.Int("dead", dead))
		q.start(aq)
	}
	q.workers.Add(1)
	go q.checkLoop()
	return q, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// queueLocked returns an acquirer's queue, creating it (without its worker) if needed.
func (q *Queue) queueLocked(acquirer string) *acqQueue {
	if aq, ok := q.queues[acquirer]; ok {
		return aq
	}
	p := DefaultPolicy()
	if q.cfg.Policy != nil {
		p = q.cfg.Policy(acquirer).withDefaults()
	}
	enc := codec.MTIASCII
	if q.cfg.Spec != nil {
		if s := q.cfg.Spec(acquirer); s != nil && s.Def().MTI != 0 {
			enc = s.Def().MTI
		}
	}
	aq := &acqQueue{name: acquirer, policy: p, enc: enc, alarmed: map[string]bool{}, wake: make(chan struct{}, 1)}
	q.queues[acquirer] = aq
	return aq
}

func (q *Queue) start(aq *acqQueue) {
	q.workers.Add(1)
	go q.drain(aq)
}

// Enqueue queues msg (a reversal 0400/0420 or an advice 0220, packed in the acquirer's spec from the MTI on)
// for acquirer, pinned to link when not empty, and returns once the entry is durable. It never waits for
// the bank.
func (q *Queue) Enqueue(ctx context.Context, acquirer, link, txnID string, msg []byte) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	q.enqueuing.Add(1)
	aq, fresh := q.queues[acquirer], false
	if aq == nil {
		aq, fresh = q.queueLocked(acquirer), true
	}
	enc := aq.enc
	q.mu.Unlock()
	defer q.enqueuing.Done()
	if fresh {
		q.start(aq)
	}

	mti, err := readMTI(msg, enc)
	if err != nil {
		return err
	}
	kind, ok := kindOf(mti)
	if !ok {
		return fmt.Errorf("saf: MTI %s is neither a reversal nor an advice", mti)
	}
	sealed, err := q.cfg.Sealer.Seal(msg)
	if err != nil {
		return fmt.Errorf("saf: seal: %w", err)
	}
	now := q.cfg.Now()
	seq := q.seq.Add(1)
	e := &Entry{
		ID: fmt.Sprintf("%s-%d", q.cfg.Node, seq), Seq: seq, Acquirer: acquirer, Link: link, TxnID: txnID,
		Kind: kind, MTI: mti, Node: q.cfg.Node, Queued: now, Since: now, Next: now, Sealed: sealed,
	}
	if err := q.cfg.Store.Put(ctx, e); err != nil {
		return err
	}
	q.metrics.enqueued.WithLabelValues(acquirer, string(kind)).Inc()
	q.mu.Lock()
	i, _ := slices.BinarySearchFunc(aq.entries, seq, func(e *Entry, s uint64) int { return cmpUint(e.Seq, s) })
	aq.entries = slices.Insert(aq.entries, i, e)
	q.mu.Unlock()
	aq.signal()
	return nil
}

func (aq *acqQueue) signal() {
	select {
	case aq.wake <- struct{}{}:
	default:
	}
}

// Pending returns the entries waiting to be sent, by acquirer and in queue order, without their messages.
func (q *Queue) Pending() []Entry { return q.list(false) }

// DeadLetters returns the entries that gave up, by acquirer and in queue order, without their messages.
func (q *Queue) DeadLetters() []Entry { return q.list(true) }

func (q *Queue) list(dead bool) []Entry {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Entry
	for _, aq := range q.queues {
		for _, e := range aq.entries {
			if e.Dead == dead {
				c := *e
				c.Sealed = nil
				out = append(out, c)
			}
		}
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if c := strings.Compare(a.Acquirer, b.Acquirer); c != 0 {
			return c
		}
		return cmpUint(a.Seq, b.Seq)
	})
	return out
}

// Retry puts a dead letter back in its queue, in its original place, with a fresh round of attempts. A worker
// in a backoff wait for another entry of the same acquirer sends it when that wait ends.
func (q *Queue) Retry(id string) error {
	q.mu.Lock()
	var aq *acqQueue
	var e *Entry
	for _, cand := range q.queues {
		if i := slices.IndexFunc(cand.entries, func(e *Entry) bool { return e.ID == id }); i >= 0 {
			aq, e = cand, cand.entries[i]
		}
	}
	dead := e != nil && e.Dead
	q.mu.Unlock()
	switch {
	case e == nil:
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	case !dead:
		return fmt.Errorf("%w: %s", ErrNotDead, id)
	}
	now := q.cfg.Now()
	c, err := q.update(aq, e, func(c *Entry) { c.Dead, c.Attempts, c.Since, c.Next = false, 0, now, now })
	if err != nil {
		return err
	}
	q.cfg.Log.Info("saf: dead letter put back", zap.String("acquirer", aq.name), zap.String("id", id),
		zap.String("txn", c.TxnID))
	aq.signal()
	return nil
}

// update changes a copy of e, stores it, and only then makes it e's state. Only the acquirer's worker
// changes pending entries and only Retry dead ones, so the state changed is the state stored.
func (q *Queue) update(aq *acqQueue, e *Entry, change func(*Entry)) (Entry, error) {
	q.mu.Lock()
	c := *e
	q.mu.Unlock()
	change(&c)
	if err := q.cfg.Store.Put(q.ctx, &c); err != nil {
		return c, err
	}
	q.mu.Lock()
	*e = c
	q.mu.Unlock()
	return c, nil
}

// Close stops the workers (a send in progress is cancelled and counts as failed), waits for them and
// closes the store. Entries stay in the store for the next Open.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.mu.Unlock()
	q.enqueuing.Wait()
	q.cancel()
	q.workers.Wait()
	q.metrics.unregister()
	return q.cfg.Store.Close()
}

// Stats is the state of one acquirer's queue.
type Stats struct {
	Acquirer   string
	Depth      int           // entries waiting to be sent
	Dead       int           // dead letters
	OverMaxAge int           // waiting entries older than MaxAge
	OldestAge  time.Duration // age of the oldest waiting entry (0 when none)
}

// Stats returns the state of every acquirer's queue, sorted by acquirer.
func (q *Queue) Stats() []Stats {
	now := q.cfg.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]Stats, 0, len(q.queues))
	for _, aq := range q.queues {
		s := Stats{Acquirer: aq.name}
		for _, e := range aq.entries {
			if e.Dead {
				s.Dead++
				continue
			}
			age := now.Sub(e.Queued)
			s.Depth++
			s.OldestAge = max(s.OldestAge, age)
			if age >= aq.policy.MaxAge {
				s.OverMaxAge++
			}
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Stats) int { return strings.Compare(a.Acquirer, b.Acquirer) })
	return out
}

// SenderFunc adapts a function to a Sender.
type SenderFunc func(ctx context.Context, acquirer, link string, msg []byte) (string, error)

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, acquirer, link string, msg []byte) (string, error) {
	return f(ctx, acquirer, link, msg)
}
