package nodestate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/railswitch/railswitch/saf"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// One owner per queue. Each node keeps its reversal queue (and its intents) in Redis under its own name, and
// only the holder of the node's lease may change them: every Put and Remove is a script that first checks the
// lease holds this process's token (fencing), so a node that lost its lease (paused, cut off from Redis for
// longer than the lease) can no longer write, and its queue must stop. When a node's lease expires, a
// survivor claims the node's entries (claim key, set only while the lease is absent and no other survivor
// holds the claim), hands each to its callback (which queues it on the survivor) and removes it. A node
// starting again cannot take its lease while a claim is held, so its queue and a takeover never overlap.

// Defaults of the node lease.
const (
	DefaultLease     = 10 * time.Second
	DefaultHeartbeat = 2 * time.Second
)

// ErrLeaseLost means this process no longer holds its node's lease: its queue's entries may be taken over
// by another node, so it must not send or change them any more.
var ErrLeaseLost = errors.New("nodestate: node lease lost")

// ErrClaimLost means a takeover's claim on a dead node's entries expired or was taken by another survivor.
var ErrClaimLost = errors.New("nodestate: takeover claim lost")

// acquireScript takes a node's lease (KEYS lease, claim; ARGV token, ttl ms) unless it is held or a
// survivor is taking the node's entries over.
var acquireScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if v then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// renewScript extends the lease (KEYS lease; ARGV token, ttl ms) if it is still this token's.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// releaseScript deletes KEYS[1] if it holds ARGV[1].
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0
`)

// putScript stores an entry's state and, when given, its sealed message (KEYS lease, meta, msg; ARGV token,
// id, state JSON, sealed message or "").
var putScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('LEASELOST') end
if ARGV[4] == '' then
  if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 0 then return redis.error_reply('UNKNOWN') end
else
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
`)

// removeScript forgets an entry (KEYS lease, meta, msg; ARGV token, id).
var removeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('LEASELOST') end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return 1
`)

// claimScript claims a dead node's entries (KEYS lease, claim; ARGV survivor token, ttl ms): only while the
// node's lease is absent and no other survivor's claim is held.
var claimScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local c = redis.call('GET', KEYS[2])
if c and c ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
`)

// takenScript removes an entry handed to a survivor and extends its claim (KEYS claim, meta, msg; ARGV token,
// id, ttl ms).
var takenScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('CLAIMLOST') end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// doneScript ends a takeover (KEYS claim, sets, then meta keys; ARGV token): it drops the claim and, when
// every set is empty, the list of sets. It returns 1 when the node has nothing left.
var doneScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('CLAIMLOST') end
redis.call('DEL', KEYS[1])
for i = 3, #KEYS do
  if redis.call('HLEN', KEYS[i]) > 0 then return 0 end
end
redis.call('DEL', KEYS[2])
return 1
`)

// scriptErr maps the scripts' error replies (Redis prefixes them with "ERR ") to the package's errors.
func scriptErr(err error) error {
	switch {
	case err == nil:
		return nil
	case strings.Contains(err.Error(), "LEASELOST"):
		return ErrLeaseLost
	case strings.Contains(err.Error(), "CLAIMLOST"):
		return ErrClaimLost
	}
	return err
}

// LeaseConfig configures a node's lease.
type LeaseConfig struct {
	Prefix string // key prefix (empty: DefaultPrefix)
	Node   string // the node's name (node.id), unique per node
	// TTL is how long the lease outlives the last renewal (default DefaultLease): a node that stops renewing
	// is taken over after about this long. Heartbeat is the renewal period (default DefaultHeartbeat, at
	// most TTL/2).
	TTL, Heartbeat time.Duration
	// OnLost is called once, from the renewal goroutine, when the lease is lost: the node's queue must stop
	// (and the switch should restart it) since a survivor may now drain its entries.
	OnLost func(error)
	Log    *zap.Logger
}

// Lease is a node's liveness in Redis, "<prefix>:{saf:<node>}:lease", holding a token of this process and
// renewed every Heartbeat; the node's queue stores (Store) write only while it is held.
type Lease struct {
	rdb   redis.UniversalClient
	cfg   LeaseConfig
	ks    keyspace
	keys  nodeKeys
	token string

	lostOnce sync.Once
	lost     chan struct{}
	lostErr  error
	stop     chan struct{}
	done     chan struct{}
	closeMu  sync.Mutex
	closed   bool
}

// AcquireLease takes the node's lease, waiting (polling every heartbeat) while another process holds it or
// a survivor is taking the node's entries over, until ctx ends. After a crash the old lease must expire
// first: a restart waits up to TTL. It then renews the lease in the background until Close.
func AcquireLease(ctx context.Context, rdb redis.UniversalClient, cfg LeaseConfig) (*Lease, error) {
	ks, err := newKeyspace(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	if err := checkName("node name", cfg.Node); err != nil {
		return nil, err
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultLease
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.TTL < 2*cfg.Heartbeat || cfg.Heartbeat < time.Millisecond {
		return nil, fmt.Errorf("nodestate: lease %s must be at least twice the heartbeat %s (>= 1ms)", cfg.TTL, cfg.Heartbeat)
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	var tok [8]byte
	_, _ = rand.Read(tok[:])
	l := &Lease{rdb: rdb, cfg: cfg, ks: ks, keys: ks.node(cfg.Node), token: cfg.Node + "/" + hex.EncodeToString(tok[:]),
		lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	for {
		ok, err := acquireScript.Run(ctx, rdb, []string{l.keys.lease, l.keys.claim}, l.token, cfg.TTL.Milliseconds()).Int()
		if err != nil {
			return nil, fmt.Errorf("nodestate: taking the lease of node %s: %w", cfg.Node, err)
		}
		if ok == 1 {
			break
		}
		t := time.NewTimer(cfg.Heartbeat)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("nodestate: lease of node %s held by another process or a takeover: %w", cfg.Node, ctx.Err())
		case <-t.C:
		}
	}
	if err := rdb.SAdd(ctx, ks.nodes(), cfg.Node).Err(); err != nil {
		_ = l.release()
		return nil, fmt.Errorf("nodestate: registering node %s: %w", cfg.Node, err)
	}
	go l.renewLoop()
	return l, nil
}

// Node is the name of the lease's node.
func (l *Lease) Node() string { return l.cfg.Node }

// Lost is closed when the lease is lost.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

func (l *Lease) markLost(err error) {
	l.lostOnce.Do(func() {
		l.lostErr = err
		close(l.lost)
		l.cfg.Log.Error("nodestate: node lease lost; the node's reversal queue may be taken over",
			zap.String("node", l.cfg.Node), zap.Error(err))
		if l.cfg.OnLost != nil {
			l.cfg.OnLost(err)
		}
	})
}

// renewLoop renews the lease every heartbeat; it declares the lease lost when Redis says another token holds
// it (or none), or when no renewal succeeded for a whole TTL (Redis has then expired it).
func (l *Lease) renewLoop() {
	defer close(l.done)
	t := time.NewTicker(l.cfg.Heartbeat)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		// A slow renewal is still worth waiting for while the lease lasts: up to a third of the TTL.
		ctx, cancel := context.WithTimeout(context.Background(), max(l.cfg.Heartbeat, l.cfg.TTL/3))
		ok, err := renewScript.Run(ctx, l.rdb, []string{l.keys.lease}, l.token, l.cfg.TTL.Milliseconds()).Int()
		if err == nil {
			_ = l.rdb.SAdd(ctx, l.ks.nodes(), l.cfg.Node).Err() // a takeover of an earlier life may have removed it
		}
		cancel()
		switch {
		case err == nil && ok == 1:
			lastOK = time.Now()
		case err == nil:
			l.markLost(fmt.Errorf("%w: node %s: Redis holds another token or none", ErrLeaseLost, l.cfg.Node))
			return
		case time.Since(lastOK) >= l.cfg.TTL:
			l.markLost(fmt.Errorf("%w: node %s: no renewal for %s: %v", ErrLeaseLost, l.cfg.Node, l.cfg.TTL, err))
			return
		default:
			l.cfg.Log.Warn("nodestate: lease renewal failed", zap.String("node", l.cfg.Node), zap.Error(err))
		}
	}
}

// release deletes the lease if it is still this process's.
func (l *Lease) release() error {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Heartbeat)
	defer cancel()
	return releaseScript.Run(ctx, l.rdb, []string{l.keys.lease}, l.token).Err()
}

// Close stops renewing and releases the lease, so survivors take the node's entries over at their next
// round instead of after the TTL. Close the queue stores first.
func (l *Lease) Close() error {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	close(l.stop)
	<-l.done
	if err := l.release(); err != nil {
		return fmt.Errorf("nodestate: releasing the lease of node %s: %w", l.cfg.Node, err)
	}
	return nil
}

// Store returns the saf.Store of one of the node's entry sets (for example "reversals" and "intents"),
// fenced by the lease. The store's Close does not release the lease.
func (l *Lease) Store(ctx context.Context, set string) (*RedisSAFStore, error) {
	if err := checkName("entry set", set); err != nil {
		return nil, err
	}
	if err := l.rdb.SAdd(ctx, l.keys.sets, set).Err(); err != nil {
		return nil, fmt.Errorf("nodestate: registering entry set %s of node %s: %w", set, l.cfg.Node, err)
	}
	return &RedisSAFStore{l: l, set: set, meta: l.keys.meta(set), msg: l.keys.msg(set)}, nil
}

// RedisSAFStore is a saf.Store in Redis for one node's entry set: the entries' state as JSON in the hash
// "<prefix>:{saf:<node>}:set:<set>:meta" and their sealed messages in "...:msg", by entry id. Writes fail with
// ErrLeaseLost once the node's lease is not this process's. Durability is Redis's: with appendonly and
// appendfsync always a Put is on disk when it returns.
type RedisSAFStore struct {
	l         *Lease
	set       string
	meta, msg string
	mu        sync.Mutex
	closed    bool
}

func (s *RedisSAFStore) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return saf.ErrClosed
	}
	return nil
}

// Load returns every entry of the set with its sealed message.
func (s *RedisSAFStore) Load(ctx context.Context) ([]*saf.Entry, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return loadSet(ctx, s.l.rdb, s.meta, s.msg, s.l.cfg.Node, s.set)
}

func loadSet(ctx context.Context, rdb redis.UniversalClient, metaKey, msgKey, node, set string) ([]*saf.Entry, error) {
	var meta, msg *redis.MapStringStringCmd
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		meta, msg = p.HGetAll(ctx, metaKey), p.HGetAll(ctx, msgKey)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("nodestate: loading entry set %s of node %s: %w", set, node, err)
	}
	msgs := msg.Val()
	out := make([]*saf.Entry, 0, len(meta.Val()))
	for id, js := range meta.Val() {
		e := &saf.Entry{}
		if err := json.Unmarshal([]byte(js), e); err != nil {
			return nil, fmt.Errorf("nodestate: entry %s of set %s of node %s: %w", id, set, node, err)
		}
		m, ok := msgs[id]
		if !ok {
			return nil, fmt.Errorf("nodestate: entry %s of set %s of node %s has no message", id, set, node)
		}
		e.Sealed = []byte(m)
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *saf.Entry) int {
		if c := a.Queued.Compare(b.Queued); c != 0 {
			return c
		}
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Put stores a new entry (with its sealed message) or a new state of a known one.
func (s *RedisSAFStore) Put(ctx context.Context, e *saf.Entry) error {
	if err := s.check(); err != nil {
		return err
	}
	if e.ID == "" {
		return errors.New("nodestate: entry without id")
	}
	c := *e
	c.Sealed = nil
	js, err := json.Marshal(&c)
	if err != nil {
		return fmt.Errorf("nodestate: entry %s: %w", e.ID, err)
	}
	err = putScript.Run(ctx, s.l.rdb, []string{s.l.keys.lease, s.meta, s.msg}, s.l.token, e.ID, js, e.Sealed).Err()
	if err != nil && strings.Contains(err.Error(), "UNKNOWN") {
		return fmt.Errorf("nodestate: %w: new state of entry %s without a message", saf.ErrNotFound, e.ID)
	}
	if err := scriptErr(err); err != nil {
		return fmt.Errorf("nodestate: storing entry %s of node %s: %w", e.ID, s.l.cfg.Node, err)
	}
	return nil
}

// Remove forgets an entry (acquirer is not needed: ids are unique in the set).
func (s *RedisSAFStore) Remove(ctx context.Context, acquirer, id string) error {
	if err := s.check(); err != nil {
		return err
	}
	err := removeScript.Run(ctx, s.l.rdb, []string{s.l.keys.lease, s.meta, s.msg}, s.l.token, id).Err()
	if err := scriptErr(err); err != nil {
		return fmt.Errorf("nodestate: removing entry %s (%s) of node %s: %w", id, acquirer, s.l.cfg.Node, err)
	}
	return nil
}

// Close makes later calls fail with saf.ErrClosed; the entries stay in Redis and the lease stays held.
func (s *RedisSAFStore) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

// TakeoverFunc receives one entry of a dead node (with its sealed message), from the node's entry set set.
// It returns nil once the entry is durably queued on this node (open the message, Enqueue it): the entry is
// then removed from the dead node. An error stops the takeover; the entries left are tried again later.
type TakeoverFunc func(ctx context.Context, node, set string, e *saf.Entry) error

// Takeover hands the entries of every node whose lease expired to fn, oldest first, and removes each once
// fn accepted it. A claim in Redis makes one survivor at a time take a node's entries; the claim lasts the
// lease TTL, extended after each entry. It returns how many entries it handed over.
//
// An entry is handed over at least once: if this node dies (or its claim expires) between fn and the
// removal, another survivor hands that entry over again, and the bank acknowledges the repeated reversal
// (94 duplicate, or 12/25).
func (l *Lease) Takeover(ctx context.Context, fn TakeoverFunc) (int, error) {
	select {
	case <-l.lost:
		return 0, l.lostErr
	default:
	}
	nodes, err := l.rdb.SMembers(ctx, l.ks.nodes()).Result()
	if err != nil {
		return 0, fmt.Errorf("nodestate: listing nodes: %w", err)
	}
	slices.Sort(nodes)
	total := 0
	for _, node := range nodes {
		if node == l.cfg.Node {
			continue
		}
		n, err := l.takeNode(ctx, node, fn)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (l *Lease) takeNode(ctx context.Context, node string, fn TakeoverFunc) (int, error) {
	keys := l.ks.node(node)
	ttl := l.cfg.TTL.Milliseconds()
	ok, err := claimScript.Run(ctx, l.rdb, []string{keys.lease, keys.claim}, l.token, ttl).Int()
	if err != nil {
		return 0, fmt.Errorf("nodestate: claiming node %s: %w", node, err)
	}
	if ok == 0 {
		return 0, nil // alive, or another survivor is at it
	}
	n, err := l.takeClaimed(ctx, node, keys, fn)
	if err != nil {
		// Let another round (or survivor) carry on without waiting for the claim to expire.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.Heartbeat)
		_ = releaseScript.Run(rctx, l.rdb, []string{keys.claim}, l.token).Err()
		cancel()
		return n, err
	}
	return n, nil
}

func (l *Lease) takeClaimed(ctx context.Context, node string, keys nodeKeys, fn TakeoverFunc) (int, error) {
	sets, err := l.rdb.SMembers(ctx, keys.sets).Result()
	if err != nil {
		return 0, fmt.Errorf("nodestate: entry sets of node %s: %w", node, err)
	}
	slices.Sort(sets)
	n := 0
	ttl := l.cfg.TTL.Milliseconds()
	metas := make([]string, 0, len(sets)+2)
	metas = append(metas, keys.claim, keys.sets)
	for _, set := range sets {
		metas = append(metas, keys.meta(set))
		entries, err := loadSet(ctx, l.rdb, keys.meta(set), keys.msg(set), node, set)
		if err != nil {
			return n, err
		}
		for _, e := range entries {
			if err := fn(ctx, node, set, e); err != nil {
				return n, fmt.Errorf("nodestate: taking entry %s of node %s over: %w", e.ID, node, err)
			}
			n++
			err := takenScript.Run(ctx, l.rdb, []string{keys.claim, keys.meta(set), keys.msg(set)}, l.token, e.ID, ttl).Err()
			if err := scriptErr(err); err != nil {
				return n, fmt.Errorf("nodestate: removing entry %s of node %s after its takeover: %w", e.ID, node, err)
			}
			l.cfg.Log.Info("nodestate: entry of a dead node taken over", zap.String("node", node),
				zap.String("set", set), zap.String("id", e.ID), zap.String("acquirer", e.Acquirer), zap.String("txn", e.TxnID))
		}
	}
	empty, err := doneScript.Run(ctx, l.rdb, metas, l.token).Int()
	if err := scriptErr(err); err != nil {
		return n, fmt.Errorf("nodestate: ending the takeover of node %s: %w", node, err)
	}
	if empty == 1 {
		// Forget the node until it holds its lease again (its renewals register it anew).
		if err := l.rdb.SRem(ctx, l.ks.nodes(), node).Err(); err != nil {
			return n, fmt.Errorf("nodestate: forgetting node %s: %w", node, err)
		}
	}
	return n, nil
}

// RunTakeover runs Takeover every heartbeat until ctx ends or the lease is lost, reporting errors to onErr
// (nil: logged).
func (l *Lease) RunTakeover(ctx context.Context, fn TakeoverFunc, onErr func(error)) {
	t := time.NewTicker(l.cfg.Heartbeat)
	defer t.Stop()
	for {
		if _, err := l.Takeover(ctx, fn); err != nil && ctx.Err() == nil {
			if onErr != nil {
				onErr(err)
			} else {
				l.cfg.Log.Warn("nodestate: takeover round failed", zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-l.lost:
			return
		case <-t.C:
		}
	}
}
