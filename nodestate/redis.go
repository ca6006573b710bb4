package nodestate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/railswitch/railswitch/flow"
	"github.com/railswitch/railswitch/terminal"
	"github.com/redis/go-redis/v9"
)

// DefaultTxnTTL is how long originals and batch totals are kept when no TTL is configured: long enough for
// a void, refund or completion a week later and for a batch settled late.
const DefaultTxnTTL = 8 * 24 * time.Hour

// The Redis stores honour the context of every call only if the client does: build it with
// ContextTimeoutEnabled (the switch's Redis client has it), else go-redis applies its own read and write
// timeouts instead of the context's deadline.

// RedisSessions is a terminal.Sessions in Redis: one JSON value per terminal, "<prefix>:{t:<tid>}:session",
// without expiry (a session lasts until the terminal signs on again). The working keys in it are LMK
// cryptograms, as in the embedded store.
type RedisSessions struct {
	rdb  redis.UniversalClient
	keys keyspace
}

// NewRedisSessions returns the session store under prefix (empty: DefaultPrefix).
func NewRedisSessions(rdb redis.UniversalClient, prefix string) (*RedisSessions, error) {
	ks, err := newKeyspace(prefix)
	if err != nil {
		return nil, err
	}
	return &RedisSessions{rdb: rdb, keys: ks}, nil
}

// Get returns the session of terminal tid.
func (s *RedisSessions) Get(ctx context.Context, tid string) (terminal.Session, bool, error) {
	data, err := s.rdb.Get(ctx, s.keys.session(tid)).Bytes()
	if errors.Is(err, redis.Nil) {
		return terminal.Session{}, false, nil
	}
	if err != nil {
		return terminal.Session{}, false, fmt.Errorf("nodestate: session of terminal %s: %w", tid, err)
	}
	var v terminal.Session
	if err := json.Unmarshal(data, &v); err != nil {
		return terminal.Session{}, false, fmt.Errorf("nodestate: session of terminal %s: %w", tid, err)
	}
	return v, true, nil
}

// Put stores a session.
func (s *RedisSessions) Put(ctx context.Context, v terminal.Session) error {
	if err := checkName("terminal id", v.TID); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("nodestate: session of terminal %s: %w", v.TID, err)
	}
	if err := s.rdb.Set(ctx, s.keys.session(v.TID), data, 0).Err(); err != nil {
		return fmt.Errorf("nodestate: storing the session of terminal %s: %w", v.TID, err)
	}
	return nil
}

// RedisBatches is a terminal.Batches in Redis: a hash per terminal and batch, "<prefix>:{t:<tid>}:batch:<batch>"
// with the fields da, dc (debit amount, count), ca, cc (credit), added to with HINCRBY so every node adds to the
// same totals. A batch expires ttl after its last Add.
type RedisBatches struct {
	rdb  redis.UniversalClient
	keys keyspace
	ttl  time.Duration
}

// NewRedisBatches returns the batch store under prefix; ttl 0 means DefaultTxnTTL.
func NewRedisBatches(rdb redis.UniversalClient, prefix string, ttl time.Duration) (*RedisBatches, error) {
	ks, err := newKeyspace(prefix)
	if err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = DefaultTxnTTL
	}
	return &RedisBatches{rdb: rdb, keys: ks, ttl: ttl}, nil
}

// Add adds amount and count to the batch's debit or credit totals (negative for a void or reversal).
func (b *RedisBatches) Add(ctx context.Context, tid, batch string, debit bool, amount, count int64) error {
	key := b.keys.batch(tid, batch)
	fa, fc := "ca", "cc"
	if debit {
		fa, fc = "da", "dc"
	}
	_, err := b.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HIncrBy(ctx, key, fa, amount)
		p.HIncrBy(ctx, key, fc, count)
		p.PExpire(ctx, key, b.ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("nodestate: adding to batch %s of terminal %s: %w", batch, tid, err)
	}
	return nil
}

// Totals returns a batch's totals (zero for a batch never added to).
func (b *RedisBatches) Totals(ctx context.Context, tid, batch string) (terminal.Totals, error) {
	m, err := b.rdb.HGetAll(ctx, b.keys.batch(tid, batch)).Result()
	if err != nil {
		return terminal.Totals{}, fmt.Errorf("nodestate: totals of batch %s of terminal %s: %w", batch, tid, err)
	}
	var t terminal.Totals
	for f, p := range map[string]*int64{"da": &t.DebitAmount, "dc": &t.DebitCount, "ca": &t.CreditAmount, "cc": &t.CreditCount} {
		if v, ok := m[f]; ok {
			if *p, err = strconv.ParseInt(v, 10, 64); err != nil {
				return terminal.Totals{}, fmt.Errorf("nodestate: totals of batch %s of terminal %s: field %s: %w", batch, tid, f, err)
			}
		}
	}
	return t, nil
}

// RedisTxns is a flow.TxnStore in Redis: the original as JSON under "<prefix>:{t:<tid>}:txn:<batch>:<trace>"
// and, when it has an RRN, again under "<prefix>:{t:<tid>}:rrn:<rrn>", both written in one MULTI and
// expiring ttl after the Put.
type RedisTxns struct {
	rdb  redis.UniversalClient
	keys keyspace
	ttl  time.Duration
}

// NewRedisTxns returns the transaction store under prefix; ttl 0 means DefaultTxnTTL.
func NewRedisTxns(rdb redis.UniversalClient, prefix string, ttl time.Duration) (*RedisTxns, error) {
	ks, err := newKeyspace(prefix)
	if err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = DefaultTxnTTL
	}
	return &RedisTxns{rdb: rdb, keys: ks, ttl: ttl}, nil
}

// Put stores t under tid, batch and trace, and under tid and t.RRN.
func (s *RedisTxns) Put(ctx context.Context, tid, batch, trace string, t flow.Txn) error {
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("nodestate: txn %s: %w", t.ID, err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.keys.txn(tid, batch, trace), data, s.ttl)
		if t.RRN != "" {
			p.Set(ctx, s.keys.rrn(tid, t.RRN), data, s.ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("nodestate: storing txn %s of terminal %s: %w", t.ID, tid, err)
	}
	return nil
}

// Get finds an original by terminal, batch and trace number.
func (s *RedisTxns) Get(ctx context.Context, tid, batch, trace string) (flow.Txn, bool, error) {
	return s.get(ctx, s.keys.txn(tid, batch, trace), tid)
}

// GetByRRN finds an original by terminal and the RRN the switch sent for it.
func (s *RedisTxns) GetByRRN(ctx context.Context, tid, rrn string) (flow.Txn, bool, error) {
	return s.get(ctx, s.keys.rrn(tid, rrn), tid)
}

func (s *RedisTxns) get(ctx context.Context, key, tid string) (flow.Txn, bool, error) {
	data, err := s.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return flow.Txn{}, false, nil
	}
	if err != nil {
		return flow.Txn{}, false, fmt.Errorf("nodestate: original of terminal %s: %w", tid, err)
	}
	var t flow.Txn
	if err := json.Unmarshal(data, &t); err != nil {
		return flow.Txn{}, false, fmt.Errorf("nodestate: original of terminal %s: %w", tid, err)
	}
	return t, true, nil
}
