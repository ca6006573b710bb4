package link

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/railswitch/railswitch/codec"
	"go.uber.org/zap"
)

// writeBatch is the most frames the writer gathers into one write.
const writeBatch = 64

// conn is one connection of a link: its reader and writer goroutines and how it ended.
type conn struct {
	l      *Link
	nc     net.Conn
	ctx    context.Context // ends with the connection
	cancel context.CancelFunc
	dead   chan struct{} // closed by the first fail
	once   sync.Once
	err    error // why the connection ended; set before dead is closed
	wg     sync.WaitGroup
	stop   func() bool
}

func (l *Link) newConn(nc net.Conn) *conn {
	c := &conn{l: l, nc: nc, dead: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(l.hard)
	c.stop = context.AfterFunc(c.ctx, func() { c.fail(ErrClosed) })
	c.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
	return c
}

// fail ends the connection for the first reason given; later calls do nothing.
func (c *conn) fail(err error) {
	c.once.Do(func() {
		c.err = err
		close(c.dead)
		c.stop()
		c.cancel()
		c.nc.Close()
	})
}

// readBufSize bounds the reader's buffer: two of the largest frames the framing accepts.
func readBufSize(f codec.Framing) int {
	limit, hdr := 9999, 4
	if f.Length == codec.LenBinary2 {
		limit = 65535
	}
	if f.Length != codec.LenASCII4 {
		hdr = 2
	}
	if f.MaxFrame > 0 && f.MaxFrame < limit {
		limit = f.MaxFrame
	}
	return max(2*(hdr+limit), 16<<10)
}

// readLoop splits frames out of a bounded buffer; a frame the framing refuses (length beyond the maximum,
// bad length header) ends the connection.
func (c *conn) readLoop() {
	defer c.wg.Done()
	l := c.l
	buf := make([]byte, readBufSize(l.fr))
	n := 0
	for {
		got, err := c.nc.Read(buf[n:])
		n += got
		off := 0
		for off < n {
			body, used, serr := l.fr.Split(buf[off:n])
			if serr == codec.ErrNeedMore {
				break
			}
			if serr != nil {
				c.fail(fmt.Errorf("bad frame from bank: %w", serr))
				return
			}
			off += used
			l.handleFrame(c, body)
		}
		n = copy(buf, buf[off:n])
		if err != nil {
			c.fail(fmt.Errorf("read: %w", err))
			return
		}
	}
}

// writeLoop writes queued frames, several per write when they queue up. A frame is written when the write
// that carried all of its bytes returned; frames given up before the writer took them are skipped.
func (c *conn) writeLoop() {
	defer c.wg.Done()
	l := c.l
	var (
		batch []item
		ends  []int
		wbuf  []byte
	)
	for {
		select {
		case <-c.ctx.Done():
			return
		case it := <-l.queue:
			batch = append(batch[:0], it)
		}
		// When other requests are in flight, let senders that are runnable queue their frames first: the
		// writer runs as soon as the first sender blocks on its answer, so without this a batch stays at one
		// frame, each paying a write and the bank's wake-up. A lone request is written at once.
		if len(l.queue) == 0 && l.othersInFlight() {
			runtime.Gosched()
		}
	gather:
		for len(batch) < writeBatch {
			select {
			case it := <-l.queue:
				batch = append(batch, it)
			default:
				break gather
			}
		}
		wbuf, ends = wbuf[:0], ends[:0]
		kept := batch[:0]
		for _, it := range batch {
			if it.c == nil || it.c.state.CompareAndSwap(wQueued, wWriting) {
				wbuf = append(wbuf, *it.frame...)
				ends = append(ends, len(wbuf))
				kept = append(kept, it)
			}
			l.putFrame(it.frame)
		}
		clear(batch[len(kept):])
		if len(kept) == 0 {
			continue
		}
		c.nc.SetWriteDeadline(time.Now().Add(l.cfg.WriteTimeout))
		n, err := c.nc.Write(wbuf)
		for i, it := range kept {
			if it.c == nil {
				continue
			}
			if ends[i] <= n {
				it.c.state.Store(wWritten)
			} else {
				it.c.state.Store(wFailed)
			}
		}
		clear(kept)
		if err != nil {
			c.fail(fmt.Errorf("write: %w", err))
			return
		}
	}
}

// othersInFlight reports whether more than one request waits for its answer (the writer's own among them).
func (l *Link) othersInFlight() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending) > 1
}

// handleFrame dispatches one frame from the bank: a response to its pending request (or to OnUnmatched when
// none waits for it), a bank-initiated message to answerBank.
func (l *Link) handleFrame(c *conn, body []byte) {
	if l.fr.IsKeepAlive(body) {
		return
	}
	r := l.resps.Get().(*Response)
	r.buf = append(r.buf[:0], body...)
	if err := r.UnpackFrame(l.fr, r.buf); err != nil {
		l.cfg.Log.Warn("undecodable frame from bank dropped", zap.Stringer("link", l.cfg.ID), zap.Error(err))
		r.Release()
		return
	}
	if isRequest(r.MTIBytes()) {
		l.answerBank(c, r)
		return
	}
	key, err := l.keys.key(r.Message)
	var cl *call
	if err == nil {
		l.mu.Lock()
		if cl = l.pending[key]; cl != nil {
			l.removeLocked(key, cl)
		}
		l.mu.Unlock()
	}
	if cl == nil {
		l.cfg.Log.Info("unmatched response from bank", zap.Stringer("link", l.cfg.ID),
			zap.ByteString("mti", r.MTIBytes()), zap.String("stan", r.String(11)), zap.String("code", r.String(39)))
		if l.cfg.OnUnmatched != nil {
			l.cfg.OnUnmatched(l.cfg.ID, r)
		} else {
			r.Release()
		}
		return
	}
	cl.resp = r
	if !cl.internal {
		l.emit(Success)
	}
	close(cl.done)
}

// answerBank answers a bank-initiated 0800: sign-on, sign-off and echo with 00, a key change as OnKeyChange
// says. Other bank-initiated messages are logged and dropped: the link routes none.
func (l *Link) answerBank(c *conn, req *Response) {
	if string(req.MTIBytes()) != "0800" {
		l.cfg.Log.Warn("bank-initiated message not handled", zap.Stringer("link", l.cfg.ID),
			zap.ByteString("mti", req.MTIBytes()))
		req.Release()
		return
	}
	resp := codec.NewMessage(l.cfg.Spec)
	resp.SetMTI("0810")
	for _, f := range [...]int{7, 11, 70} {
		resp.CopyField(f, req.Message)
	}
	switch code := req.String(70); code {
	case l.cfg.KeyChangeCode:
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer req.Release()
			rc := "96"
			if l.cfg.OnKeyChange != nil {
				rc = l.cfg.OnKeyChange(c.ctx, req.Message, resp)
			}
			l.reply(resp, rc)
		}()
		return
	case l.cfg.SignOnCode, l.cfg.SignOffCode, l.cfg.EchoCode, "001", "002", "301":
		l.reply(resp, "00")
	default:
		l.cfg.Log.Warn("bank 0800 with unknown network management code", zap.Stringer("link", l.cfg.ID),
			zap.String("code", code))
		l.reply(resp, "12")
	}
	req.Release()
}

// reply queues an answer to the bank without waiting: when the queue is full the answer is dropped (the
// bank repeats its echo or sign-on).
func (l *Link) reply(resp *codec.Message, code string) {
	fb := l.frames.Get().(*[]byte)
	var err error
	if err = resp.SetString(39, code); err == nil {
		*fb, err = resp.AppendFrame(l.fr, (*fb)[:0])
	}
	if err != nil {
		l.cfg.Log.Error("cannot build answer to bank", zap.Stringer("link", l.cfg.ID), zap.Error(err))
		l.putFrame(fb)
		return
	}
	select {
	case l.queue <- item{frame: fb}:
	default:
		l.cfg.Log.Warn("write queue full, answer to bank dropped", zap.Stringer("link", l.cfg.ID))
		l.putFrame(fb)
	}
}
