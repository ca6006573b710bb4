package nodestate

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/railswitch/railswitch/flow"
)

// Benchmarks of one call each against the machine's Redis (a round trip over loopback) and of the file
// stores (an fsync per write, shared by concurrent writers). Run:
//
//	go test ./nodestate -run '^$' -bench . -benchmem -count=3

func BenchmarkRedisSessionPut(b *testing.B) {
	rdb, prefix := realRedis(b)
	s, _ := NewRedisSessions(rdb, prefix)
	v := testSession("T1", true, "000001")
	ctx := context.Background()
	for b.Loop() {
		if err := s.Put(ctx, v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedisSessionGet(b *testing.B) {
	rdb, prefix := realRedis(b)
	s, _ := NewRedisSessions(rdb, prefix)
	ctx := context.Background()
	if err := s.Put(ctx, testSession("T1", true, "000001")); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, ok, err := s.Get(ctx, "T1"); !ok || err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedisBatchAdd(b *testing.B) {
	rdb, prefix := realRedis(b)
	s, _ := NewRedisBatches(rdb, prefix, 0)
	ctx := context.Background()
	for b.Loop() {
		if err := s.Add(ctx, "T1", "000001", true, 100, 1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedisBatchTotals(b *testing.B) {
	rdb, prefix := realRedis(b)
	s, _ := NewRedisBatches(rdb, prefix, 0)
	ctx := context.Background()
	_ = s.Add(ctx, "T1", "000001", true, 100, 1)
	for b.Loop() {
		if _, err := s.Totals(ctx, "T1", "000001"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedisTxnPut(b *testing.B) {
	rdb, prefix := realRedis(b)
	s, _ := NewRedisTxns(rdb, prefix, 0)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		if err := s.Put(ctx, "T1", "000001", fmt.Sprint(i%1000), txnOf(i%1000)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedisTxnGetByRRN(b *testing.B) {
	rdb, prefix := realRedis(b)
	s, _ := NewRedisTxns(rdb, prefix, 0)
	ctx := context.Background()
	_ = s.Put(ctx, "T1", "000001", "000001", txnOf(1))
	for b.Loop() {
		if _, ok, err := s.GetByRRN(ctx, "T1", txnOf(1).RRN); !ok || err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisCounterNext compares a Redis call per STAN with blocks handed out locally, from 8
// concurrent callers.
func BenchmarkRedisCounterNext(b *testing.B) {
	for _, block := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("block=%d", block), func(b *testing.B) {
			rdb, prefix := realRedis(b)
			c, _ := NewRedisCounter(rdb, RedisCounterConfig{Prefix: prefix, Block: block})
			var acq atomic.Int64
			b.SetParallelism(4) // 8 callers on 2 cores
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				// one acquirer per 100k STANs so a long run never exhausts a day
				ctx := context.Background()
				n := 0
				name := fmt.Sprint("bank", acq.Add(1))
				for pb.Next() {
					n++
					if n%500000 == 0 {
						name = fmt.Sprint("bank", acq.Add(1))
					}
					if _, _, err := c.Next(ctx, name); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func BenchmarkRedisSAFPutRemove(b *testing.B) {
	rdb, prefix := realRedis(b)
	l := testLease(b, rdb, prefix, "n1")
	st, _ := l.Store(context.Background(), "reversals")
	ctx := context.Background()
	e := testEntry("n1", 1, "bankA")
	e.Sealed = make([]byte, 200) // a sealed reversal
	for b.Loop() {
		if err := st.Put(ctx, e); err != nil {
			b.Fatal(err)
		}
		if err := st.Remove(ctx, "bankA", e.ID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFileTxnsPut is one Put (one fsync) at a time, and 32 concurrent callers sharing fsyncs.
func BenchmarkFileTxnsPut(b *testing.B) {
	for _, par := range []int{1, 32} {
		b.Run(fmt.Sprintf("callers=%d", par), func(b *testing.B) {
			s, err := OpenFileTxns(filepath.Join(b.TempDir(), "txns.log"), FileOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var seq atomic.Int64
			b.ReportAllocs()
			runCallers(b, par, func(ctx context.Context) error {
				i := int(seq.Add(1))
				return s.Put(ctx, "T1", "000001", fmt.Sprint(i), flow.Txn{ID: fmt.Sprint(i), RRN: fmt.Sprint(i), Amount: 100})
			})
			b.ReportMetric(float64(s.Syncs())/float64(b.N), "fsyncs/op")
		})
	}
}

func BenchmarkFileBatchesAdd(b *testing.B) {
	for _, par := range []int{1, 32} {
		b.Run(fmt.Sprintf("callers=%d", par), func(b *testing.B) {
			s, err := OpenFileBatches(filepath.Join(b.TempDir(), "batches.log"), FileOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ReportAllocs()
			runCallers(b, par, func(ctx context.Context) error { return s.Add(ctx, "T1", "000001", true, 100, 1) })
			b.ReportMetric(float64(s.Syncs())/float64(b.N), "fsyncs/op")
		})
	}
}

func BenchmarkFileTxnsGet(b *testing.B) {
	s, _ := OpenFileTxns(filepath.Join(b.TempDir(), "txns.log"), FileOptions{})
	defer s.Close()
	ctx := context.Background()
	_ = s.Put(ctx, "T1", "000001", "000001", txnOf(1))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, _ := s.GetByRRN(ctx, "T1", txnOf(1).RRN); !ok {
			b.Fatal("missing")
		}
	}
}

// runCallers runs op b.N times from exactly callers goroutines.
func runCallers(b *testing.B, callers int, op func(context.Context) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for next.Add(1) <= int64(b.N) {
				if err := op(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
