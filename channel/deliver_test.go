package channel

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"
)

// deliverHandler answers each frame with Deliver, after waiting on hold when set, and reports the outcome.
type deliverHandler struct {
	hold    chan struct{}
	outcome chan error
}

func (h *deliverHandler) Frame(s *Session, body []byte) {
	defer s.Done()
	if h.hold != nil {
		<-h.hold
	}
	out := binary.BigEndian.AppendUint16(nil, uint16(len(body)))
	h.outcome <- s.Deliver(append(out, body...))
}

func (h *deliverHandler) Closed(*Session, string) {}

// TestDeliverReportsWhetherTheReplyLeft: Deliver returns nil once the reply was handed to the socket (the
// terminal reads it), and an error when the terminal hung up before the reply was written, on the gnet and
// on the TLS acceptor alike.
func TestDeliverReportsWhetherTheReplyLeft(t *testing.T) {
	cert := selfSigned(t)
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	kinds := []struct {
		name string
		tls  *tls.Config
	}{
		{"gnet", nil},
		{"tls", &tls.Config{Certificates: []tls.Certificate{cert}}},
	}
	for _, kind := range kinds {
		for _, hangUp := range []bool{false, true} {
			name := kind.name + "/reply delivered"
			if hangUp {
				name = kind.name + "/terminal hung up first"
			}
			t.Run(name, func(t *testing.T) {
				h := &deliverHandler{hold: make(chan struct{}), outcome: make(chan error, 1)}
				c := startChannel(t, Config{TLS: kind.tls}, h)
				var nc net.Conn
				if kind.tls != nil {
					tc, err := tls.Dial("tcp", c.Addr(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { tc.Close() })
					nc = tc
				} else {
					nc = dial(t, c)
				}
				if _, err := nc.Write(frame(msg)); err != nil {
					t.Fatal(err)
				}
				waitFor(t, func() bool { return c.Stats().Frames == 1 })
				if hangUp {
					nc.Close()
					waitFor(t, func() bool { return c.Stats().Open == 0 })
				}
				close(h.hold)
				var err error
				select {
				case err = <-h.outcome:
				case <-time.After(DeliverTimeout + 5*time.Second):
					t.Fatal("Deliver did not return")
				}
				if hangUp {
					if err == nil {
						t.Fatal("Deliver reported a reply delivered to a terminal that hung up")
					}
					return
				}
				if err != nil {
					t.Fatalf("Deliver: %v", err)
				}
				if got := readFrame(t, nc); got != msg {
					t.Fatalf("reply %q", got)
				}
			})
		}
	}
}

// TestDeliverOnAClosedSessionFailsAtOnce: a session already closed refuses without waiting.
func TestDeliverOnAClosedSessionFailsAtOnce(t *testing.T) {
	s := &Session{ch: &Channel{}, conn: nopConn{}}
	s.Close("test")
	start := time.Now()
	if err := s.Deliver([]byte{0, 0}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Deliver on a closed session: %v, want ErrClosed", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("Deliver waited on a closed session")
	}
}

type nopConn struct{}

func (nopConn) write(_ []byte, done func(error)) error { done(nil); return nil }
func (nopConn) close()                                 {}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
