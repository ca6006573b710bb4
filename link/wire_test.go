package link

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/simulators/bank"
	"github.com/railswitch/railswitch/specs"
)

func TestBadFrameFromBankClosesTheConnectionWithAReason(t *testing.T) {
	small, err := specs.Parse("small.yaml", []byte("name: small-frames\nextends: iso87-ascii\nframing: {length: ascii4, max_frame: 512}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, header string
		want         string
	}{
		{"length beyond the maximum", "0513", "exceeds 512"},
		{"length header not digits", "12AB", "not 4 ASCII digits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBank(t)
			b.spec = small
			b.start()
			cfg := testConfig(t, b)
			cfg.Backoff = Backoff{Base: time.Hour, Max: time.Hour} // stay down after the bad frame
			l := startLink(t, cfg)
			waitState(t, l, StateReady)
			b.last().nc.Write([]byte(tc.header))
			waitFor(t, "the link to drop the connection", func() bool { return l.Status().LastError != "" })
			if st := l.Status(); !strings.Contains(st.LastError, "bad frame from bank") || !strings.Contains(st.LastError, tc.want) {
				t.Errorf("last error %q, want a bad frame that %s", st.LastError, tc.want)
			}
		})
	}
}

func TestKeepAliveAndUndecodableFramesAreSkipped(t *testing.T) {
	b := newFakeBank(t)
	b.handle = networkOnly(func(c *bankConn, req *codec.Message) {
		c.nc.Write([]byte("0000"))      // keep-alive
		c.nc.Write([]byte("0005zzzzz")) // not a message
		c.send(answer(req, "00"))
	})
	b.start()
	l := startLink(t, testConfig(t, b))
	waitState(t, l, StateReady)
	resp, err := l.Send(context.Background(), purchase(t, b.spec, "000080", "TERM0001"), soon())
	if err != nil {
		t.Fatal(err)
	}
	resp.Release()
	if l.State() != StateReady {
		t.Errorf("state %s after a keep-alive and a bad message", l.State())
	}
}

// selfSigned returns a server certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test bank"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, roots
}

func TestTLSLinkSignsOnAndCarriesRequests(t *testing.T) {
	cert, roots := selfSigned(t)
	for _, tc := range []struct {
		name  string
		roots *x509.CertPool
		ready bool
	}{
		{"trusted certificate", roots, true},
		{"untrusted certificate", x509.NewCertPool(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBank(t)
			b.ln = tls.NewListener(b.ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
			b.start()
			cfg := testConfig(t, b)
			cfg.TLS = &tls.Config{RootCAs: tc.roots, MinVersion: tls.VersionTLS12}
			l := startLink(t, cfg)
			if !tc.ready {
				waitFor(t, "a failed handshake", func() bool { return strings.Contains(l.Status().LastError, "tls handshake") })
				return
			}
			waitState(t, l, StateReady)
			resp, err := l.Send(context.Background(), purchase(t, b.spec, "000090", "TERM0001"), soon())
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Release()
			if resp.String(39) != "00" {
				t.Errorf("39=%q", resp.String(39))
			}
		})
	}
}

func TestPurchaseThroughTheBankSimulator(t *testing.T) {
	spec := testSpec(t)
	srv, err := bank.New(bank.Config{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { srv.Serve(ln); close(served) }()
	defer func() { srv.Close(); <-served }()

	cfg := Config{ID: LinkID{"sim", "a", 0}, Address: ln.Addr().String(), Spec: spec, Counter: newCounter(t),
		EchoInterval: 20 * time.Millisecond}
	l := startLink(t, cfg)
	waitFor(t, "an echo answered by the simulator", func() bool { return !l.Status().LastEcho.IsZero() })
	req := purchase(t, spec, "000100", "TERM0001")
	req.SetString(2, "4012345678909") // published test card (shared/reference)
	req.SetString(49, "156")
	resp, err := l.Send(context.Background(), req, soon())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	if resp.MTI() != "0210" || resp.String(39) != "00" || resp.String(11) != "000100" {
		t.Errorf("response %s 39=%q 11=%q, want 0210 00 000100", resp.MTI(), resp.String(39), resp.String(11))
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	spec := testSpec(t)
	counter := newCounter(t)
	ok := Config{Address: "127.0.0.1:1", Spec: spec, Counter: counter}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no spec", func(c *Config) { c.Spec = nil }},
		{"no address", func(c *Config) { c.Address = "" }},
		{"no counter", func(c *Config) { c.Counter = nil }},
		{"key field out of range", func(c *Config) { c.KeyFields = []int{11, 200} }},
		{"jitter above 1", func(c *Config) { c.Backoff.Jitter = 2 }},
	} {
		cfg := ok
		tc.mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, err := New(ok); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

func TestKeyPairsRequestsWithTheirResponses(t *testing.T) {
	spec := testSpec(t)
	k, _ := newKeyer([]int{11, 41})
	build := func(mti, stan, tid string) Key {
		m := codec.NewMessage(spec)
		m.SetMTI(mti)
		m.SetString(11, stan)
		if tid != "" {
			m.SetString(41, tid)
		}
		key, err := k.key(m)
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	for _, tc := range []struct {
		a, b [3]string
		same bool
	}{
		{[3]string{"0200", "000001", "T1"}, [3]string{"0210", "000001", "T1"}, true},
		{[3]string{"0420", "000001", "T1"}, [3]string{"0430", "000001", "T1"}, true},
		{[3]string{"0421", "000001", "T1"}, [3]string{"0430", "000001", "T1"}, true},
		{[3]string{"0800", "000001", ""}, [3]string{"0810", "000001", ""}, true},
		{[3]string{"0200", "000001", "T1"}, [3]string{"0410", "000001", "T1"}, false},
		{[3]string{"0200", "000001", "T1"}, [3]string{"0210", "000001", "T2"}, false},
		{[3]string{"0200", "000001", "T1"}, [3]string{"0210", "000002", "T1"}, false},
	} {
		ka, kb := build(tc.a[0], tc.a[1], tc.a[2]), build(tc.b[0], tc.b[1], tc.b[2])
		if (ka == kb) != tc.same {
			t.Errorf("%v and %v: same key %t, want %t", tc.a, tc.b, ka == kb, tc.same)
		}
	}
	// The length bytes keep 32="1", 33="23" apart from 32="12", 33="3".
	vk, _ := newKeyer([]int{32, 33})
	var keys [2]Key
	for i, v := range [2][2]string{{"1", "23"}, {"12", "3"}} {
		m := codec.NewMessage(spec)
		m.SetMTI("0200")
		m.SetString(32, v[0])
		m.SetString(33, v[1])
		keys[i], _ = vk.key(m)
	}
	if keys[0] == keys[1] {
		t.Error("variable key fields run together")
	}
	long, _ := newKeyer([]int{43, 48})
	m := codec.NewMessage(spec)
	m.SetMTI("0200")
	m.SetString(43, strings.Repeat("x", 40))
	m.SetString(48, strings.Repeat("y", 40))
	if _, err := long.key(m); err == nil {
		t.Error("a key of 80 bytes accepted")
	}
}
