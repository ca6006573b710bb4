package journal

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// cpuTime returns the user and system CPU time of the process: on a loaded machine wall time per operation
// includes waiting for a core, CPU time does not.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAppend measures durable appends from concurrent callers, reporting throughput and the p99 latency
// of one Append call (which includes waiting for its group commit), and the process CPU time per record.
func BenchmarkAppend(b *testing.B) {
	for _, fsync := range []bool{false, true} {
		for _, perCPU := range []int{1, 32} {
			b.Run(fmt.Sprintf("fsync=%v/appenders=%dxGOMAXPROCS", fsync, perCPU), func(b *testing.B) {
				j, err := Open(Options{Dir: b.TempDir(), Fsync: fsync})
				if err != nil {
					b.Fatal(err)
				}
				defer j.Close()
				rec := testRecord(1)
				var mu sync.Mutex
				var lat []time.Duration
				b.SetParallelism(perCPU)
				b.ReportAllocs()
				b.ResetTimer()
				start, cpu0 := time.Now(), cpuTime(b)
				b.RunParallel(func(pb *testing.PB) {
					local := make([]time.Duration, 0, 4096)
					for pb.Next() {
						t0 := time.Now()
						if _, err := j.Append(rec); err != nil {
							b.Error(err)
							return
						}
						local = append(local, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, local...)
					mu.Unlock()
				})
				elapsed, cpu := time.Since(start), cpuTime(b)-cpu0
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/record")
				var m dto.Metric
				if err := j.batchSizes.Write(&m); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(m.GetHistogram().GetSampleSum()/float64(m.GetHistogram().GetSampleCount()), "records/commit")
			})
		}
	}
}

func BenchmarkEncodeRecord(b *testing.B) {
	rec := testRecord(1)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	for b.Loop() {
		buf = appendRecord(buf[:0], rec)
	}
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkRawFsync is the reference for the fsync figures: one 174-byte write and fsync of a plain file, with
// no journal, on the same disk and in the same run.
func BenchmarkRawFsync(b *testing.B) {
	f, err := os.CreateTemp(b.TempDir(), "raw")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rec := make([]byte, 174)
	lat := make([]time.Duration, 0, 1024)
	for b.Loop() {
		t0 := time.Now()
		if _, err := f.Write(rec); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
