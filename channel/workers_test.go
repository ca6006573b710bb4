package channel

import (
	"bytes"
	"runtime"
	"sync"
	"testing"
	"time"
)

// goroutineHandler answers like echoHandler and records which goroutine ran each frame.
type goroutineHandler struct {
	echoHandler
	mu  sync.Mutex
	ids map[string]int
}

func (h *goroutineHandler) Frame(s *Session, body []byte) {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := bytes.Cut(buf, []byte(" ["))
	h.mu.Lock()
	h.ids[string(id)]++
	h.mu.Unlock()
	h.echoHandler.Frame(s, body)
}

// TestSequentialFramesReuseAWarmWorkerAndIdleWorkersExit: frames that come one after another run on the same
// worker goroutine (its grown stack is kept), concurrent frames each get a worker of their own, and workers
// without work exit, so the goroutine count returns to where it was.
func TestSequentialFramesReuseAWarmWorkerAndIdleWorkersExit(t *testing.T) {
	h := &goroutineHandler{ids: map[string]int{}}
	c := startChannel(t, Config{}, h)
	nc := dial(t, c)
	for range 50 {
		if _, err := nc.Write(frame(msg)); err != nil {
			t.Fatal(err)
		}
		if got := readFrame(t, nc); got != msg {
			t.Fatalf("reply %q", got)
		}
	}
	h.mu.Lock()
	workers := len(h.ids)
	h.mu.Unlock()
	if workers > 3 {
		t.Fatalf("50 sequential frames ran on %d goroutines, want a reused worker", workers)
	}

	h.hold = make(chan struct{})
	const concurrent = 4
	conns := make([]interface{ Write([]byte) (int, error) }, concurrent)
	for i := range conns {
		conns[i] = dial(t, c)
		if _, err := conns[i].Write(frame(msg)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.frames.Load() < 50+concurrent {
		if time.Now().After(deadline) {
			t.Fatalf("%d frames reached the handler, want %d at once", h.frames.Load(), 50+concurrent)
		}
		time.Sleep(5 * time.Millisecond)
	}
	busy := runtime.NumGoroutine() // the held workers are alive now
	close(h.hold)                  // all four were held at once: each had a worker of its own

	deadline = time.Now().Add(workIdle + 5*time.Second)
	for runtime.NumGoroutine() > busy-concurrent {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines %s after the work ended, %d while it ran", runtime.NumGoroutine(), workIdle, busy)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
