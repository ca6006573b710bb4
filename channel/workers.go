package channel

import "time"

// workIdle is how long a worker waits for the next frame before it exits.
const workIdle = 2 * time.Second

// work is one frame for the handler.
type work struct {
	s     *Session
	frame []byte
}

// dispatchWarm hands a frame to an idle worker goroutine, or starts a new one when none is idle. A request's
// goroutine grows its stack well past the initial 8 KB (the flow's frames are large), and a fresh goroutine per
// request pays that growth and copy every time; a worker keeps its grown stack for the next request. Workers
// exit after workIdle without work, so a burst leaves no goroutines behind, and the number at work is bounded
// by the frames in flight (the channel's limits), as before.
func (c *Channel) dispatchWarm(s *Session, frame []byte) {
	select {
	case c.idle <- work{s, frame}:
	default:
		go c.worker(work{s, frame})
	}
}

func (c *Channel) worker(w work) {
	t := time.NewTimer(workIdle)
	defer t.Stop()
	for {
		c.dispatch(w.s, w.frame)
		t.Reset(workIdle)
		select {
		case w = <-c.idle:
		case <-t.C:
			return
		case <-c.done:
			return
		}
	}
}
