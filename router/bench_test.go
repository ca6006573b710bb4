package router

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// genTable builds a table of n BIN ranges (n a multiple of 4): n/4 six-digit ranges, each holding three
// eight-digit ranges, routed by a few rules in front of the BIN table, as a production table would be.
func genTable(tb testing.TB, n int) *Table {
	tb.Helper()
	c := &config{sum: sha256.New()}
	for i := range 10 {
		c.acquirers = append(c.acquirers, Acquirer{Name: fmt.Sprintf("bank%d", i),
			Endpoints: []Endpoint{{Name: "a", Address: "127.0.0.1:1", Weight: 1, Connections: 1}}})
	}
	c.bins = make([]BINRange, 0, n)
	for i := range n / 4 {
		p := 100000 + 3*i
		acq := fmt.Sprintf("bank%d", i%10)
		c.bins = append(c.bins, BINRange{Low: fmt.Sprint(p), High: fmt.Sprint(p), Acquirer: acq, CardType: "debit"})
		for _, sub := range []int{10, 42, 77} {
			s := fmt.Sprint(p*100 + sub)
			c.bins = append(c.bins, BINRange{Low: s, High: s, Acquirer: acq, CardType: "credit"})
		}
	}
	c.rules = []Rule{
		{Name: "network", Classes: []string{"network"}, Kind: KindLocal, Handler: "network"},
		{Name: "reversal", Classes: []string{"reversal"}, Kind: KindOriginal},
		{Name: "void", Classes: []string{"financial"}, Procs: []string{"20"}, Kind: KindOriginal},
		{Name: "kiosk-credit", Channels: []string{"kiosk"}, CardTypes: []string{"credit"}, Kind: KindDecline, ResponseCode: "57"},
		{Name: "by-bin", Kind: KindAcquirer, BINTable: true},
		{Name: "default", Kind: KindAcquirer, Acquirer: "bank0"},
	}
	t, err := c.compile()
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// BenchmarkLookup1M routes 0200 purchases over a table of 1,000,000 BIN ranges. "spread": PANs drawn over
// the whole table, so nearly every lookup misses the CPU caches, as live traffic does. "hot": the same 64
// PANs again and again, the cost of the lookup itself with the table's lines in cache.
func BenchmarkLookup1M(b *testing.B) {
	t := genTable(b, 1_000_000)
	rng := rand.New(rand.NewPCG(1, 2))
	pans := make([]string, 1<<16)
	for i := range pans {
		pans[i] = fmt.Sprintf("%06d%010d", 100000+rng.IntN(750000), rng.Uint64N(1e10))
	}
	runtime.GC() // collect the garbage of building the table now, not while timing
	for _, bc := range []struct {
		name string
		n    int
	}{{"spread", len(pans)}, {"hot", 64}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			start, n := cpuTime(), 0
			for ; b.Loop(); n++ {
				_, err := t.Lookup(Key{Channel: "pos", MTI: "0200", Proc: "000000", PAN: pans[n&(bc.n-1)]})
				if err != nil && err != ErrNoRoute {
					b.Fatal(err)
				}
			}
			reportCPU(b, start, n)
		})
	}
}

// reportCPU adds the CPU time per operation (cpu-ns/op) since start, when the platform measures it.
func reportCPU(b *testing.B, start time.Duration, n int) {
	if used := cpuTime() - start; used > 0 && n > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(n), "cpu-ns/op")
	}
}
