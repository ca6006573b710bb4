package nodestate

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/railswitch/railswitch/link"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// stanKeyTTL is how long a day's STAN key lives: the day and the next, so a node whose clock lags a little
// behind midnight still finds it.
const stanKeyTTL = 48 * time.Hour

// maxSTAN is the last STAN of the range; past it the STAN wraps around to 000001.
const maxSTAN = 999999

// RedisCounterConfig configures a RedisCounter.
type RedisCounterConfig struct {
	Prefix string // key prefix (empty: DefaultPrefix)
	Node   int    // node number 0-99, written into every RRN
	// Block is how many STANs one Redis call reserves for this node (INCRBY): 1 (the default) asks Redis for
	// every STAN; larger blocks save round trips, and the STANs of a block left unused when the node stops
	// or the day ends are skipped (never reused).
	Block    int
	Location *time.Location   // where midnight is; default time.Local
	Now      func() time.Time // default time.Now
	Log      *zap.Logger      // where the daily STAN wrap is reported (Info); nil logs nothing
}

// RedisCounter is a link.Counter shared by every node: the sequence number n is INCR (or INCRBY Block) on
// "<prefix>:{stan:<acquirer>}:<yyyymmdd>", a key per acquirer and local day that expires after two days, so
// n is unique per acquirer and day across the nodes and restarts at 1 after midnight. The STAN is
// ((n-1) mod 999999) + 1: it wraps around to 000001 after 999999 (logged once per acquirer and day by each
// node that sees it), so it is unique per acquirer among the last 999,999 messages of all nodes. The RRN is
// DDDNNSSSSSSS as with link.LocalCounter (day of the year, node number, n as 7 digits), so it is unique per
// acquirer within a year. Past n = link.MaxRRNSequence Next refuses with link.ErrSTANExhausted.
type RedisCounter struct {
	rdb  redis.UniversalClient
	keys keyspace
	cfg  RedisCounterConfig
	mu   sync.Mutex
	seq  map[string]*stanBlock
}

// stanBlock is the part of a reserved block not yet handed out, for one acquirer and day.
type stanBlock struct {
	mu         sync.Mutex
	day        int
	next, last int  // sequence numbers n
	wrapped    bool // the STAN wrap of day was logged
}

// NewRedisCounter returns a counter with cfg's defaults filled in.
func NewRedisCounter(rdb redis.UniversalClient, cfg RedisCounterConfig) (*RedisCounter, error) {
	ks, err := newKeyspace(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	if cfg.Node < 0 || cfg.Node > 99 {
		return nil, fmt.Errorf("nodestate: counter node %d outside 0-99", cfg.Node)
	}
	if cfg.Block < 0 || cfg.Block > 10000 {
		return nil, fmt.Errorf("nodestate: counter block %d outside 1-10000", cfg.Block)
	}
	if cfg.Block == 0 {
		cfg.Block = 1
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	return &RedisCounter{rdb: rdb, keys: ks, cfg: cfg, seq: map[string]*stanBlock{}}, nil
}

// Next returns the acquirer's next STAN and its RRN. After STAN 999999 the STAN wraps around to 000001;
// past link.MaxRRNSequence messages of the day it returns link.ErrSTANExhausted.
func (c *RedisCounter) Next(ctx context.Context, acquirer string) (string, string, error) {
	t := c.cfg.Now().In(c.cfg.Location)
	y, m, d := t.Date()
	day := y*10000 + int(m)*100 + d
	c.mu.Lock()
	b := c.seq[acquirer]
	if b == nil {
		b = &stanBlock{}
		c.seq[acquirer] = b
	}
	c.mu.Unlock()

	b.mu.Lock()
	if b.day != day || b.next > b.last {
		// A new block: INCRBY reserves (hi-Block, hi]; the key's expiry is set once, by its first caller.
		key := c.keys.stan(acquirer, day)
		var incr *redis.IntCmd
		_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			incr = p.IncrBy(ctx, key, int64(c.cfg.Block))
			p.ExpireNX(ctx, key, stanKeyTTL)
			return nil
		})
		if err != nil {
			b.mu.Unlock()
			return "", "", fmt.Errorf("nodestate: STAN of acquirer %s: %w", acquirer, err)
		}
		if b.day != day {
			b.wrapped = false
		}
		hi := int(incr.Val())
		b.day, b.next, b.last = day, hi-c.cfg.Block+1, min(hi, link.MaxRRNSequence)
		if b.next > link.MaxRRNSequence {
			b.next, b.last = 1, 0 // nothing left today; the next call asks again (and is refused again)
			b.mu.Unlock()
			return "", "", fmt.Errorf("%w: acquirer %s has %d messages today", link.ErrSTANExhausted, acquirer, hi-c.cfg.Block)
		}
	}
	n := b.next
	b.next++
	logWrap := n > maxSTAN && !b.wrapped
	if logWrap {
		b.wrapped = true
	}
	b.mu.Unlock()

	if logWrap {
		c.cfg.Log.Info("STAN range used up, wrapping around to 000001", zap.String("acquirer", acquirer),
			zap.Int("day", day))
	}
	stan, rrn := link.FormatSTANRRN(n, 1, maxSTAN, t.YearDay(), c.cfg.Node)
	return stan, rrn, nil
}
