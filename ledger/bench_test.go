package ledger

import (
	"context"
	"testing"
	"time"
)

// benchmarkDeliver delivers batches of 256 new records (fresh keys each time) and reports records/s.
func benchmarkDeliver(b *testing.B, be backend) {
	s := be.open(b, be.upstream)
	ctx := context.Background()
	const batch = 256
	recs := testRecords(0, batch)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		for k := range recs { // new keys, same shape
			recs[k].TxnID = txnID(i*batch + k)
		}
		if err := s.Deliver(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "records/s")
	b.StopTimer()
	if n := be.count(b); n != b.N*batch {
		b.Fatalf("%d entries after %d batches of %d", n, b.N, batch)
	}
}

func txnID(n int) string {
	const digits = "0123456789"
	b := []byte("B-0000000000")
	for i := len(b) - 1; n > 0 && i > 1; i-- {
		b[i] = digits[n%10]
		n /= 10
	}
	return string(b)
}

func BenchmarkPostgresDeliver256(b *testing.B) { benchmarkDeliver(b, postgresBackend(b)) }
func BenchmarkRedisDeliver256(b *testing.B)    { benchmarkDeliver(b, redisBackend(b)) }
func BenchmarkNATSDeliver256(b *testing.B)     { benchmarkDeliver(b, natsBackend(b)) }
