package limits

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Kind is what a limit counts.
type Kind uint8

// The kinds of limit.
const (
	KindRate        Kind = iota // requests per second, with a burst
	KindConcurrency             // requests in flight
	numKinds
)

// String returns "rate" or "concurrency".
func (k Kind) String() string {
	if k == KindConcurrency {
		return "concurrency"
	}
	return "rate"
}

// Reason says why a limit refused.
type Reason uint8

// The reasons for a refusal.
const (
	ReasonExceeded  Reason = iota // the limit's budget is spent
	ReasonRedisDown               // a cluster-wide limit with policy refuse could not reach Redis
	numReasons
)

// String returns "exceeded" or "redis_down".
func (r Reason) String() string {
	if r == ReasonRedisDown {
		return "redis_down"
	}
	return "exceeded"
}

// Request carries the keys a transaction is limited by. An empty key means the scope does not apply (a
// message with no merchant id skips the merchant limits); the global limit always applies.
type Request struct {
	Terminal string
	Merchant string
	Channel  string
	Acquirer string
}

func (r *Request) key(s Scope) string {
	switch s {
	case ScopeTerminal:
		return r.Terminal
	case ScopeMerchant:
		return r.Merchant
	case ScopeChannel:
		return r.Channel
	case ScopeAcquirer:
		return r.Acquirer
	}
	return ""
}

// Decision is the outcome of Acquire. When Allowed is false, the other fields name the limit that refused and
// Code is the response code (field 39) to send. When Allowed is true and a concurrency cap applied, Permit
// holds the slots and must be released once the transaction is finished.
type Decision struct {
	Allowed bool
	Scope   Scope
	Key     string // the refusing limit's key ("" for global)
	Kind    Kind
	Reason  Reason
	Code    string
	Source  string  // file:line of the refusing limit
	Permit  *Permit // nil when no concurrency cap applied; Release is nil-safe
}

// String describes a refusal for logs, e.g. "refused by terminal 10000001 rate (exceeded), code 65".
func (d Decision) String() string {
	if d.Allowed {
		return "allowed"
	}
	limit := d.Scope.String()
	if d.Key != "" {
		limit += " " + d.Key
	}
	return fmt.Sprintf("refused by %s %s (%s), code %s", limit, d.Kind, d.Reason, d.Code)
}

// Permit holds the concurrency slots (local counters and cluster-wide leases) of one admitted request.
type Permit struct {
	l         *Limiter
	done      atomic.Bool
	local     [numScopes]*entry
	leaseID   string
	leaseKeys []string
}

// Release gives the slots back. Only the first call does anything, so a deferred Release next to an explicit
// one is safe. Cluster-wide leases are removed in Redis with the configured timeout; if that fails they
// expire after lease_ttl.
func (p *Permit) Release() {
	if p == nil || !p.done.CompareAndSwap(false, true) {
		return
	}
	for _, e := range p.local {
		if e != nil {
			e.inflight.Add(-1)
		}
	}
	if p.leaseID != "" {
		p.l.cluster.release(p.l.table.Load().cfg.Cluster.Timeout, p.leaseID, p.leaseKeys)
	}
}

// Options are the limiter's collaborators. All are optional except Redis when a limit is cluster-wide.
type Options struct {
	Redis      redis.UniversalClient // for cluster-wide limits; a *redis.ClusterClient works too
	Registerer prometheus.Registerer // the metrics are registered here; nil leaves them unregistered
	Logger     *zap.Logger           // nil logs nothing
	Now        func() time.Time      // the clock of the local limits; time.Now when nil
	NodeID     string                // names this node's leases in Redis; host-pid when empty
	// Pipeline, when above 1, sends the cluster-wide checks of concurrent requests to Redis together, up to
	// this many in one pipeline (each request is still one script run, and waits no longer than its deadline).
	// 0 or 1 sends each check on its own.
	Pipeline int
}

// Limiter decides whether a request may proceed under the configured limits. It is safe for concurrent use.
// Acquire may call Redis, so the switch calls it off the gnet event loops, like every other blocking step.
type Limiter struct {
	table   atomic.Pointer[table]
	local   *store
	cluster *cluster // nil without Options.Redis
	m       *metrics
	reg     prometheus.Registerer
	now     func() time.Time
}

// table is a configuration ready for the hot path.
type table struct {
	cfg      *Config
	fallback map[*Spec]*Spec // a cluster-wide limit's node-local share, used while Redis is down
}

func newTable(cfg *Config, haveRedis bool) (*table, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	t := &table{cfg: cfg, fallback: map[*Spec]*Spec{}}
	for _, lim := range cfg.Limits() {
		if lim.Spec.Cluster {
			if !haveRedis {
				return nil, errors.New("limits: the configuration has cluster-wide limits but no Redis client was given")
			}
			t.fallback[lim.Spec] = lim.Spec.localShare()
		}
	}
	return t, nil
}

// localShare is the node-local limit that stands in for a cluster-wide one while Redis is down: rate, burst and
// concurrency cap times LocalShare (rounded), never below one request.
func (s *Spec) localShare() *Spec {
	f := *s
	f.Cluster = false
	f.Rate = s.Rate * s.LocalShare
	if f.Rate > 0 {
		f.Burst = max(1, int(math.Round(float64(s.Burst)*s.LocalShare)))
	}
	if f.Concurrency > 0 {
		f.Concurrency = max(1, int(math.Round(float64(s.Concurrency)*s.LocalShare)))
	}
	return &f
}

// New builds a limiter for cfg. Close it to stop the lease renewal and unregister the metrics.
//
// A *redis.Client or *redis.ClusterClient must have ContextTimeoutEnabled set: without it go-redis ignores the
// context deadline and a hanging Redis would hold a transaction for the client's read timeout (seconds).
func New(cfg *Config, opts Options) (*Limiter, error) {
	t, err := newTable(cfg, opts.Redis != nil)
	if err != nil {
		return nil, err
	}
	if !honoursDeadlines(opts.Redis) {
		return nil, errors.New("limits: the Redis client must set ContextTimeoutEnabled, or a hung Redis blocks requests past cluster.timeout")
	}
	l := &Limiter{local: newStore(cfg.IdleTTL), reg: opts.Registerer, now: opts.Now}
	if l.now == nil {
		l.now = time.Now
	}
	l.table.Store(t)
	l.m, err = newMetrics(opts.Registerer, func() float64 { return float64(l.local.len()) })
	if err != nil {
		return nil, fmt.Errorf("limits: registering metrics: %w", err)
	}
	if opts.Redis != nil {
		log := opts.Logger
		if log == nil {
			log = zap.NewNop()
		}
		node := opts.NodeID
		if node == "" {
			host, _ := os.Hostname()
			node = host + "-" + strconv.Itoa(os.Getpid())
		}
		l.cluster = newCluster(opts.Redis, node, opts.Pipeline, log, l.m, func() *ClusterConfig { return &l.table.Load().cfg.Cluster })
	}
	return l, nil
}

// honoursDeadlines reports whether the client's calls end at the context deadline, for the client types whose
// options can be read.
func honoursDeadlines(rdb redis.UniversalClient) bool {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	}
	return true
}

// Reload swaps in a new configuration atomically: a request sees the old or the new limits, never a mix.
// Local state of limits whose settings did not change is kept (tokens left, requests in flight); a limit whose
// rate or burst changed keeps its tokens, capped at the new burst. Cluster-wide state lives in Redis under the
// scope and key, so it carries over too unless cluster.key_prefix changed.
func (l *Limiter) Reload(cfg *Config) error {
	t, err := newTable(cfg, l.cluster != nil)
	if err != nil {
		return err
	}
	l.local.idleTTL.Store(int64(cfg.IdleTTL))
	l.table.Store(t)
	return nil
}

// Close stops the lease renewal and unregisters the metrics; calling it again does nothing. Leases still held
// expire after lease_ttl.
func (l *Limiter) Close() {
	if l.cluster != nil {
		l.cluster.close()
	}
	if l.reg != nil {
		for _, c := range l.m.collectors {
			l.reg.Unregister(c)
		}
	}
}

// check is one limit that applies to the request being decided.
type check struct {
	scope    Scope
	key      string
	spec     *Spec
	fallback bool // a cluster-wide limit's local share, while Redis is down
	e        *entry
}

// Acquire decides whether req may proceed. It checks every applicable limit, cheapest first: node-local
// concurrency caps and rate buckets (read without taking a token), then all cluster-wide limits in one Redis
// script that takes tokens and leases only if every one of them admits, and last it takes the local tokens.
// So a refusal at a later level burns no earlier level's tokens, except when a concurrent request takes the
// last local token between the look and the take (then the cluster-wide tokens of this request are spent).
//
// ctx bounds the Redis call (with cluster.timeout when ctx has no earlier deadline); Acquire never waits for
// tokens. On refusal, Decision names the limit and the response code.
func (l *Limiter) Acquire(ctx context.Context, req Request) Decision {
	t := l.table.Load()
	now := l.now()
	var local, remote [numScopes]check
	nl, nr := 0, 0
	for s := range numScopes {
		key := req.key(s)
		if key == "" && s != ScopeGlobal {
			continue
		}
		sp := t.cfg.spec(s, key)
		if sp == nil || sp.unlimited() {
			continue
		}
		if sp.Cluster {
			remote[nr] = check{scope: s, key: key, spec: sp}
			nr++
		} else {
			local[nl] = check{scope: s, key: key, spec: sp}
			nl++
		}
	}

	var held [numScopes]*entry // local concurrency slots taken so far
	for i := range nl {
		if kind, ok := l.look(&local[i], now, &held); !ok {
			return l.refuse(&local[i], kind, ReasonExceeded, &held, "", nil)
		}
	}

	var leaseID string
	var leaseKeys []string
	if nr > 0 {
		decided := false
		if l.cluster.available() {
			var r refusal
			var err error
			leaseID, leaseKeys, r, err = l.cluster.acquire(ctx, &t.cfg.Cluster, remote[:nr])
			if err == nil && r.check >= 0 {
				return l.refuse(&remote[r.check], r.kind, ReasonExceeded, &held, "", nil)
			}
			decided = err == nil
		}
		if !decided {
			// Redis is down or this call failed: the outage policy, limit by limit, refuses or checks this
			// node's share locally.
			for i := range nr {
				c := &remote[i]
				l.m.outageChecks[c.spec.OnRedisDown].Inc()
				if c.spec.OnRedisDown == PolicyRefuse {
					kind := KindRate
					if c.spec.Rate == 0 {
						kind = KindConcurrency
					}
					return l.refuse(c, kind, ReasonRedisDown, &held, "", nil)
				}
				local[nl] = check{scope: c.scope, key: c.key, spec: t.fallback[c.spec], fallback: true}
				if kind, ok := l.look(&local[nl], now, &held); !ok {
					return l.refuse(&local[nl], kind, ReasonExceeded, &held, "", nil)
				}
				nl++
			}
		}
	}

	for i := range nl {
		c := &local[i]
		if c.spec.Rate > 0 && !c.e.lim.Load().AllowN(now, 1) {
			return l.refuse(c, KindRate, ReasonExceeded, &held, leaseID, leaseKeys)
		}
	}
	l.m.allowed.Inc()
	d := Decision{Allowed: true}
	if held != [numScopes]*entry{} || leaseID != "" {
		d.Permit = &Permit{l: l, local: held, leaseID: leaseID, leaseKeys: leaseKeys}
	}
	return d
}

// look takes a local concurrency slot (recorded in held) and checks, without taking it, that a token is left.
func (l *Limiter) look(c *check, now time.Time, held *[numScopes]*entry) (Kind, bool) {
	c.e = l.local.get(entryKey{scope: c.scope, fallback: c.fallback, key: c.key}, c.spec, now)
	if cap := c.spec.Concurrency; cap > 0 {
		if c.e.inflight.Add(1) > int64(cap) {
			c.e.inflight.Add(-1)
			return KindConcurrency, false
		}
		held[c.scope] = c.e
	}
	if c.spec.Rate > 0 && c.e.lim.Load().TokensAt(now) < 1 {
		return KindRate, false
	}
	return 0, true
}

// refuse gives back what this request took so far and describes the refusing limit.
func (l *Limiter) refuse(c *check, kind Kind, reason Reason, held *[numScopes]*entry, leaseID string, leaseKeys []string) Decision {
	for _, e := range held {
		if e != nil {
			e.inflight.Add(-1)
		}
	}
	if leaseID != "" {
		l.cluster.release(l.table.Load().cfg.Cluster.Timeout, leaseID, leaseKeys)
	}
	l.m.refused[c.scope][kind][reason].Inc()
	code := c.spec.Code
	if reason == ReasonRedisDown {
		code = c.spec.DownCode
	}
	return Decision{Scope: c.scope, Key: c.key, Kind: kind, Reason: reason, Code: code, Source: c.spec.Source}
}
