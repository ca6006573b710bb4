package link

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
)

// leanBank answers every request on reused messages, one write per batch of frames read, so that -benchmem
// counts the link's allocations and not the responder's.
func leanBank(b *testing.B, spec *codec.Spec) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Go(func() { leanServe(nc, spec) })
		}
	})
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func leanServe(nc net.Conn, spec *codec.Spec) {
	defer nc.Close()
	fr := spec.Framing()
	req, resp := codec.NewMessage(spec), codec.NewMessage(spec)
	buf, out := make([]byte, 64<<10), make([]byte, 0, 64<<10)
	n := 0
	for {
		got, err := nc.Read(buf[n:])
		n += got
		off := 0
		out = out[:0]
		for {
			body, used, serr := fr.Split(buf[off:n])
			if serr != nil {
				break
			}
			off += used
			if req.UnpackFrame(fr, body) != nil {
				continue
			}
			resp.Reset()
			switch req.MTI() {
			case "0800":
				resp.SetMTI("0810")
			default:
				resp.SetMTI("0210")
			}
			for _, f := range [...]int{4, 7, 11, 41, 70} {
				resp.CopyField(f, req)
			}
			resp.SetString(39, "00")
			out, _ = resp.AppendFrame(fr, out)
		}
		n = copy(buf, buf[off:n])
		if len(out) > 0 {
			if _, werr := nc.Write(out); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// processCPU returns the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRoundTrip sends 0200s through one link to a loopback responder and waits for each 0210: one caller
// in a loop, and 16 callers per GOMAXPROCS in parallel.
func BenchmarkRoundTrip(b *testing.B) {
	spec := testSpec(b)
	for _, parallel := range []int{0, 16} {
		name := "serial"
		if parallel > 0 {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			l, err := New(Config{ID: LinkID{"bench", "a", 0}, Address: leanBank(b, spec), Spec: spec,
				Counter: newCounter(b), EchoInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			l.Start()
			defer l.Close(context.Background())
			waitState(b, l, StateReady)
			var stan, terminal atomic.Int64
			// caller sends n requests from its own terminal id, reusing one message.
			caller := func(next func() bool) {
				m := codec.NewMessage(spec)
				var tid [8]byte
				putDigits(tid[:], int(terminal.Add(1)))
				var s [6]byte
				for next() {
					m.Reset()
					m.SetMTI("0200")
					m.Set(3, []byte("000000"))
					m.Set(4, []byte("000000001000"))
					m.Set(7, []byte("1127093001"))
					putDigits(s[:], int(stan.Add(1)%999999+1))
					m.Set(11, s[:])
					m.Set(41, tid[:])
					resp, err := l.Send(context.Background(), m, time.Now().Add(5*time.Second))
					if err != nil {
						b.Error(err)
						return
					}
					resp.Release()
				}
			}
			b.ReportAllocs()
			cpu0 := processCPU()
			b.ResetTimer()
			if parallel == 0 {
				i := 0
				caller(func() bool { i++; return i <= b.N })
			} else {
				b.SetParallelism(parallel)
				b.RunParallel(func(pb *testing.PB) { caller(pb.Next) })
			}
			b.StopTimer()
			// CPU of the whole process (link and responder) per round trip: steadier than wall time on a
			// loaded machine.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
