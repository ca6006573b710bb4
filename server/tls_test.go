package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// testCA makes a CA and a server certificate for localhost signed by it; it returns the CA's PEM.
func testCA(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test bank CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestBankLinkOverTLS moves bank A behind a TLS listener and configures its links with tls: the links sign on
// over TLS (checking the bank's certificate against the configured CA) and purchases are approved.
func TestBankLinkOverTLS(t *testing.T) {
	log := zaptest.NewLogger(t)
	dir := t.TempDir()
	d, err := StartDemo(context.Background(), dir, DemoAddrs{}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.BankA.Close(); _ = d.BankB.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = d.Switch.Stop(ctx)

	caPEM, cert := testCA(t)
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.BankA.Serve(tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}})) }()
	edit := func(name, old, new string) {
		p := filepath.Join(dir, name)
		b, _ := os.ReadFile(p)
		if !strings.Contains(string(b), old) {
			t.Fatalf("%s has no %q", name, old)
		}
		_ = os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o600)
	}
	edit("routes.yaml", d.BankAddrs[0], l.Addr().String())
	edit("config.yaml", "  bank-a: &bank\n", "  bank-a: &bank\n    tls: {ca_file: ca.pem, server_name: localhost}\n")
	edit("config.yaml", "    <<: *bank\n", "    <<: *bank\n    tls: null\n")

	sw := startFromDir(t, dir, log)
	waitFor(t, "bank links over TLS", 5*time.Second, func() bool { ok, _ := sw.Ready(); return ok })
	tt := dialTerminal(t, sw.Channels()[0].Addr(), "22003600", "104512541110001")
	tt.signOn()
	if rep := tt.purchase(cupCard, 700); rep.String(39) != "00" {
		t.Fatalf("purchase through the TLS link answered %q", rep.String(39))
	}
}
