package payshield

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/railswitch/railswitch/hsm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Published values from reference/hsm.md (the only key and card values allowed in tests).
const (
	keyA      = "0123456789ABCDEFFEDCBA9876543210" // X9.24-1 BDK
	keyB      = "70F2A84CCBC2AE8625CBB0F2C22AB923" // CSDN TMK
	keyAES    = "FEDCBA9876543210F1F1F1F1F1F1F1F1" // X9.24-3 BDK
	pin       = "1234"
	pan       = "4012345678909"
	dukptKSN  = "FFFF9876543210E00001"
	dukptPIN  = "1B9C1845EB993A7A"
	refCBData = "000614D3E09CD3B6456E01" // ut-codec-payshield CB reply after the header
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// importClear puts a known clear key under the module's LMK through a key ceremony: for TDES the
// components K and 0101...01 form K again once parity is set; for AES, K and zeros.
func importClear(t testing.TB, sw *hsm.Software, name string, spec hsm.Spec, clearHex string) hsm.Key {
	t.Helper()
	k := unhex(t, clearHex)
	other := make([]byte, len(k))
	if spec.Algorithm == hsm.AlgTDES {
		for i := range other {
			other[i] = 1
		}
	}
	kcv, err := hsm.KCV(k, spec.Algorithm == hsm.AlgAES, 3)
	if err != nil {
		t.Fatal(err)
	}
	key, err := sw.ImportComponents(context.Background(), hsm.ComponentsRequest{Name: name, Spec: spec,
		Components: []hsm.Component{{Value: k}, {Value: other}}, KCV: hex.EncodeToString(kcv)})
	if err != nil {
		t.Fatal(err)
	}
	return key
}

type fixture struct {
	sw                                   *hsm.Software
	cl                                   *Client
	addr                                 string
	accepted                             *atomic.Int32
	tpk, zpkA, zpkB, zpkAES, tak, zakAES hsm.Key
	tmk, zmk, tdk, dek, bdk              hsm.Key
}

// countingListener counts accepted connections and can hand the first ones to a misbehaving handler.
type countingListener struct {
	net.Listener
	n       *atomic.Int32
	misfits int             // the first misfits connections go to misfit instead of the server
	misfit  func(net.Conn)  // runs in its own goroutine
	wg      *sync.WaitGroup // waits for misfit goroutines
	mu      sync.Mutex      // guards conns
	conns   []net.Conn      // misfit connections, closed at cleanup
}

func (l *countingListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if int(l.n.Add(1)) > l.misfits {
			return nc, nil
		}
		l.mu.Lock()
		l.conns = append(l.conns, nc)
		l.mu.Unlock()
		l.wg.Add(1)
		go func() { defer l.wg.Done(); l.misfit(nc) }()
	}
}

func (l *countingListener) closeMisfits() {
	l.mu.Lock()
	for _, c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// newFixture starts `hsm serve` on 127.0.0.1:0 with a fresh LMK and a client with cfg (Addr filled in).
func newFixture(t testing.TB, cfg Config, misfits int, misfit func(net.Conn)) *fixture {
	t.Helper()
	lmk, _, err := hsm.GenerateLMK(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{sw: hsm.NewSoftware(lmk, nil), accepted: new(atomic.Int32)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln, n: f.accepted, misfits: misfits, misfit: misfit, wg: new(sync.WaitGroup)}
	srv := &Server{Module: f.sw, HeaderLen: cfg.HeaderLen}
	done := make(chan struct{})
	go func() { srv.Serve(cl); close(done) }()
	f.addr = ln.Addr().String()
	cfg.Addr = f.addr
	if f.cl, err = NewClient(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.cl.Close()
		srv.Close()
		<-done
		cl.closeMisfits()
	})
	tdes := func(t hsm.KeyType, n int) hsm.Spec { return hsm.Spec{Type: t, Algorithm: hsm.AlgTDES, Length: n} }
	f.tpk = importClear(t, f.sw, "term/1/pik", tdes(hsm.KeyTPK, 16), keyA)
	f.zpkA = importClear(t, f.sw, "acq/a/zpk", tdes(hsm.KeyZPK, 16), keyA)
	f.zpkB = importClear(t, f.sw, "acq/b/zpk", tdes(hsm.KeyZPK, 16), keyB)
	f.zpkAES = importClear(t, f.sw, "acq/c/zpk", hsm.Spec{Type: hsm.KeyZPK, Algorithm: hsm.AlgAES, Length: 16}, keyAES)
	f.tak = importClear(t, f.sw, "term/1/mak", tdes(hsm.KeyTAK, 16), keyB)
	f.zakAES = importClear(t, f.sw, "acq/c/zak", hsm.Spec{Type: hsm.KeyZAK, Algorithm: hsm.AlgAES, Length: 16}, keyAES)
	f.tmk = importClear(t, f.sw, "term/1/tmk", tdes(hsm.KeyTMK, 16), keyB)
	f.zmk = importClear(t, f.sw, "acq/a/zmk", tdes(hsm.KeyZMK, 16), keyA)
	f.tdk = importClear(t, f.sw, "term/1/tdk", tdes(hsm.KeyTDK, 16), keyA)
	f.dek = importClear(t, f.sw, "store/dek", hsm.Spec{Type: hsm.KeyDEK, Algorithm: hsm.AlgAES, Length: 32}, keyAES+keyB)
	f.bdk = importClear(t, f.sw, "dukpt/bdk", tdes(hsm.KeyBDK, 16), keyA)
	return f
}

func TestClientTranslatesPINsOverTCPAndRoundTrips(t *testing.T) {
	f := newFixture(t, Config{}, 0, nil)
	ctx := context.Background()
	a, _ := hsm.NewTDESCipher(unhex(t, keyA))
	orig, err := hsm.EncryptPINBlock(a, hsm.ISO0, pin, pan, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		src  hsm.Key // CA from the TPK, CC from ZPK A
		b    hsm.Key
		bFmt hsm.PINBlockFormat
	}{
		{"CA TPK ISO-0 -> ZPK B ISO-0", f.tpk, f.zpkB, hsm.ISO0},
		{"CC ZPK A ISO-0 -> ZPK B ISO-3", f.zpkA, f.zpkB, hsm.ISO3},
		{"CC ZPK A ISO-0 -> AES ZPK ISO-4", f.zpkA, f.zpkAES, hsm.ISO4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			there, err := f.cl.TranslatePIN(ctx, hsm.PINTranslation{Source: tc.src, Dest: tc.b, SourceFormat: hsm.ISO0, DestFormat: tc.bFmt, PAN: pan, Block: orig})
			if err != nil {
				t.Fatal(err)
			}
			if there.PINLength != 4 || there.Format != tc.bFmt || len(there.Block) != tc.bFmt.Size() {
				t.Fatalf("reply: PIN length %d, %v, %d bytes", there.PINLength, there.Format, len(there.Block))
			}
			back, err := f.cl.TranslatePIN(ctx, hsm.PINTranslation{Source: tc.b, Dest: f.zpkA, SourceFormat: tc.bFmt, DestFormat: hsm.ISO0, PAN: pan, Block: there.Block})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back.Block, orig) {
				t.Fatal("A -> B -> A changed the block")
			}
		})
	}
	t.Run("G0 DUKPT -> ZPK B (X9.24-1 A.4 block)", func(t *testing.T) {
		res, err := f.cl.TranslatePIN(ctx, hsm.PINTranslation{Source: f.bdk, KSN: unhex(t, dukptKSN), Dest: f.zpkB,
			SourceFormat: hsm.ISO0, DestFormat: hsm.ISO0, PAN: pan, Block: unhex(t, dukptPIN)})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := hsm.NewTDESCipher(unhex(t, keyB))
		if got, err := hsm.DecryptPINBlock(b, hsm.ISO0, res.Block, pan); err != nil || got != pin {
			t.Fatalf("decodes to another PIN (%v)", err)
		}
	})
}

func TestClientMACsEqualTheSoftwareModule(t *testing.T) {
	f := newFixture(t, Config{}, 0, nil)
	ctx := context.Background()
	data := []byte("0200 purchase: the message authentication block of a test transaction, 77 bytes")
	tak8 := importClear(t, f.sw, "term/2/mak", hsm.Spec{Type: hsm.KeyTAK, Algorithm: hsm.AlgTDES, Length: 8}, keyB[:16])
	for _, tc := range []struct {
		key hsm.Key
		alg hsm.MACAlgorithm
	}{
		{f.tak, hsm.MACCupECB}, {tak8, hsm.MACCupECB}, {tak8, hsm.MACX99}, {f.tak, hsm.MACX919},
		{f.tak, hsm.MACISO9797Alg1}, {f.tak, hsm.MACISO9797Alg3}, {f.tak, hsm.MACPBOC}, {tak8, hsm.MACPBOC},
		{f.zakAES, hsm.MACAESCMAC},
	} {
		t.Run(fmt.Sprintf("%s/%d", tc.alg, tc.key.Length), func(t *testing.T) {
			want, err := f.sw.GenerateMAC(ctx, tc.key, tc.alg, data)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.cl.GenerateMAC(ctx, tc.key, tc.alg, data)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("M6 MAC %X, %v; software %X", got, err, want)
			}
			if err := f.cl.VerifyMAC(ctx, tc.key, tc.alg, data, got); err != nil {
				t.Fatalf("M8: %v", err)
			}
			if tc.alg != hsm.MACCupECB {
				if err := f.cl.VerifyMAC(ctx, tc.key, tc.alg, data, got[:4]); err != nil {
					t.Fatalf("M8 with 4 bytes: %v", err)
				}
			}
			changed := bytes.Replace(data, []byte("77"), []byte("78"), 1)
			if err := f.cl.VerifyMAC(ctx, tc.key, tc.alg, changed, got); !errors.Is(err, hsm.ErrMACVerify) {
				t.Fatalf("M8 on changed data: %v; want ErrMACVerify", err)
			}
		})
	}
}

func TestClientEncryptsDataLikeTheSoftwareModule(t *testing.T) {
	f := newFixture(t, Config{}, 0, nil)
	ctx := context.Background()
	record := []byte("settlement record, 32 bytes long")
	for _, tc := range []struct {
		name string
		req  hsm.DataRequest
	}{
		{"M0 ECB TDK", hsm.DataRequest{Key: f.tdk, Mode: hsm.DataECB, Data: record}},
		{"M0 CBC DEK", hsm.DataRequest{Key: f.dek, Mode: hsm.DataCBC, IV: make([]byte, 16), Data: record}},
		{"M0 track TDK", hsm.DataRequest{Key: f.tdk, Mode: hsm.DataTrack, Data: record[:13]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := f.sw.Encrypt(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.cl.Encrypt(ctx, tc.req)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("M0 %X, %v; software %X", got, err, want)
			}
			dec := tc.req
			dec.Data = got
			back, err := f.cl.Decrypt(ctx, dec)
			if err != nil || !bytes.Equal(back, tc.req.Data) {
				t.Fatalf("M2: %v", err)
			}
		})
	}
}

func TestClientGeneratesImportsAndChecksKeys(t *testing.T) {
	f := newFixture(t, Config{}, 0, nil)
	ctx := context.Background()
	for _, spec := range []hsm.Spec{
		{Type: hsm.KeyTAK, Algorithm: hsm.AlgTDES, Length: 8},
		{Type: hsm.KeyZPK, Algorithm: hsm.AlgTDES, Length: 16},
		{Type: hsm.KeyZAK, Algorithm: hsm.AlgTDES, Length: 24},
		{Type: hsm.KeyDEK, Algorithm: hsm.AlgAES, Length: 32},
	} {
		t.Run(fmt.Sprintf("%v-%v-%d", spec.Type, spec.Algorithm, spec.Length), func(t *testing.T) {
			g, err := f.cl.GenerateKey(ctx, hsm.GenerateKeyRequest{Name: "k", Spec: spec, Under: &f.zmk})
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := f.sw.KeyCheckValue(ctx, g.Key); got != g.Key.KCV || len(got) != 6 {
				t.Fatalf("A0 check value %s; the key's %s", g.Key.KCV, got)
			}
			if got, err := f.cl.KeyCheckValue(ctx, g.Key); err != nil || got != g.Key.KCV {
				t.Fatalf("BU: %s, %v; want %s", got, err, g.Key.KCV)
			}
			imp, err := f.cl.ImportKey(ctx, hsm.ImportKeyRequest{Name: "k2", Spec: spec, Under: f.zmk, Encrypted: g.Under, KCV: g.Key.KCV})
			if err != nil || imp.KCV != g.Key.KCV || imp.Cryptogram == g.Key.Cryptogram {
				t.Fatalf("A6: %v, %v", imp, err)
			}
			_, err = f.cl.ImportKey(ctx, hsm.ImportKeyRequest{Name: "k2", Spec: spec, Under: f.zmk, Encrypted: g.Under, KCV: "000000"})
			if !errors.Is(err, hsm.ErrKCV) {
				t.Fatalf("A6 with a wrong check value: %v; want ErrKCV", err)
			}
		})
	}
	t.Run("A6 of a key with bad parity", func(t *testing.T) {
		_, err := f.cl.ImportKey(ctx, hsm.ImportKeyRequest{Name: "x", Spec: hsm.Spec{Type: hsm.KeyZPK, Algorithm: hsm.AlgTDES, Length: 16}, Under: f.tmk, Encrypted: unhex(t, keyA), KCV: "000000"})
		if !errors.Is(err, hsm.ErrParity) {
			t.Fatalf("error %v; want ErrParity", err)
		}
	})
}

func TestClientMakesSignOnKeysTheTerminalAccepts(t *testing.T) {
	f := newFixture(t, Config{}, 0, nil)
	ctx := context.Background()
	tmk, _ := hsm.NewTDESCipher(unhex(t, keyB))
	for _, code := range []string{"001", "003", "004"} {
		t.Run(code, func(t *testing.T) {
			s, err := f.cl.CUPSignOnKeys(ctx, hsm.CUPSignOnRequest{TMK: f.tmk, NetCode: code, Prefix: "term/22003600"})
			if err != nil {
				t.Fatal(err)
			}
			set, err := hsm.ParseCUPField62(code, s.Field62)
			if err != nil {
				t.Fatal(err)
			}
			_, mak, _, err := set.DecryptKeys(tmk)
			if err != nil {
				t.Fatal(err)
			}
			data := []byte("0200 message")
			want, _ := hsm.ComputeMAC(hsm.MACCupECB, mak, data)
			if err := f.cl.VerifyMAC(ctx, s.MAK, hsm.MACCupECB, data, want); err != nil {
				t.Fatalf("the switch's MAK and the terminal's disagree: %v", err)
			}
			if (s.TDK != nil) != (code == "004") || s.PIK.Name != "term/22003600/pik" {
				t.Fatalf("keys %v %v %v", s.PIK, s.MAK, s.TDK)
			}
		})
	}
}

func TestClientReportsModuleErrorsAcrossTheWire(t *testing.T) {
	f := newFixture(t, Config{}, 0, nil)
	ctx := context.Background()
	block := unhex(t, dukptPIN)
	other := hsm.NewSoftware(mustLMK(t), nil)
	foreign := importClear(t, other, "x", hsm.Spec{Type: hsm.KeyTAK, Algorithm: hsm.AlgTDES, Length: 16}, keyB)
	for _, tc := range []struct {
		name string
		op   func() error
		want error
	}{
		{"MAC under a ZPK", func() error {
			k := f.zpkA
			k.Type = hsm.KeyTAK // the label is sent as code 003; the cryptogram says ZPK
			_, err := f.cl.GenerateMAC(ctx, k, hsm.MACX919, []byte("x"))
			return err
		}, hsm.ErrUnknownKeyType},
		{"MAC under a ZPK, labelled", func() error { _, err := f.cl.GenerateMAC(ctx, f.zpkA, hsm.MACX919, []byte("x")); return err }, hsm.ErrKeyUsage},
		{"PIN from a TAK", func() error {
			_, err := f.cl.TranslatePIN(ctx, hsm.PINTranslation{Source: f.tak, Dest: f.zpkB, SourceFormat: hsm.ISO0, DestFormat: hsm.ISO0, PAN: pan, Block: block})
			return err
		}, hsm.ErrKeyUsage},
		{"ISO-0 to ISO-1", func() error {
			_, err := f.cl.TranslatePIN(ctx, hsm.PINTranslation{Source: f.zpkA, Dest: f.zpkB, SourceFormat: hsm.ISO0, DestFormat: hsm.ISO1, PAN: pan, Block: block})
			return err
		}, hsm.ErrFormatConversion},
		{"corrupted PIN block", func() error {
			_, err := f.cl.TranslatePIN(ctx, hsm.PINTranslation{Source: f.zpkA, Dest: f.zpkB, SourceFormat: hsm.ISO0, DestFormat: hsm.ISO0, PAN: pan, Block: block})
			return err
		}, hsm.ErrPINBlock},
		{"key under another LMK", func() error { _, err := f.cl.GenerateMAC(ctx, foreign, hsm.MACX919, []byte("x")); return err }, hsm.ErrCryptogram},
		{"AES-CMAC with a TDES key", func() error { _, err := f.cl.GenerateMAC(ctx, f.tak, hsm.MACAESCMAC, []byte("x")); return err }, hsm.ErrAlgorithm},
		{"components over the wire", func() error { _, err := f.cl.ImportComponents(ctx, hsm.ComponentsRequest{}); return err }, hsm.ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.op()
			if !errors.Is(err, tc.want) && !(tc.want == hsm.ErrPINBlock && errors.Is(err, hsm.ErrPINLength)) {
				t.Fatalf("error %v; want %v", err, tc.want)
			}
		})
	}
}

func mustLMK(t testing.TB) *hsm.LMK {
	l, _, err := hsm.GenerateLMK(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestClientInfoAndEcho(t *testing.T) {
	f := newFixture(t, Config{}, 0, nil)
	info, err := f.cl.Info(context.Background())
	if err != nil || info.LMKCheck != f.sw.LMK().CheckValue() || info.Firmware != hsm.SoftwareFirmware {
		t.Fatalf("NC: %+v, %v", info, err)
	}
	if err := f.cl.Echo(context.Background(), []byte("are you there")); err != nil {
		t.Fatalf("B2: %v", err)
	}
}

func TestClientPipelinesCommandsOverFewConnections(t *testing.T) {
	for _, headerLen := range []int{1, 4, 12} {
		t.Run(fmt.Sprintf("header of %d", headerLen), func(t *testing.T) {
			f := newFixture(t, Config{Conns: 2, MaxInFlight: 64, HeaderLen: headerLen}, 0, nil)
			ctx := context.Background()
			var wg sync.WaitGroup
			errs := make(chan error, 300)
			for i := range 300 {
				wg.Go(func() {
					// Each command's data differs, so a reply matched to another command shows.
					data := fmt.Appendf(nil, "pipelined command %d", i)
					want, _ := f.sw.GenerateMAC(ctx, f.tak, hsm.MACX919, data)
					got, err := f.cl.GenerateMAC(ctx, f.tak, hsm.MACX919, data)
					if err == nil && !bytes.Equal(got, want) {
						err = errors.New("reply matched to the wrong command")
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if n := f.accepted.Load(); n != 2 {
				t.Fatalf("%d connections for 300 commands; want the pool's 2", n)
			}
		})
	}
}

func TestClientCancelledCommandKeepsTheConnection(t *testing.T) {
	f := newFixture(t, Config{Conns: 1}, 0, nil)
	if _, err := f.cl.KeyCheckValue(context.Background(), f.tak); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 20 { // the reply may win the race with the cancellation; either way the connection stays
		if _, err := f.cl.KeyCheckValue(ctx, f.tak); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled command: %v; want context.Canceled", err)
		}
	}
	for range 3 {
		if kcv, err := f.cl.KeyCheckValue(context.Background(), f.tak); err != nil || kcv != f.tak.KCV {
			t.Fatalf("after a cancelled command: %s, %v", kcv, err)
		}
	}
	if n := f.accepted.Load(); n > 1 {
		t.Fatalf("%d connections; a cancelled command must not reset the connection", n)
	}
}

func TestClientTimesOutOnAStalledHSMAndRecovers(t *testing.T) {
	// The first connection reads commands and never answers.
	stall := func(nc net.Conn) { bufio.NewReader(nc).WriteTo(discard{}) }
	f := newFixture(t, Config{Conns: 1, Timeout: 150 * time.Millisecond}, 1, stall)
	ctx := context.Background()
	start := time.Now()
	_, err := f.cl.KeyCheckValue(ctx, f.tak)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled HSM: %v; want a deadline error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("timed out after %v; want about 150ms", d)
	}
	if kcv, err := f.cl.KeyCheckValue(ctx, f.tak); err != nil || kcv != f.tak.KCV {
		t.Fatalf("after reconnecting: %s, %v", kcv, err)
	}
	if n := f.accepted.Load(); n != 2 {
		t.Fatalf("%d connections; want 2 (the stalled one, then a new one)", n)
	}
}

func TestClientReconnectsWhenTheHSMDropsTheConnection(t *testing.T) {
	// The first connection is closed as soon as a command arrives.
	drop := func(nc net.Conn) {
		var b [1]byte
		nc.Read(b[:])
		nc.Close()
	}
	f := newFixture(t, Config{Conns: 1}, 1, drop)
	ctx := context.Background()
	if _, err := f.cl.KeyCheckValue(ctx, f.tak); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dropped connection: %v; want a connection error at once", err)
	}
	if kcv, err := f.cl.KeyCheckValue(ctx, f.tak); err != nil || kcv != f.tak.KCV {
		t.Fatalf("after reconnecting: %s, %v", kcv, err)
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// TestClientCAFrameMatchesTheReferenceWireExample checks the CA fields after the keys and the decoding of
// the published CB reply (reference/hsm.md 3.1, ut-codec-payshield).
func TestClientCAFrameMatchesTheReferenceWireExample(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		m, _, err := readFrame(bufio.NewReader(nc), 4, nil)
		if err != nil {
			return
		}
		got <- m.code + string(m.body)
		frame, _ := appendFrame(nil, m.header, "CB", []byte(refCBData))
		nc.Write(frame)
		nc.Read(make([]byte, 1)) // until the client closes
	}()
	cl, err := NewClient(Config{Addr: ln.Addr().String(), Conns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	account, _ := hsm.PANFromAccountField("540028800010") // the account field of the example
	tpk := hsm.Key{Type: hsm.KeyTPK, Cryptogram: "U" + keyA}
	zpk := hsm.Key{Type: hsm.KeyZPK, Cryptogram: "U" + keyB}
	res, err := cl.TranslatePIN(context.Background(), hsm.PINTranslation{Source: tpk, Dest: zpk, SourceFormat: hsm.ISO0,
		DestFormat: hsm.ISO0, PAN: account, Block: unhex(t, "3C7C732E667A9BC6")})
	if err != nil {
		t.Fatal(err)
	}
	req := <-got
	if want := "CAU" + keyA + "U" + keyB + "123C7C732E667A9BC60101540028800010"; req != want {
		t.Fatalf("CA request\n%s\nwant\n%s", req, want)
	}
	if res.PINLength != 6 || strings.ToUpper(hex.EncodeToString(res.Block)) != "14D3E09CD3B6456E" || res.Format != hsm.ISO0 {
		t.Fatalf("CB decoded as %+v", res)
	}
}

func TestReplyCodesAndFrames(t *testing.T) {
	for _, tc := range []struct{ cmd, want string }{{"CA", "CB"}, {"M6", "M7"}, {"NC", "ND"}, {"A0", "A1"}, {"B2", "B3"}} {
		if got := responseCode(tc.cmd); got != tc.want {
			t.Errorf("responseCode(%s) = %s; want %s", tc.cmd, got, tc.want)
		}
	}
	// The published M7 reply "0048M700C57E4295": header 0048, MAC C57E4295.
	frame := append([]byte{0, 16}, "0048M700C57E4295"...)
	m, _, err := readFrame(bufio.NewReader(bytes.NewReader(frame)), 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := checkReply("M6", m)
	if err != nil || m.header != "0048" || string(data) != "C57E4295" {
		t.Fatalf("M7 decoded as header %q data %q, %v", m.header, data, err)
	}
	bad := append([]byte{0, 6}, "0048M7"...)
	m, _, _ = readFrame(bufio.NewReader(bytes.NewReader(bad)), 4, nil)
	if _, err := checkReply("M6", m); err == nil {
		t.Fatal("reply without an error code accepted")
	}
	m.code = "CB"
	m.body = []byte("00")
	if _, err := checkReply("M6", m); err == nil {
		t.Fatal("reply to another command accepted")
	}
	var re *hsm.RemoteError
	m.code, m.body = "M9", []byte("01")
	if _, err := checkReply("M8", m); !errors.As(err, &re) || !errors.Is(err, hsm.ErrMACVerify) {
		t.Fatalf("M9 01: %v; want a RemoteError for ErrMACVerify", err)
	}
}
