package limits

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Every key of the cluster-wide limits starts with the hash tag "{key_prefix}", so all of them live in one
// Redis Cluster slot and one script call can check every cluster-wide limit of a request atomically. The cost
// is that one shard carries all limiter traffic; see docs/limits.md.
//
// Times are the Redis server's clock in microseconds (TIME), so nodes with skewed clocks share one timeline.

// acquireScript checks the GCRA buckets KEYS[1..n] and the lease sets KEYS[n+1..] and, only if every one
// admits, takes a token from each bucket and adds lease ARGV[2] to each set. It returns 0 when admitted, else
// the 1-based index of the first key that refused.
//
// ARGV: n, lease id, lease ttl (us), then interval (us) and burst per bucket, then the cap per lease set.
// GCRA: a bucket stores its theoretical arrival time (tat); a request is admitted when tat - now <=
// (burst-1) * interval, and then moves tat one interval on.
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local ttl = tonumber(ARGV[3])
local tats = {}
for i = 1, n do
  local interval = tonumber(ARGV[2 + 2 * i])
  local burst = tonumber(ARGV[3 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  if tat - now > (burst - 1) * interval then return i end
  tats[i] = tat + interval
end
for j = n + 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[j], '-inf', string.format('%.0f', now))
  -- the cap of lease set j (the (j-n)th) follows the 3 + 2n arguments before it
  if redis.call('ZCARD', KEYS[j]) >= tonumber(ARGV[3 + n + j]) then return j end
end
for i = 1, n do
  redis.call('SET', KEYS[i], string.format('%.3f', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000) + 1)
end
for j = n + 1, #KEYS do
  redis.call('ZADD', KEYS[j], string.format('%.0f', now + ttl), ARGV[2])
  redis.call('PEXPIRE', KEYS[j], math.ceil(2 * ttl / 1000))
end
return 0
`)

// releaseScript removes lease ARGV[1] from every set in KEYS.
var releaseScript = redis.NewScript(`
for i = 1, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 0
`)

// renewScript moves the deadline of lease ARGV[i+1] in set KEYS[i] to now + ARGV[1] (us), if it is still there.
var renewScript = redis.NewScript(`
local t = redis.call('TIME')
local deadline = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1]))
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', deadline, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], math.ceil(2 * tonumber(ARGV[1]) / 1000))
end
return 0
`)

// cluster is the Redis side of the limiter: the scripts, the leases this node holds, and Redis health.
type cluster struct {
	rdb    redis.UniversalClient
	nodeID string
	seq    atomic.Uint64
	cfg    func() *ClusterConfig // the current configuration's cluster settings
	m      *metrics
	log    *zap.Logger
	logLim *rate.Limiter // repeats of "still unreachable" at most every 10 s

	down atomic.Bool // while set, requests skip Redis and the loop probes it every retry interval

	mu   sync.Mutex
	held map[string][]string // lease id -> lease set keys, renewed until released

	pipe *pipeliner // nil: each acquire script is its own call

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

func newCluster(rdb redis.UniversalClient, nodeID string, pipeline int, log *zap.Logger, m *metrics, cfg func() *ClusterConfig) *cluster {
	c := &cluster{
		rdb: rdb, nodeID: nodeID, cfg: cfg, m: m, log: log,
		logLim: rate.NewLimiter(rate.Every(10*time.Second), 1),
		held:   map[string][]string{},
		stop:   make(chan struct{}), done: make(chan struct{}),
	}
	if pipeline > 1 {
		c.pipe = newPipeliner(rdb, pipeline, func() time.Duration { return c.cfg().Timeout }, c.stop)
	}
	go c.loop()
	return c
}

func (c *cluster) close() {
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.done
	if c.pipe != nil {
		c.pipe.wait()
	}
}

func clusterKey(cc *ClusterConfig, kind string, s Scope, key string) string {
	if s == ScopeGlobal {
		return "{" + cc.KeyPrefix + "}:" + kind + ":global"
	}
	return "{" + cc.KeyPrefix + "}:" + kind + ":" + s.String() + ":" + key
}

// available reports whether requests should call Redis. While it is down they do not, so no request waits for
// a dead server; the background loop probes it and clears the flag when it answers.
func (c *cluster) available() bool { return !c.down.Load() }

// withTimeout bounds ctx by the configured timeout unless it already has an earlier deadline.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// refusal names the check and kind that refused in Redis.
type refusal struct {
	check int // index into the checks passed to acquire; -1 when admitted
	kind  Kind
}

// acquire runs every cluster-wide check of one request in one script call.
func (c *cluster) acquire(ctx context.Context, cc *ClusterConfig, checks []check) (leaseID string, leaseKeys []string, r refusal, err error) {
	keys := make([]string, 0, 2*len(checks))
	var owner [2 * numScopes]refusal // key index -> the check and kind it belongs to
	var rateArgs []any
	for i := range checks {
		if sp := checks[i].spec; sp.Rate > 0 {
			owner[len(keys)] = refusal{i, KindRate}
			keys = append(keys, clusterKey(cc, "rate", checks[i].scope, checks[i].key))
			rateArgs = append(rateArgs, strconv.FormatFloat(1e6/sp.Rate, 'f', 3, 64), sp.Burst)
		}
	}
	n := len(keys)
	var capArgs []any
	for i := range checks {
		if sp := checks[i].spec; sp.Concurrency > 0 {
			owner[len(keys)] = refusal{i, KindConcurrency}
			keys = append(keys, clusterKey(cc, "lease", checks[i].scope, checks[i].key))
			capArgs = append(capArgs, sp.Concurrency)
		}
	}
	if len(keys) > n {
		leaseID = c.nodeID + ":" + strconv.FormatUint(c.seq.Add(1), 36)
		leaseKeys = keys[n:]
	}
	args := append([]any{n, leaseID, cc.LeaseTTL.Microseconds()}, rateArgs...)
	args = append(args, capArgs...)

	cctx, cancel := withTimeout(ctx, cc.Timeout)
	res, err := c.run(cctx, acquireScript, keys, args...)
	cancel()
	if err != nil {
		c.failed(ctx, err)
		return "", nil, refusal{}, err
	}
	c.succeeded()
	if res > 0 {
		return "", nil, owner[res-1], nil
	}
	if leaseID != "" {
		c.mu.Lock()
		c.held[leaseID] = leaseKeys
		c.mu.Unlock()
	}
	return leaseID, leaseKeys, refusal{check: -1}, nil
}

// run runs a script, through the pipeliner when there is one.
func (c *cluster) run(ctx context.Context, script *redis.Script, keys []string, args ...any) (int, error) {
	if c.pipe != nil {
		return c.pipe.run(ctx, script, keys, args...)
	}
	return script.Run(ctx, c.rdb, keys, args...).Int()
}

// release removes a lease. While Redis is down, or if the call fails, the lease is left to expire.
func (c *cluster) release(timeout time.Duration, leaseID string, keys []string) {
	c.mu.Lock()
	delete(c.held, leaseID)
	c.mu.Unlock()
	if c.down.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := c.run(ctx, releaseScript, keys, leaseID); err != nil {
		c.failed(ctx, err)
		return
	}
	c.succeeded()
}

// loop keeps the leases this node holds alive (every third of lease_ttl it moves their deadlines on) and, while
// Redis is down, probes it every retry_interval.
func (c *cluster) loop() {
	defer close(c.done)
	renew := time.NewTimer(c.cfg().LeaseTTL / 3)
	defer renew.Stop()
	probe := time.NewTimer(c.cfg().RetryInterval)
	defer probe.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-renew.C:
			if !c.down.Load() {
				c.renew()
			}
			renew.Reset(c.cfg().LeaseTTL / 3)
		case <-probe.C:
			if c.down.Load() {
				c.probe()
			}
			probe.Reset(c.cfg().RetryInterval)
		}
	}
}

func (c *cluster) probe() {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg().Timeout)
	defer cancel()
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		c.failed(ctx, err)
		return
	}
	c.succeeded()
}

// renewBatch bounds the keys of one renewal script call.
const renewBatch = 512

func (c *cluster) renew() {
	cc := c.cfg()
	c.mu.Lock()
	var keys []string
	var ids []any
	for id, ks := range c.held {
		for _, k := range ks {
			keys = append(keys, k)
			ids = append(ids, id)
		}
	}
	c.mu.Unlock()
	for len(keys) > 0 {
		n := min(len(keys), renewBatch)
		ctx, cancel := context.WithTimeout(context.Background(), cc.Timeout)
		err := renewScript.Run(ctx, c.rdb, keys[:n], append([]any{cc.LeaseTTL.Microseconds()}, ids[:n]...)...).Err()
		cancel()
		if err != nil {
			c.failed(ctx, err)
			return
		}
		c.succeeded()
		keys, ids = keys[n:], ids[n:]
	}
}

// failed records a Redis error. Redis is marked down (outage policy from now on) unless the caller's own
// context ended first, which says nothing about Redis.
func (c *cluster) failed(ctx context.Context, err error) {
	c.m.redisErrors.Inc()
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return
	}
	if c.down.CompareAndSwap(false, true) {
		c.m.redisUp.Set(0)
		c.log.Warn("limits: redis unreachable, cluster-wide limits follow their outage policy", zap.Error(err))
		return
	}
	if c.logLim.Allow() {
		c.log.Warn("limits: redis still unreachable", zap.Error(err))
	}
}

func (c *cluster) succeeded() {
	if c.down.CompareAndSwap(true, false) {
		c.m.redisUp.Set(1)
		c.log.Info("limits: redis reachable again, cluster-wide limits back in force")
	}
}
