package server

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/railswitch/railswitch/flow"
	"github.com/railswitch/railswitch/saf"
	"go.uber.org/zap"
)

// intents implements flow.Intents: before a request leaves for a bank, its reversal is stored sealed (the
// reversal queue's key) and fsynced in a store of its own, <reversals.dir>/intents; once the request has an
// outcome the intent is removed. Intents left at start belong to requests whose outcome the node never
// recorded (it stopped abruptly): their reversals are queued (recoverIntents).
//
// It also stands between the flow and the reversal queue (Enqueue), because both may live in a store that
// fails for a while (Redis of shared state cut off): a reversal the queue refuses is held in memory and
// offered again every second, and the intent of its request stays until the queue took it, so a stop in
// between still reverses the request at the next start; an intent whose removal failed, although its outcome
// is known, is removed again every second, so it does not reverse a delivered approval at the next start.
type intents struct {
	store  saf.Store
	sealer saf.Sealer
	q      flow.Reversals // the reversal queue behind Enqueue
	log    *zap.Logger
	prefix string // node and start time, so ids stay unique across restarts
	seq    atomic.Uint64

	mu        sync.Mutex
	txnOf     map[string]string        // open intent id -> its transaction id
	held      map[string]*heldReversal // transaction id -> a reversal the queue refused
	unremoved map[string]string        // intent id -> acquirer: outcome known, removal failed
}

// heldReversal is a reversal waiting for the queue to take it, and the intents that wait for it.
type heldReversal struct {
	acquirer, link string
	msg            []byte
	intents        [][2]string // acquirer, intent id
}

func newIntents(store saf.Store, sealer saf.Sealer, q flow.Reversals, node string, log *zap.Logger) *intents {
	return &intents{store: store, sealer: sealer, q: q, log: log,
		prefix: node + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-",
		txnOf:  map[string]string{}, held: map[string]*heldReversal{}, unremoved: map[string]string{}}
}

// Enqueue implements flow.Reversals: the queue's Enqueue, or, when the queue's store fails, a reversal held
// and retried (see intents). It only fails when the reversal could be neither queued nor held.
func (in *intents) Enqueue(ctx context.Context, acquirer, link, txnID string, msg []byte) error {
	err := in.q.Enqueue(ctx, acquirer, link, txnID, msg)
	if err == nil {
		return nil
	}
	in.log.Error("reversal queue unavailable: reversal held in memory and retried", zap.String("acquirer", acquirer),
		zap.String("txn", txnID), zap.Error(err))
	in.mu.Lock()
	defer in.mu.Unlock()
	if h := in.held[txnID]; h != nil {
		clear(h.msg)
	}
	in.held[txnID] = &heldReversal{acquirer: acquirer, link: link, msg: bytes.Clone(msg)}
	return nil
}

// Held reports the reversals held in memory and the intents waiting to be removed.
func (in *intents) Held() (reversals, intents int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.held), len(in.unremoved)
}

// retry offers the held reversals to the queue again and removes the intents whose removal failed, every
// period until ctx ends.
func (in *intents) retry(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		in.retryOnce(ctx)
	}
}

func (in *intents) retryOnce(ctx context.Context) {
	in.mu.Lock()
	held := make(map[string]*heldReversal, len(in.held))
	for k, v := range in.held {
		held[k] = v
	}
	unremoved := make(map[string]string, len(in.unremoved))
	for k, v := range in.unremoved {
		unremoved[k] = v
	}
	in.mu.Unlock()
	for txn, h := range held {
		if err := in.q.Enqueue(ctx, h.acquirer, h.link, txn, h.msg); err != nil {
			continue
		}
		in.mu.Lock()
		delete(in.held, txn)
		waiting := h.intents
		in.mu.Unlock()
		clear(h.msg)
		in.log.Info("held reversal queued", zap.String("acquirer", h.acquirer), zap.String("txn", txn))
		for _, w := range waiting {
			in.remove(ctx, w[0], w[1])
		}
	}
	for id, acquirer := range unremoved {
		if in.store.Remove(ctx, acquirer, id) == nil {
			in.mu.Lock()
			delete(in.unremoved, id)
			in.mu.Unlock()
		}
	}
}

// remove forgets an intent whose outcome is durable, or keeps it for retry.
func (in *intents) remove(ctx context.Context, acquirer, id string) error {
	err := in.store.Remove(ctx, acquirer, id)
	if err != nil {
		in.mu.Lock()
		in.unremoved[id] = acquirer
		in.mu.Unlock()
	}
	return err
}

// Begin implements flow.Intents.
func (in *intents) Begin(ctx context.Context, acquirer, link, txnID string, reversal []byte) (string, error) {
	sealed, err := in.sealer.Seal(reversal)
	if err != nil {
		return "", err
	}
	now := time.Now()
	e := &saf.Entry{ID: in.prefix + strconv.FormatUint(in.seq.Add(1), 36), Acquirer: acquirer, Link: link,
		TxnID: txnID, Kind: saf.KindReversal, Queued: now, Since: now, Sealed: sealed}
	if err := in.store.Put(ctx, e); err != nil {
		// The request is not sent. A write that timed out may still land (a hung Redis answering late):
		// remove it once the store is back, or it would reverse a request that never left at the next start.
		in.mu.Lock()
		in.unremoved[e.ID] = acquirer
		in.mu.Unlock()
		return "", err
	}
	in.mu.Lock()
	in.txnOf[e.ID] = txnID
	in.mu.Unlock()
	return e.ID, nil
}

// End implements flow.Intents. While the request's reversal is held (not yet in the queue) the intent stays:
// it is removed once the queue takes the reversal.
func (in *intents) End(ctx context.Context, acquirer, id string) error {
	in.mu.Lock()
	txn := in.txnOf[id]
	delete(in.txnOf, id)
	if h := in.held[txn]; txn != "" && h != nil {
		h.intents = append(h.intents, [2]string{acquirer, id})
		in.mu.Unlock()
		return nil
	}
	in.mu.Unlock()
	return in.remove(ctx, acquirer, id)
}

// recoverIntents queues the reversal of every intent left without an outcome, tells reversed (which journals
// it when the request had been approved), and then forgets the intent. A stop in between queues the reversal
// again at the next start; banks acknowledge a repeat (94, 12 or 25), the journal record has the same key.
func (in *intents) recoverIntents(ctx context.Context, q flow.Reversals, log *zap.Logger,
	reversed func(ctx context.Context, acquirer, txnID string, msg []byte)) error {
	left, err := in.store.Load(ctx)
	if err != nil {
		return err
	}
	for _, e := range left {
		msg, err := in.sealer.Open(e.Sealed)
		if err != nil {
			return err
		}
		if err := q.Enqueue(ctx, e.Acquirer, e.Link, e.TxnID, msg); err != nil {
			return err
		}
		if reversed != nil {
			reversed(ctx, e.Acquirer, e.TxnID, msg)
		}
		log.Warn("request without a recorded outcome: reversal queued", zap.String("acquirer", e.Acquirer),
			zap.String("txn", e.TxnID))
		if err := in.store.Remove(ctx, e.Acquirer, e.ID); err != nil {
			return err
		}
	}
	return nil
}
