package limits

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// store holds the node-local state of every (scope, key): a token bucket and an in-flight count. It is sharded
// so requests for different keys rarely share a lock, and it drops state that has been idle for idleTTL and is
// indistinguishable from fresh state (bucket full, nothing in flight), so 10,000 terminals that come and go do
// not grow it without bound. Eviction runs inline when a shard inserts a key; no goroutine is needed.
type store struct {
	seed    maphash.Seed
	idleTTL atomic.Int64 // nanoseconds
	shards  [storeShards]shard
}

const storeShards = 64

type shard struct {
	mu        sync.RWMutex
	m         map[entryKey]*entry
	lastSweep int64 // unix nanoseconds
	_         [40]byte
}

// entryKey names one piece of local state; fallback state (a cluster-wide limit's local share while Redis is
// down) is kept apart from the state of a node-local limit of the same scope and key.
type entryKey struct {
	scope    Scope
	fallback bool
	key      string
}

// entry is the local state of one key. Its limiter always exists (rate.Inf when the spec has no rate); a reload
// that changes one finite rate into another does so in place, keeping the tokens left.
type entry struct {
	lim      atomic.Pointer[rate.Limiter]
	spec     atomic.Pointer[Spec]
	inflight atomic.Int64
	lastUsed atomic.Int64 // unix nanoseconds, refreshed at most every idleTTL/16
}

func newStore(idleTTL time.Duration) *store {
	s := &store{seed: maphash.MakeSeed()}
	s.idleTTL.Store(int64(idleTTL))
	for i := range s.shards {
		s.shards[i].m = make(map[entryKey]*entry)
	}
	return s
}

func specLimit(sp *Spec) (rate.Limit, int) {
	if sp.Rate == 0 {
		return rate.Inf, 0
	}
	return rate.Limit(sp.Rate), sp.Burst
}

// get returns the state of k, creating it for spec sp, and brings its limiter up to date when a reload changed
// the spec. It does not allocate once the key exists.
func (s *store) get(k entryKey, sp *Spec, now time.Time) *entry {
	sh := s.shard(k.key)
	nowNs := now.UnixNano()
	sh.mu.RLock()
	e := sh.m[k]
	if e != nil {
		// Touch under the read lock: a sweep holds the write lock, so it either sees this touch or runs before
		// the lookup (and then this request creates a fresh entry).
		if nowNs-e.lastUsed.Load() > s.idleTTL.Load()/16 {
			e.lastUsed.Store(nowNs)
		}
	}
	sh.mu.RUnlock()
	if e == nil {
		e = s.insert(sh, k, sp, now)
	}
	if cur := e.spec.Load(); cur != sp && e.spec.CompareAndSwap(cur, sp) && !cur.same(sp) {
		if cur.Rate == 0 || sp.Rate == 0 { // rate.Inf cannot be changed in place (Inf*0 tokens is NaN)
			e.lim.Store(rate.NewLimiter(specLimit(sp)))
		} else {
			lim := e.lim.Load()
			lim.SetLimitAt(now, rate.Limit(sp.Rate))
			lim.SetBurstAt(now, sp.Burst)
		}
	}
	return e
}

func (s *store) shard(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)%storeShards]
}

func (s *store) insert(sh *shard, k entryKey, sp *Spec, now time.Time) *entry {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.m[k]; e != nil {
		return e
	}
	nowNs := now.UnixNano()
	if idle := s.idleTTL.Load(); nowNs-sh.lastSweep > idle/4 {
		sh.lastSweep = nowNs
		for key, e := range sh.m {
			if nowNs-e.lastUsed.Load() > idle && e.inflight.Load() == 0 &&
				e.lim.Load().TokensAt(now) >= float64(e.lim.Load().Burst()) {
				delete(sh.m, key)
			}
		}
	}
	e := &entry{}
	e.lim.Store(rate.NewLimiter(specLimit(sp)))
	e.spec.Store(sp)
	e.lastUsed.Store(nowNs)
	sh.m[k] = e
	return e
}

// len counts the keys held, for the metrics.
func (s *store) len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
