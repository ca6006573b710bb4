package channel

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"io"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
)

// echoHandler answers every frame with the same body, framed again, and counts what it saw.
type echoHandler struct {
	frames atomic.Int64
	closed chan string
	hold   chan struct{} // when set, Frame waits on it before answering
}

func (h *echoHandler) Frame(s *Session, body []byte) {
	defer s.Done()
	h.frames.Add(1)
	if h.hold != nil {
		<-h.hold
	}
	out := binary.BigEndian.AppendUint16(nil, uint16(len(body)))
	_ = s.Reply(append(out, body...))
}

func (h *echoHandler) Closed(_ *Session, reason string) {
	if h.closed != nil {
		h.closed <- reason
	}
}

var posFraming = codec.Framing{Length: codec.LenBinary2, TPDU: true, HeaderLen: 6, MaxFrame: 1024}

func startChannel(t *testing.T, cfg Config, h Handler) *Channel {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Framing.Length == 0 {
		cfg.Framing = posFraming
	}
	cfg.Name = "test"
	cfg.Loops = 2
	c := New(cfg, h, nil)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Stop(ctx)
	})
	return c
}

func dial(t *testing.T, c *Channel) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", c.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

func frame(body string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(body))), body...)
}

func readFrame(t *testing.T, nc net.Conn) string {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(nc, hdr[:]); err != nil {
		t.Fatalf("read: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(nc, body); err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(body)
}

// expectClosed waits until the server closes nc.
func expectClosed(t *testing.T, nc net.Conn) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadAll(nc); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("connection still open")
		}
	}
}

const msg = "\x60\x00\x03\x00\x00" + "\x60\x31\x00\x31\x11\x30" + "message"

func TestFramesAreDispatchedAndAnswered(t *testing.T) {
	h := &echoHandler{}
	c := startChannel(t, Config{}, h)
	nc := dial(t, c)
	// a frame split across many writes, then two frames in one write
	f := frame(msg)
	for i := range f {
		if _, err := nc.Write(f[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if got := readFrame(t, nc); got != msg {
		t.Fatalf("reply %q", got)
	}
	two := append(frame(msg+"1"), frame(msg+"2")...)
	_, _ = nc.Write(two)
	got := map[string]bool{readFrame(t, nc): true, readFrame(t, nc): true}
	if !got[msg+"1"] || !got[msg+"2"] {
		t.Fatalf("replies %v", got)
	}
}

func TestKeepAlivesAreToleratedAndNeverAnswered(t *testing.T) {
	h := &echoHandler{}
	c := startChannel(t, Config{}, h)
	nc := dial(t, c)
	_, _ = nc.Write([]byte{0x00, 0x05, 0x60, 0x00, 0x00, 0x00, 0x00}) // POS access router hello
	_, _ = nc.Write([]byte{0x00, 0x00})                               // empty frame
	_, _ = nc.Write(frame(msg))
	if got := readFrame(t, nc); got != msg {
		t.Fatalf("first reply %q, want the message's", got)
	}
	if h.frames.Load() != 1 || c.Stats().KeepAlives != 2 {
		t.Fatalf("frames %d keep-alives %d", h.frames.Load(), c.Stats().KeepAlives)
	}
}

func TestOversizedFrameClosesOnlyThatSession(t *testing.T) {
	h := &echoHandler{closed: make(chan string, 4)}
	c := startChannel(t, Config{}, h)
	good, bad := dial(t, c), dial(t, c)
	_, _ = bad.Write([]byte{0xFF, 0xFF, 0x01})
	expectClosed(t, bad)
	if reason := <-h.closed; reason != "unframeable input: frame: frame length 65535 exceeds 1024 at offset 0" {
		t.Fatalf("close reason %q", reason)
	}
	_, _ = good.Write(frame(msg))
	if got := readFrame(t, good); got != msg {
		t.Fatalf("other session: %q", got)
	}
}

func TestIdleSessionsAreClosedBySweep(t *testing.T) {
	h := &echoHandler{closed: make(chan string, 1)}
	c := startChannel(t, Config{IdleTimeout: 150 * time.Millisecond}, h)
	nc := dial(t, c)
	expectClosed(t, nc)
	if r := <-h.closed; r != "idle timeout" {
		t.Fatalf("reason %q", r)
	}
	if c.Stats().IdleClosed != 1 {
		t.Fatalf("stats %+v", c.Stats())
	}
}

func TestSourceNetworksAndConnectionLimit(t *testing.T) {
	h := &echoHandler{}
	c := startChannel(t, Config{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, h)
	expectClosed(t, dial(t, c))
	if c.Stats().Refused != 1 {
		t.Fatalf("not refused: %+v", c.Stats())
	}
	c2 := startChannel(t, Config{MaxConns: 1}, h)
	first := dial(t, c2)
	_, _ = first.Write(frame(msg))
	readFrame(t, first)
	expectClosed(t, dial(t, c2))
}

func TestTooManyRequestsInFlightClosesTheSession(t *testing.T) {
	h := &echoHandler{hold: make(chan struct{}), closed: make(chan string, 1)}
	c := startChannel(t, Config{MaxInFlight: 2}, h)
	nc := dial(t, c)
	_, _ = nc.Write(append(append(frame(msg), frame(msg)...), frame(msg)...))
	if r := <-h.closed; r != "more than 2 requests in flight" {
		t.Fatalf("reason %q", r)
	}
	close(h.hold)
}

func TestConcurrentSessions(t *testing.T) {
	h := &echoHandler{}
	c := startChannel(t, Config{}, h)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", c.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			for j := 0; j < 20; j++ {
				_, _ = nc.Write(frame(msg))
				if got := readFrame(t, nc); got != msg {
					t.Errorf("reply %q", got)
					return
				}
			}
		}()
	}
	wg.Wait()
	if h.frames.Load() != 1000 {
		t.Fatalf("frames %d", h.frames.Load())
	}
}

func TestTLSChannelSharesFramingAndHandler(t *testing.T) {
	cert := selfSigned(t)
	h := &echoHandler{}
	c := startChannel(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, h)
	pool := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	pool.AddCert(leaf)
	nc, err := tls.Dial("tcp", c.Addr(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_, _ = nc.Write([]byte{0x00, 0x05, 0x60, 0x00, 0x00, 0x00, 0x00})
	_, _ = nc.Write(frame(msg))
	if got := readFrame(t, nc); got != msg {
		t.Fatalf("reply %q", got)
	}
	_, _ = nc.Write([]byte{0xFF, 0xFF})
	expectClosed(t, nc)
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
