package saf

import (
	"context"
	"testing"
)

// benchQueue opens a queue whose sender holds the first entry until Close, so the worker's own writes do not
// compete with the enqueues measured, and a reversal to enqueue. The queue closes when the benchmark ends.
func benchQueue(b *testing.B) (*Queue, []byte) {
	hold := SenderFunc(func(ctx context.Context, _, _ string, _ []byte) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	})
	clock := newClock()
	clock.gate = make(chan struct{})
	q := openQueue(b, b.TempDir(), hold, clock, Policy{}, nil)
	b.Cleanup(func() { _ = q.Close() })
	return q, packed(b, testSpec(b, "iso87-ascii"), "0420", "000001")
}

// BenchmarkEnqueue measures Enqueue with its fsync on the test's temporary directory. The sender holds the
// first entry until Close.
func BenchmarkEnqueue(b *testing.B) {
	q, msg := benchQueue(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := q.Enqueue(ctx, "bank", "bank/ep1/0", "txn", msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnqueueParallel is Enqueue from 32 goroutines (a bank black hole at a peak: every timed-out
// request queues a reversal); group commit shares each fsync among the callers waiting for it.
func BenchmarkEnqueueParallel(b *testing.B) {
	q, msg := benchQueue(b)
	b.ReportAllocs()
	b.SetParallelism(16) // x GOMAXPROCS goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := q.Enqueue(ctx, "bank", "bank/ep1/0", "txn", msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
