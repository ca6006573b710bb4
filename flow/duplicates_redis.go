package flow

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// RedisDupOptions configure a RedisDuplicates.
type RedisDupOptions struct {
	// Prefix starts every key (default "railswitch:dup:"); nodes that share terminals share the prefix.
	Prefix string
	// Sealer seals the stored replies (required: Redis is at rest, and a reply may carry card data).
	Sealer Sealer
	// Timeout bounds one Redis call (default 50ms): the check is on every request's path.
	Timeout time.Duration
	// RetryInterval is how long the node stays on its local store after a Redis failure before it tries
	// Redis again (default 5s).
	RetryInterval time.Duration
	// Local is the store used while Redis is unreachable (default: a MemoryDuplicates of DefaultDupEntries
	// with the same Sealer).
	Local *MemoryDuplicates
	Log   *zap.Logger
	Now   func() time.Time
}

// RedisDuplicates is the cluster-wide Duplicates: a retransmission that reaches another node is still
// recognised. A claim is `SET key F<token> NX GET PX ttl` (one round trip, atomic: Redis 7.0 or later); a
// completion replaces the claim with D<sealed reply> only while the caller's claim is still there (Lua), and
// a release deletes it on the same condition.
//
// While Redis is unreachable (an error or the timeout) the node falls back to its local store, logs it once,
// and tries Redis again after RetryInterval: requests are never refused for a Redis outage, and duplicates
// that reach the same node are still caught. Claims made locally are completed locally.
type RedisDuplicates struct {
	rdb    redis.Cmdable
	o      RedisDupOptions
	local  *MemoryDuplicates
	node   string // random per process: tokens of two nodes never collide
	seq    atomic.Uint64
	downTo atomic.Int64 // unix nanoseconds until which Redis is not tried
	down   atomic.Bool
}

// NewRedisDuplicates returns a Redis-backed store on rdb (a *redis.Client or *redis.ClusterClient).
func NewRedisDuplicates(rdb redis.Cmdable, o RedisDupOptions) (*RedisDuplicates, error) {
	if isNilClient(rdb) {
		return nil, errors.New("duplicates: no redis client")
	}
	if o.Sealer == nil {
		return nil, errors.New("duplicates: a Sealer is required to keep replies in Redis")
	}
	if o.Prefix == "" {
		o.Prefix = "railswitch:dup:"
	}
	if o.Timeout <= 0 {
		o.Timeout = 50 * time.Millisecond
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Local == nil {
		o.Local = NewMemoryDuplicates(0, o.Sealer, o.Now)
	}
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("duplicates: node id: %w", err)
	}
	return &RedisDuplicates{rdb: rdb, o: o, local: o.Local, node: hex.EncodeToString(id[:])}, nil
}

// localToken marks the tokens of claims made in the local store while Redis was down.
const localToken = "local:"

// completeScript stores the reply in place of the caller's claim; releaseScript deletes the caller's claim.
var (
	completeScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`)
	releaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)
)

// usable says whether Redis is to be tried now.
func (r *RedisDuplicates) usable() bool {
	return !r.down.Load() || r.o.Now().UnixNano() >= r.downTo.Load()
}

// failed switches to the local store for RetryInterval; the first failure of an outage is logged.
func (r *RedisDuplicates) failed(err error) {
	r.downTo.Store(r.o.Now().Add(r.o.RetryInterval).UnixNano())
	if r.down.CompareAndSwap(false, true) {
		r.o.Log.Warn("duplicates: redis unreachable, checking retransmissions on this node only", zap.Error(err))
	}
}

func (r *RedisDuplicates) succeeded() {
	if r.down.CompareAndSwap(true, false) {
		r.o.Log.Info("duplicates: redis reachable again, retransmissions checked cluster-wide")
	}
}

// Claim implements Duplicates.
func (r *RedisDuplicates) Claim(ctx context.Context, key string, ttl time.Duration) (DupClaim, error) {
	if !r.usable() {
		return r.claimLocal(ctx, key, ttl)
	}
	token := "F" + r.node + "-" + fmt.Sprint(r.seq.Add(1))
	cctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	old, err := r.rdb.SetArgs(cctx, r.o.Prefix+key, token, redis.SetArgs{Mode: "NX", TTL: ttl, Get: true}).Result()
	cancel()
	switch {
	case errors.Is(err, redis.Nil):
		r.succeeded()
		return DupClaim{State: DupNew, Token: token}, nil
	case err != nil:
		r.failed(err)
		return r.claimLocal(ctx, key, ttl)
	}
	r.succeeded()
	if strings.HasPrefix(old, "D") {
		reply, err := r.o.Sealer.Open([]byte(old[1:]))
		if err != nil {
			return DupClaim{}, fmt.Errorf("duplicates: open: %w", err)
		}
		return DupClaim{State: DupDone, Reply: reply}, nil
	}
	return DupClaim{State: DupInFlight}, nil
}

func (r *RedisDuplicates) claimLocal(ctx context.Context, key string, ttl time.Duration) (DupClaim, error) {
	c, err := r.local.Claim(ctx, key, ttl)
	if c.State == DupNew {
		c.Token = localToken + c.Token
	}
	return c, err
}

// Complete implements Duplicates.
func (r *RedisDuplicates) Complete(ctx context.Context, key string, c DupClaim, reply []byte, ttl time.Duration) error {
	if t, ok := strings.CutPrefix(c.Token, localToken); ok {
		c.Token = t
		return r.local.Complete(ctx, key, c, reply, ttl)
	}
	sealed, err := r.o.Sealer.Seal(reply)
	if err != nil {
		return fmt.Errorf("duplicates: seal: %w", err)
	}
	v := make([]byte, 0, 1+len(sealed))
	v = append(append(v, 'D'), sealed...)
	cctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	err = completeScript.Run(cctx, r.rdb, []string{r.o.Prefix + key}, c.Token, v, ttl.Milliseconds()).Err()
	if err != nil {
		r.failed(err)
		return fmt.Errorf("duplicates: complete: %w", err)
	}
	return nil
}

// Release implements Duplicates.
func (r *RedisDuplicates) Release(ctx context.Context, key string, c DupClaim) error {
	if t, ok := strings.CutPrefix(c.Token, localToken); ok {
		c.Token = t
		return r.local.Release(ctx, key, c)
	}
	cctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	if err := releaseScript.Run(cctx, r.rdb, []string{r.o.Prefix + key}, c.Token).Err(); err != nil {
		r.failed(err)
		return fmt.Errorf("duplicates: release: %w", err)
	}
	return nil
}

// isNilClient reports whether rdb is nil, also as a nil *redis.Client or *redis.ClusterClient in the
// interface.
func isNilClient(rdb redis.Cmdable) bool {
	switch c := rdb.(type) {
	case nil:
		return true
	case *redis.Client:
		return c == nil
	case *redis.ClusterClient:
		return c == nil
	}
	return false
}
