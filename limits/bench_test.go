package limits

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Limits high enough to admit every call, so the benchmarks measure the full admit path.
const benchLocal = `
terminal:
  default: {rate: 1e9, burst: 1000000000}
merchant:
  default: {rate: 1e9, burst: 1000000000}
global: {rate: 1e9, burst: 1000000000}
`

// BenchmarkLocalAllow measures Acquire with three node-local rate limits (terminal, merchant, global).
func BenchmarkLocalAllow(b *testing.B) {
	b.Run("one-terminal", func(b *testing.B) {
		l, _ := newLocal(b, benchLocal)
		l.now = time.Now
		req := Request{Terminal: "10000001", Merchant: "898310048990001"}
		b.ReportAllocs()
		for b.Loop() {
			if !l.Acquire(bg, req).Allowed {
				b.Fatal("refused")
			}
		}
	})
	b.Run("10000-terminals-parallel", func(b *testing.B) {
		l, _ := newLocal(b, benchLocal)
		l.now = time.Now
		reqs := make([]Request, 10000)
		for i := range reqs {
			reqs[i] = Request{Terminal: strconv.Itoa(10000000 + i), Merchant: strconv.Itoa(i % 500)}
			l.Acquire(bg, reqs[i])
		}
		var next atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7919))
			for pb.Next() {
				i++
				l.Acquire(bg, reqs[i%len(reqs)])
			}
		})
	})
}

// BenchmarkRedisLimiter measures cluster-wide checks against the real Redis from many parallel callers: each
// check one script call on the client's connection pool, or batched with Options.Pipeline; a lease adds one
// release call.
func BenchmarkRedisLimiter(b *testing.B) {
	addr, prefix := realRedis(b)
	for _, bc := range []struct {
		name     string
		limit    string
		pipeline int
	}{
		{"rate", "{rate: 1e9, burst: 1000000000, cluster: true}", 0},
		{"rate-pipelined", "{rate: 1e9, burst: 1000000000, cluster: true}", 64},
		{"rate+lease", "{rate: 1e9, burst: 1000000000, concurrency: 1000000, cluster: true}", 0},
		{"rate+lease-pipelined", "{rate: 1e9, burst: 1000000000, concurrency: 1000000, cluster: true}", 64},
	} {
		b.Run(bc.name, func(b *testing.B) {
			src := fmt.Sprintf("cluster: {key_prefix: %q, timeout: 1s}\nacquirer:\n  default: %s\n", prefix, bc.limit)
			testPipeline = bc.pipeline
			n := newNode(b, addr, src, "bench")
			testPipeline = 0
			req := Request{Acquirer: "bench-" + bc.name}
			n.Acquire(bg, req).Permit.Release() // load the script
			b.SetParallelism(8)
			b.ReportAllocs()
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					d := n.Acquire(bg, req)
					if !d.Allowed {
						b.Errorf("refused: %v", d)
						return
					}
					d.Permit.Release()
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
		})
	}
}
