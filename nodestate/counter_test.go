package nodestate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/railswitch/railswitch/link"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestRedisCounterTwoNodesNeverHandOutTheSameSTAN runs two nodes (two clients), each with several callers
// and 10,000 STANs per node for one acquirer and day, and checks every STAN and RRN is handed out once, also
// when the day's sequence starts just before the STAN wrap (so it wraps in the middle of the run).
func TestRedisCounterTwoNodesNeverHandOutTheSameSTAN(t *testing.T) {
	tests := []struct {
		name  string
		block int
		start int // the day's INCR value before the run
	}{
		{"one STAN per call", 1, 0},
		{"blocks of 100", 100, 0},
		{"one STAN per call across the wrap", 1, 995000},
		{"blocks of 100 across the wrap", 100, 995050},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rdbA, prefix := realRedis(t)
			rdbB := newClient(t, redisAddr())
			now := func() time.Time { return time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC) }
			if tc.start > 0 {
				ks, _ := newKeyspace(prefix)
				if err := rdbA.Set(ctxT(t), ks.stan("bankA", 20261127), tc.start, time.Hour).Err(); err != nil {
					t.Fatal(err)
				}
			}
			const perNode, callers = 10000, 4
			type got struct{ stan, rrn string }
			results := make(chan got, 2*perNode)
			errs := make(chan error, 2*callers)
			var wg sync.WaitGroup
			for node, rdb := range []*redis.Client{rdbA, rdbB} {
				c, err := NewRedisCounter(rdb, RedisCounterConfig{Prefix: prefix, Node: node + 1, Block: tc.block,
					Location: time.UTC, Now: now})
				if err != nil {
					t.Fatal(err)
				}
				for range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ctx := context.Background()
						for range perNode / callers {
							stan, rrn, err := c.Next(ctx, "bankA")
							if err != nil {
								errs <- err
								return
							}
							results <- got{stan, rrn}
						}
					}()
				}
			}
			wg.Wait()
			close(results)
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			stans, rrns := map[string]bool{}, map[string]bool{}
			for r := range results {
				if stans[r.stan] {
					t.Fatalf("STAN %s handed out twice", r.stan)
				}
				if rrns[r.rrn] {
					t.Fatalf("RRN %s handed out twice", r.rrn)
				}
				stans[r.stan], rrns[r.rrn] = true, true
				n, err := strconv.Atoi(r.rrn[5:])
				if len(r.stan) != 6 || len(r.rrn) != 12 || r.rrn[:3] != "331" || err != nil || n <= tc.start ||
					r.stan != fmt.Sprintf("%06d", (n-1)%999999+1) {
					t.Fatalf("STAN %s RRN %s: want 6 digits and 331NN<n as 7 digits> with STAN ((n-1) mod 999999)+1 "+
						"(27 Nov 2026 is day 331)", r.stan, r.rrn)
				}
			}
			if len(stans) != 2*perNode {
				t.Fatalf("%d STANs, want %d", len(stans), 2*perNode)
			}
		})
	}
}

// TestRedisCounterRestartsAtLocalMidnight moves an injected clock over midnight in the counter's location
// and checks the STAN starts again at 000001 there (and the day's key expires after two days).
func TestRedisCounterRestartsAtLocalMidnight(t *testing.T) {
	tests := []struct {
		name  string
		block int
	}{
		{"one STAN per call", 1},
		{"blocks of 50: the rest of the day's block is dropped", 50},
	}
	loc := time.FixedZone("UTC+8", 8*3600)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rdb, prefix := realRedis(t)
			clock := time.Date(2026, 12, 31, 23, 59, 58, 0, loc)
			var mu sync.Mutex
			now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
			set := func(v time.Time) { mu.Lock(); clock = v; mu.Unlock() }
			c, _ := NewRedisCounter(rdb, RedisCounterConfig{Prefix: prefix, Node: 7, Block: tc.block, Location: loc, Now: now})
			ctx := ctxT(t)
			next := func() (string, string) {
				s, r, err := c.Next(ctx, "bankA")
				if err != nil {
					t.Fatal(err)
				}
				return s, r
			}
			for i := 1; i <= 3; i++ {
				if s, r := next(); s != fmt.Sprintf("%06d", i) || r != fmt.Sprintf("36507%07d", i) {
					t.Fatalf("before midnight: STAN %s RRN %s", s, r)
				}
			}
			// 16:00 UTC on the 31st is midnight in UTC+8: a new year and day 001.
			set(time.Date(2026, 12, 31, 16, 0, 1, 0, time.UTC))
			if s, r := next(); s != "000001" || r != "001070000001" {
				t.Fatalf("after midnight: STAN %s RRN %s, want 000001 001070000001", s, r)
			}
			if ttl := rdb.TTL(ctx, c.keys.stan("bankA", 20270101)).Val(); ttl <= 47*time.Hour || ttl > 48*time.Hour {
				t.Fatalf("day key TTL %s, want 48h", ttl)
			}
		})
	}
}

// TestRedisCounterWrapsTheSTANButNeverTheRRN starts the day's INCR value just before 999999: the STAN wraps
// around to 000001 while the RRN keeps counting, and the wrap is logged once.
func TestRedisCounterWrapsTheSTANButNeverTheRRN(t *testing.T) {
	tests := []struct {
		name  string
		block int
	}{
		{"one STAN per call", 1},
		{"blocks of 3", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rdb, prefix := realRedis(t)
			now := func() time.Time { return time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC) }
			core, logs := observer.New(zap.InfoLevel)
			c, _ := NewRedisCounter(rdb, RedisCounterConfig{Prefix: prefix, Node: 2, Block: tc.block, Location: time.UTC,
				Now: now, Log: zap.New(core)})
			ctx := ctxT(t)
			if err := rdb.Set(ctx, c.keys.stan("bankA", 20261127), 999997, time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			for _, want := range []struct{ stan, rrn string }{
				{"999998", "331020999998"},
				{"999999", "331020999999"},
				{"000001", "331021000000"},
				{"000002", "331021000001"},
				{"000003", "331021000002"},
			} {
				if s, r, err := c.Next(ctx, "bankA"); err != nil || s != want.stan || r != want.rrn {
					t.Fatalf("STAN %s RRN %s err %v, want %s %s", s, r, err, want.stan, want.rrn)
				}
			}
			if n := logs.FilterMessageSnippet("wrapping").Len(); n != 1 {
				t.Fatalf("%d wrap log lines, want 1", n)
			}
		})
	}
}

// TestRedisCounterRefusesPastTenMillionADay starts the day's INCR value just before link.MaxRRNSequence:
// the last sequence numbers are handed out, then every call is refused with ErrSTANExhausted (another
// acquirer is not).
func TestRedisCounterRefusesPastTenMillionADay(t *testing.T) {
	rdb, prefix := realRedis(t)
	now := func() time.Time { return time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC) }
	c, _ := NewRedisCounter(rdb, RedisCounterConfig{Prefix: prefix, Block: 3, Location: time.UTC, Now: now})
	ctx := ctxT(t)
	if err := rdb.Set(ctx, c.keys.stan("bankA", 20261127), link.MaxRRNSequence-2, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	// 9,999,998 and 9,999,999 are STANs 000008 and 000009 of the eleventh pass over 000001-999999.
	for _, want := range []struct{ stan, rrn string }{{"000008", "331009999998"}, {"000009", "331009999999"}} {
		if s, r, err := c.Next(ctx, "bankA"); err != nil || s != want.stan || r != want.rrn {
			t.Fatalf("STAN %s RRN %s err %v, want %s %s", s, r, err, want.stan, want.rrn)
		}
	}
	for range 2 {
		if s, _, err := c.Next(ctx, "bankA"); !errors.Is(err, link.ErrSTANExhausted) {
			t.Fatalf("STAN %s err %v, want ErrSTANExhausted", s, err)
		}
	}
	if s, _, err := c.Next(ctx, "bankB"); err != nil || s != "000001" {
		t.Fatalf("another acquirer: STAN %s err %v", s, err)
	}
}

func TestRedisCounterConfigIsChecked(t *testing.T) {
	tests := []struct {
		name string
		cfg  RedisCounterConfig
	}{
		{"node above 99", RedisCounterConfig{Node: 100}},
		{"negative node", RedisCounterConfig{Node: -1}},
		{"block above 10000", RedisCounterConfig{Block: 10001}},
		{"prefix with a brace", RedisCounterConfig{Prefix: "a{"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewRedisCounter(nil, tc.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
