package server

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/flow"
	"github.com/railswitch/railswitch/nodestate"
	"github.com/railswitch/railswitch/saf"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"
)

// StateConfig is the `state:` section (docs/nodestate.md): the node state embedded in this node's files, or
// shared by several nodes through Redis. A plain string (`state: state`) is the folder of embedded state.
type StateConfig struct{ nodestate.Config }

// UnmarshalYAML takes the folder form or the section form.
func (c *StateConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		c.Type, c.Dir = nodestate.TypeEmbedded, n.Value
		return nil
	}
	return n.Decode(&c.Config)
}

// buildState opens the node state: sessions, batch totals, originals and STAN/RRN counters, and for shared
// state the node's lease.
func (s *Switch) buildState() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // an earlier life may hold the lease
	defer cancel()
	sc := s.cfg.State.Config
	if err := sc.Validate(); err != nil {
		return err
	}
	deps := nodestate.Deps{DataDir: s.cfg.dir, NoFsync: s.cfg.Journal.Fsync != nil && !*s.cfg.Journal.Fsync, NodeID: s.cfg.Node.ID, NodeNumber: s.cfg.Node.Number, Log: s.log,
		OnLeaseLost: func(err error) {
			// Another node may now drain this node's queue: stop being ready; the stores refuse to write.
			s.leaseLost.Store(true)
			s.log.Error("node lease lost: this node no longer owns its reversal queue; restart it", zap.Error(err))
		}}
	if s.redis != nil {
		deps.Redis = s.redis
	}
	if sc.Type == nodestate.TypeEmbedded {
		dir := sc.Dir
		if !filepath.IsAbs(dir) {
			dir = s.cfg.Path(dir)
		}
		deps.SessionsFile = filepath.Join(dir, "sessions.json")
	}
	st, err := nodestate.Open(ctx, sc, deps)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	s.state = st
	return nil
}

// safStore returns the store of one of the node's reversal entry sets: a file store in dir when the state
// is embedded, the node's Redis set when shared (so a survivor can take the entries over).
func (s *Switch) safStore(ctx context.Context, set, dir string) (saf.Store, error) {
	return s.state.SAFStore(ctx, set, dir)
}

// takeOver moves the reversal entries of a dead node into this node's queue: its pending and dead reversals
// and its intents (requests whose outcome it never recorded, so they are reversed). Dead letters come back as
// pending: the survivor tries them again, and they return to the dead-letter list if the bank still refuses.
func (s *Switch) takeOver(ctx context.Context, node, set string, e *saf.Entry) error {
	msg, err := s.sealer.Open(e.Sealed)
	if err != nil {
		return err
	}
	defer clear(msg)
	if err := s.queue.Enqueue(ctx, e.Acquirer, e.Link, e.TxnID, msg); err != nil {
		return err
	}
	if set == "intents" {
		s.reversedBySwitch(ctx, e.Acquirer, e.TxnID, msg)
	}
	s.takenOver.WithLabelValues(node, set).Inc()
	s.log.Warn("entry of a dead node taken over", zap.String("node", node), zap.String("set", set),
		zap.String("acquirer", e.Acquirer), zap.String("txn", e.TxnID), zap.Bool("was_dead_letter", e.Dead))
	return nil
}

// reversedBySwitch is told of each reversal the switch queued for a request whose outcome a stopped node
// never recorded. When the request had been approved (its original was stored, which happens before the
// approval is journaled), the approval may be in the journal or the ledger: the reversal is journaled as a
// reversal of it (flow.SwitchReversalRecord). A request never approved journals nothing. A terminal that
// reverses it as well sends a second reversal to the bank, which acknowledges the repeat.
func (s *Switch) reversedBySwitch(ctx context.Context, acquirer, txnID string, msg []byte) {
	acq := s.acquirers[acquirer]
	if acq == nil {
		return
	}
	rev := codec.NewMessage(acq.Spec)
	if err := rev.Unpack(msg); err != nil {
		s.log.Error("cannot read a recovered reversal", zap.String("txn", txnID), zap.Error(err))
		return
	}
	tid := rev.String(41)
	orig, ok, err := s.state.Txns.GetByRRN(ctx, tid, rev.String(37))
	if err != nil {
		s.log.Error("cannot look up the original of a recovered reversal", zap.String("txn", txnID), zap.Error(err))
	}
	if !ok || orig.ID != txnID || orig.Reversed {
		return
	}
	rec := flow.SwitchReversalRecord(rev, acquirer, txnID, rev.String(39), s.cfg.Node.Posting, time.Now())
	if t, found := s.registry.Lookup(tid); found {
		rec.Terminal, rec.Merchant, rec.Bureau, rec.Station = t.ID, t.Merchant, t.Bureau, t.Station
	}
	if _, err := s.journal.Append(rec); err != nil {
		s.log.Error("cannot journal the reversal of a recovered approval", zap.String("txn", txnID), zap.Error(err))
	}
	s.log.Warn("approval whose delivery was not recorded: reversed and journaled", zap.String("txn", txnID),
		zap.String("terminal", tid))
}
