package server

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"go.uber.org/zap"
)

// BenchmarkDemoPurchases drives purchases through the demo (switch and both simulated banks in this process,
// journal and intents fsynced) from terminals that each keep one TCP connection and wait for every answer.
// ns/op is wall time per purchase across all terminals; the terminals' own work (PIN blocks, MACs) counts in.
func BenchmarkDemoPurchases(b *testing.B) {
	for _, terms := range []int{1, 16} {
		b.Run(fmt.Sprintf("terminals=%d", terms), func(b *testing.B) {
			d := startTestDemoWith(b, DemoAddrs{LoadTerminals: terms}, zap.NewNop())
			tts := make([]*testTerminal, terms)
			for i := range tts {
				tts[i] = dialTerminal(b, d.Channels()[0].Addr(), fmt.Sprintf("LT%06d", i+1), "898110000000009")
				tts[i].signOn()
				tts[i].fatalf = func(format string, args ...any) { b.Errorf(format, args...); runtime.Goexit() }
			}
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for i, tt := range tts {
				n := b.N / terms
				if i < b.N%terms {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range n {
						if rc := tt.exchange(tt.purchaseMessage("6212341234567890", 100), true).String(39); rc != "00" {
							b.Errorf("%s: purchase answered %q", tt.tid, rc)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}
