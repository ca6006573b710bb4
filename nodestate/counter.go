package nodestate

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/railswitch/railswitch/link"
	"github.com/redis/go-redis/v9"
)

// stanKeyTTL is how long a day's STAN key lives: the day and the next, so a node whose clock lags a little
// behind midnight still finds it.
const stanKeyTTL = 48 * time.Hour

// maxSTAN is the last STAN of a day.
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
}

// RedisCounter is a link.Counter shared by every node: the STAN is INCR (or INCRBY Block) on
// "<prefix>:{stan:<acquirer>}:<yyyymmdd>", a key per acquirer and local day that expires after two days, so
// a STAN is unique per acquirer and day across the nodes and restarts at 000001 after midnight. The RRN is
// YDDDNNSSSSSS as with link.LocalCounter (last digit of the year, day of the year, node number, STAN), so it
// is unique per acquirer for ten years.
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
	next, last int
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
	return &RedisCounter{rdb: rdb, keys: ks, cfg: cfg, seq: map[string]*stanBlock{}}, nil
}

// Next returns the acquirer's next STAN and its RRN. When the day's STANs are used up it returns
// link.ErrSTANExhausted rather than reuse one.
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
		hi := int(incr.Val())
		b.day, b.next, b.last = day, hi-c.cfg.Block+1, min(hi, maxSTAN)
		if b.next > maxSTAN {
			b.next, b.last = 1, 0 // nothing left today; the next call asks again (and is refused again)
			b.mu.Unlock()
			return "", "", fmt.Errorf("%w: acquirer %s", link.ErrSTANExhausted, acquirer)
		}
	}
	n := b.next
	b.next++
	b.mu.Unlock()

	var rrn [12]byte
	rrn[0] = byte('0' + y%10)
	putDigits(rrn[1:4], t.YearDay())
	putDigits(rrn[4:6], c.cfg.Node)
	putDigits(rrn[6:12], n)
	return string(rrn[6:12]), string(rrn[:]), nil
}

// putDigits writes v as len(b) decimal digits, zero-padded.
func putDigits(b []byte, v int) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}
