package link

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/railswitch/railswitch/codec"
)

// Write states of a request's frame.
const (
	wQueued    int32 = iota // in the write queue
	wWriting                // taken by the writer; the write has not returned
	wWritten                // the write carrying the whole frame returned without error
	wAbandoned              // given up before the writer took it: it will never be written
	wFailed                 // the write failed before the frame's last byte
)

// call is one request awaiting its response.
type call struct {
	deadline time.Time
	internal bool // the link's own 0800: no events, not counted as in flight
	state    atomic.Int32
	done     chan struct{} // closed once resp or err is set
	resp     *Response
	err      error
}

// abandon stops a queued frame from being written and reports whether the request was (or may have been)
// written.
func (c *call) abandon() bool {
	if c.state.CompareAndSwap(wQueued, wAbandoned) {
		return false
	}
	s := c.state.Load()
	return s == wWriting || s == wWritten
}

// item is one frame for the writer; c is nil for answers to the bank.
type item struct {
	frame *[]byte
	c     *call
}

// Response is a message from the bank, decoded from the link's own copy of its frame. Release returns it
// to the link for reuse once the caller is done with it (optional; do not use it afterwards).
type Response struct {
	*codec.Message
	buf  []byte
	link *Link
}

// Release hands the response back to its link's pool. Call it at most once.
func (r *Response) Release() {
	if r == nil || r.link == nil {
		return
	}
	r.Reset()
	r.buf = r.buf[:0]
	r.link.resps.Put(r)
}

func (l *Link) putFrame(b *[]byte) {
	if cap(*b) <= 64<<10 {
		*b = (*b)[:0]
		l.frames.Put(b)
	}
}

func (l *Link) removeLocked(k Key, c *call) {
	delete(l.pending, k)
	if !c.internal {
		l.external--
	}
}

// Send writes req to the bank and waits for the response that matches it (same key fields, response MTI of
// req's class), until deadline or until ctx ends. A zero deadline means NetTimeout from now.
//
// Before the request is queued Send can refuse it with ErrNotReady, ErrClosed, ErrKey, ErrDuplicateKey,
// ErrTooManyInFlight or ErrQueueFull: it was not written. Afterwards a failure is a *SendError (ErrTimeout,
// ErrConnLost, ErrClosed or ctx's error) saying whether it was written. A response after the deadline goes to
// OnUnmatched.
func (l *Link) Send(ctx context.Context, req *codec.Message, deadline time.Time) (*Response, error) {
	if deadline.IsZero() {
		deadline = l.cfg.Now().Add(l.cfg.NetTimeout)
	}
	return l.exchange(ctx, req, deadline, false)
}

func (l *Link) exchange(ctx context.Context, req *codec.Message, deadline time.Time, internal bool) (*Response, error) {
	key, err := l.keys.key(req)
	if err != nil {
		return nil, err
	}
	fb := l.frames.Get().(*[]byte)
	if *fb, err = req.AppendFrame(l.fr, (*fb)[:0]); err != nil {
		l.putFrame(fb)
		return nil, fmt.Errorf("link %s: %w", l.cfg.ID, err)
	}
	c := &call{deadline: deadline, internal: internal, done: make(chan struct{})}

	l.mu.Lock()
	if err := l.admitLocked(key, internal); err != nil {
		l.mu.Unlock()
		l.putFrame(fb)
		return nil, err
	}
	select {
	case l.queue <- item{frame: fb, c: c}:
	default:
		l.mu.Unlock()
		l.putFrame(fb)
		return nil, ErrQueueFull
	}
	l.pending[key] = c
	if !internal {
		l.external++
	}
	l.mu.Unlock()

	select {
	case <-c.done:
	case <-ctx.Done():
		l.mu.Lock()
		mine := l.pending[key] == c
		if mine {
			l.removeLocked(key, c)
		}
		l.mu.Unlock()
		if mine {
			return nil, &SendError{Err: ctx.Err(), Written: c.abandon()}
		}
		<-c.done // a response, timeout or loss got there first
	}
	if c.err != nil {
		return nil, c.err
	}
	return c.resp, nil
}

// admitLocked says whether a request may be queued now.
func (l *Link) admitLocked(key Key, internal bool) error {
	switch {
	case l.closed && !internal:
		return ErrClosed
	case l.drained && !internal:
		return fmt.Errorf("%w: drained", ErrNotReady)
	case l.state == StateReady, internal && (l.state == StateSigningOn || l.state == StateDraining):
	default:
		return fmt.Errorf("%w: %s", ErrNotReady, l.state)
	}
	if _, dup := l.pending[key]; dup {
		return ErrDuplicateKey
	}
	if !internal && l.external >= l.cfg.MaxInFlight {
		return ErrTooManyInFlight
	}
	return nil
}

// sweep fails requests past their deadline, every SweepInterval, until stop is closed.
func (l *Link) sweep(stop <-chan struct{}) {
	defer l.wg.Done()
	t := time.NewTicker(l.cfg.SweepInterval)
	defer t.Stop()
	var expired []*call
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := l.cfg.Now()
		l.mu.Lock()
		for k, c := range l.pending {
			if !c.deadline.After(now) {
				l.removeLocked(k, c)
				expired = append(expired, c)
			}
		}
		l.mu.Unlock()
		for i, c := range expired {
			c.err = &SendError{Err: ErrTimeout, Written: c.abandon()}
			if !c.internal {
				l.emit(Timeout)
			}
			close(c.done)
			expired[i] = nil
		}
		expired = expired[:0]
	}
}
