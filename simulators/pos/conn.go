package pos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/railswitch/railswitch/codec"
)

// ErrNoReply reports a request whose reply did not come within the timeout (or was dropped on purpose).
var ErrNoReply = errors.New("no reply")

// Fault is a terminal-side fault a test asks for on one transaction.
type Fault string

// Faults.
const (
	NoFault   Fault = ""
	DropReply Fault = "drop-reply" // read the reply and discard it, as if it was lost: the terminal times out
	BadMAC    Fault = "bad-mac"    // send the request with a wrong MAC
	// WrongTotals makes a settlement report one fen more in its debit total than the batch holds, so the
	// host answers "not balanced" and the terminal uploads its batch.
	WrongTotals Fault = "wrong-totals"
)

// ParseFault checks a fault name.
func ParseFault(s string) (Fault, error) {
	switch f := Fault(s); f {
	case NoFault, DropReply, BadMAC, WrongTotals:
		return f, nil
	}
	return "", fmt.Errorf("unknown fault %q (want drop-reply, bad-mac or wrong-totals)", s)
}

// link is one TCP connection to the host, dialled on demand and closed after a timeout so a late reply
// can never be taken for the next one's, as dial-up and GPRS terminals hang up.
type link struct {
	addr    string
	timeout time.Duration
	framing codec.Framing
	spec    *codec.Spec
	conn    net.Conn
	rbuf    []byte
}

func (l *link) close() {
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
	l.rbuf = l.rbuf[:0]
}

// exchange sends req and returns the reply frame decoded, skipping keep-alives. Without a reply within
// the timeout it returns ErrNoReply and hangs up.
func (l *link) exchange(ctx context.Context, req *codec.Message, fault Fault) (*codec.Message, error) {
	frame, err := req.AppendFrame(l.framing, nil)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", req.MTI(), err)
	}
	deadline := time.Now().Add(l.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if l.conn == nil {
		d := net.Dialer{Deadline: deadline}
		if l.conn, err = d.DialContext(ctx, "tcp", l.addr); err != nil {
			return nil, fmt.Errorf("connect to %s: %w", l.addr, err)
		}
	}
	conn := l.conn
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn.SetDeadline(deadline)
	if _, err := conn.Write(frame); err != nil {
		l.close()
		return nil, fmt.Errorf("send %s: %w", req.MTI(), err)
	}
	for {
		body, used, err := l.framing.Split(l.rbuf)
		if err == nil {
			if l.framing.IsKeepAlive(body) {
				l.rbuf = append(l.rbuf[:0], l.rbuf[used:]...)
				continue
			}
			rep := codec.NewMessage(l.spec)
			uerr := rep.UnpackFrame(l.framing, append([]byte(nil), body...))
			l.rbuf = append(l.rbuf[:0], l.rbuf[used:]...)
			if fault == DropReply {
				l.close()
				return nil, fmt.Errorf("%w to %s (dropped by fault %s)", ErrNoReply, req.MTI(), fault)
			}
			if uerr != nil {
				l.close()
				return nil, fmt.Errorf("reply to %s does not decode: %w", req.MTI(), uerr)
			}
			return rep, nil
		}
		if err != codec.ErrNeedMore {
			l.close()
			return nil, fmt.Errorf("reply to %s: %w", req.MTI(), err)
		}
		if len(l.rbuf) == cap(l.rbuf) {
			l.rbuf = append(l.rbuf, make([]byte, 4096)...)[:len(l.rbuf)]
		}
		n, rerr := conn.Read(l.rbuf[len(l.rbuf):cap(l.rbuf)])
		l.rbuf = l.rbuf[:len(l.rbuf)+n]
		if rerr != nil {
			l.close()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var ne net.Error
			if errors.As(rerr, &ne) && ne.Timeout() {
				return nil, fmt.Errorf("%w to %s within %s", ErrNoReply, req.MTI(), l.timeout)
			}
			return nil, fmt.Errorf("%w to %s: connection: %v", ErrNoReply, req.MTI(), rerr)
		}
	}
}
