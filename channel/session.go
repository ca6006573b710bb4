package channel

import (
	"errors"
	"sync/atomic"
	"time"
)

// ErrClosed is returned when replying on a session that has been closed.
var ErrClosed = errors.New("channel: session closed")

// ErrSlowReader is returned (and the session closed) when a terminal does not read its replies and the bytes
// queued for it exceed the channel's limit.
var ErrSlowReader = errors.New("channel: slow reader, output queue over its limit")

// conn is what a session writes to: a gnet connection or a TLS connection.
type conn interface {
	// write sends one whole frame; done is called exactly once, with nil once the bytes have been handed to
	// the socket or with the error that stopped them, also when write itself returns that error.
	write(frame []byte, done func(error)) error
	// close closes the connection; safe from any goroutine, more than once.
	close()
}

// Session is one terminal connection. Its methods are safe for concurrent use.
type Session struct {
	id       uint64
	ch       *Channel
	remote   string
	conn     conn
	opened   time.Time
	active   atomic.Int64 // unix nanos of the last frame or keep-alive received
	inFlight atomic.Int32
	queued   atomic.Int64 // bytes handed to the connection and not yet written
	closed   atomic.Bool
	reason   atomic.Pointer[string]
	value    atomic.Pointer[any]
}

// ID is unique among the sessions of the process.
func (s *Session) ID() uint64 { return s.id }

// Channel is the name of the channel the session came in on.
func (s *Session) Channel() string { return s.ch.cfg.Name }

// Remote is the terminal's address as host:port.
func (s *Session) Remote() string { return s.remote }

// Value returns what the handler attached with SetValue (for example the terminal it identified).
func (s *Session) Value() any {
	if p := s.value.Load(); p != nil {
		return *p
	}
	return nil
}

// SetValue attaches handler data to the session.
func (s *Session) SetValue(v any) { s.value.Store(&v) }

// Reply sends one frame (length header included, as codec.Message.AppendFrame writes it) to the terminal. The
// session takes ownership of frame. It refuses when the session is closed, and closes the session when the
// terminal has stopped reading and too many bytes wait for it.
func (s *Session) Reply(frame []byte) error { return s.reply(frame, nil) }

// DeliverTimeout bounds how long Deliver waits for a write's outcome: an event loop that stopped never
// reports one.
const DeliverTimeout = writeTimeout

// Deliver sends one frame as Reply does and waits for the outcome of the write: nil once the bytes have been
// handed to the terminal's socket, an error when the session was closed, the write failed or no outcome came
// within DeliverTimeout. The caller learns whether a reply (an approval) left the switch; bytes handed to the
// socket may still be lost with the connection, which the terminal then treats as a reply not received.
// Deliver blocks its caller, never an event loop.
func (s *Session) Deliver(frame []byte) error {
	res := make(chan error, 1)
	_ = s.reply(frame, func(err error) { res <- err }) // the outcome comes through the callback in every case
	t := time.NewTimer(DeliverTimeout)
	defer t.Stop()
	select {
	case err := <-res:
		return err
	case <-t.C:
		return ErrNoOutcome
	}
}

// ErrNoOutcome is returned by Deliver when a write reported no outcome in time.
var ErrNoOutcome = errors.New("channel: no outcome of the write in time")

// reply hands frame to the connection. outcome, when not nil, is called exactly once with the write's
// result, also when reply refuses at once (and returns the same error).
func (s *Session) reply(frame []byte, outcome func(error)) error {
	if outcome == nil {
		outcome = func(error) {}
	}
	if s.closed.Load() {
		outcome(ErrClosed)
		return ErrClosed
	}
	n := int64(len(frame))
	if q := s.queued.Add(n); s.ch.cfg.MaxQueuedBytes > 0 && q > int64(s.ch.cfg.MaxQueuedBytes) {
		s.queued.Add(-n)
		s.Close("slow reader: output queue over its limit")
		outcome(ErrSlowReader)
		return ErrSlowReader
	}
	return s.conn.write(frame, func(err error) {
		s.queued.Add(-n)
		outcome(err)
	})
}

// Done tells the channel that the handler finished one frame, so the terminal may send another.
func (s *Session) Done() { s.inFlight.Add(-1) }

// Close closes the session with a reason that is logged.
func (s *Session) Close(reason string) {
	if s.closed.CompareAndSwap(false, true) {
		s.reason.Store(&reason)
		s.conn.close()
	}
}

// InFlight is the number of frames the handler has not finished.
func (s *Session) InFlight() int { return int(s.inFlight.Load()) }

func (s *Session) touch(now time.Time) { s.active.Store(now.UnixNano()) }

func (s *Session) closeReason() string {
	if p := s.reason.Load(); p != nil {
		return *p
	}
	return "closed by peer"
}
