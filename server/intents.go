package server

import (
	"context"
	"strconv"
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
type intents struct {
	store  saf.Store
	sealer saf.Sealer
	prefix string // node and start time, so ids stay unique across restarts
	seq    atomic.Uint64
}

func newIntents(store saf.Store, sealer saf.Sealer, node string) *intents {
	return &intents{store: store, sealer: sealer, prefix: node + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"}
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
	return e.ID, in.store.Put(ctx, e)
}

// End implements flow.Intents.
func (in *intents) End(ctx context.Context, acquirer, id string) error {
	return in.store.Remove(ctx, acquirer, id)
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
