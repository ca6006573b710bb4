package link

import (
	"errors"
	"fmt"
)

// Errors a caller branches on. Send wraps the request-level ones in a *SendError that says whether the
// request was written to the socket.
var (
	// ErrNotReady means the link is not signed on (connecting, signing on, draining or down): the request was
	// not written and may go to another link.
	ErrNotReady = errors.New("link: not ready")
	// ErrQueueFull means the link's write queue is full: the request was not written.
	ErrQueueFull = errors.New("link: write queue full")
	// ErrTooManyInFlight means the link already has its maximum of requests awaiting a response.
	ErrTooManyInFlight = errors.New("link: too many requests in flight")
	// ErrDuplicateKey means a request with the same matching key is already in flight on the link. The new
	// request is refused; the one in flight keeps its entry.
	ErrDuplicateKey = errors.New("link: duplicate matching key in flight")
	// ErrKey means the request's matching key cannot be built (no MTI, or key fields too long).
	ErrKey = errors.New("link: cannot build matching key")
	// ErrTimeout means no response came before the request's deadline.
	ErrTimeout = errors.New("link: response timeout")
	// ErrConnLost means the connection was lost while the request waited.
	ErrConnLost = errors.New("link: connection lost")
	// ErrClosed means the link was closed.
	ErrClosed = errors.New("link: closed")
	// ErrSTANExhausted means the day's RRN sequence of an acquirer (MaxRRNSequence messages) is used up; the
	// STAN itself wraps around.
	ErrSTANExhausted = errors.New("link: the day's RRN sequence (10 million messages per acquirer) is used up")
)

// SendError is the failure of a request that was accepted by the link (queued). Written is true when the
// write syscall carrying the whole frame returned without error, or (conservatively) when the request was
// given up while its write was in progress; false means the frame never reached the socket, so the request
// may safely go to another link.
type SendError struct {
	Err     error // ErrTimeout, ErrConnLost, ErrClosed or the context's error
	Written bool
}

// Error says what failed and whether the request was written.
func (e *SendError) Error() string {
	return fmt.Sprintf("%v (written=%t)", e.Err, e.Written)
}

// Unwrap returns the cause.
func (e *SendError) Unwrap() error { return e.Err }

// Written reports whether err says the request may have reached the bank: a *SendError with Written set.
// Errors returned before the request was queued (ErrNotReady, ErrQueueFull, ErrDuplicateKey, ...) report
// false.
func Written(err error) bool {
	var se *SendError
	return errors.As(err, &se) && se.Written
}
