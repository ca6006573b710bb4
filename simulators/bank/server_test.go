package bank

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/specs"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Published test vectors (shared/reference): the double-length key and card of the PIN block examples.
var (
	testKey, _ = hex.DecodeString("0123456789ABCDEFFEDCBA9876543210")
	testPAN    = "4012345678909"
)

func mustSpec(t testing.TB, name string) *codec.Spec {
	t.Helper()
	s, err := specs.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startBank serves a simulator on a free local port until the test ends.
func startBank(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Spec == nil {
		cfg.Spec = mustSpec(t, "iso87-ascii")
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(1, 2))
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	t.Cleanup(func() { s.Close(); <-done })
	return s, l.Addr().String()
}

// client is a test peer of the simulator: it plays the switch's side of the link.
type client struct {
	t    testing.TB
	spec *codec.Spec
	c    net.Conn
	buf  []byte
}

func dial(t testing.TB, addr string, spec *codec.Spec) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, spec: spec, c: c}
}

func (c *client) send(m *codec.Message) {
	c.t.Helper()
	out, err := m.AppendFrame(c.spec.Framing(), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.c.Write(out); err != nil {
		c.t.Fatal(err)
	}
}

var errTimeout = errors.New("no frame in time")

// frame returns the next frame body, errTimeout, or the read error (io.EOF when the bank hung up).
func (c *client) frame(wait time.Duration) ([]byte, error) {
	c.c.SetReadDeadline(time.Now().Add(wait))
	tmp := make([]byte, 4096)
	for {
		body, used, err := c.spec.Framing().Split(c.buf)
		if err == nil {
			out := append([]byte(nil), body...)
			c.buf = c.buf[used:]
			return out, nil
		}
		if err != codec.ErrNeedMore {
			return nil, err
		}
		n, rerr := c.c.Read(tmp)
		c.buf = append(c.buf, tmp[:n]...)
		if rerr != nil {
			if ne, ok := rerr.(net.Error); ok && ne.Timeout() {
				return nil, errTimeout
			}
			return nil, rerr
		}
	}
}

// reply reads and decodes the next frame.
func (c *client) reply(wait time.Duration) *codec.Message {
	c.t.Helper()
	body, err := c.frame(wait)
	if err != nil {
		c.t.Fatalf("reading the reply: %v", err)
	}
	m := codec.NewMessage(c.spec)
	if err := m.UnpackFrame(c.spec.Framing(), body); err != nil {
		c.t.Fatalf("decoding the reply: %v", err)
	}
	return m
}

func (c *client) roundTrip(m *codec.Message) *codec.Message {
	c.t.Helper()
	c.send(m)
	return c.reply(2 * time.Second)
}

// msg builds a message; fields maps field numbers to logical values.
func msg(t testing.TB, spec *codec.Spec, mti string, fields map[int]string) *codec.Message {
	t.Helper()
	m := codec.NewMessage(spec)
	if err := m.SetMTI(mti); err != nil {
		t.Fatal(err)
	}
	for n, v := range fields {
		if err := m.SetString(n, v); err != nil {
			t.Fatalf("field %d: %v", n, err)
		}
	}
	return m
}

// purchase is a 0200 of amount for card with STAN stan.
func purchase(t testing.TB, spec *codec.Spec, card, stan, amount string) *codec.Message {
	return msg(t, spec, "0200", map[int]string{2: card, 3: "000000", 4: amount, 7: "1127093000", 11: stan,
		12: "093000", 13: "1127", 32: "00000001", 37: "112709300001", 41: "TERM0001", 42: "MERCHANT0000001", 49: "156"})
}

func TestNetworkManagementOnEveryHostSpec(t *testing.T) {
	for _, specName := range []string{"iso87-ascii", "iso87-binary", "iso87-ebcdic"} {
		spec := mustSpec(t, specName)
		_, addr := startBank(t, Config{Spec: spec})
		c := dial(t, addr, spec)
		for _, tt := range []struct{ code, want string }{{"001", "00"}, {"301", "00"}, {"002", "00"}, {"999", "12"}} {
			t.Run(specName+"/"+tt.code, func(t *testing.T) {
				r := c.roundTrip(msg(t, spec, "0800", map[int]string{7: "1127093000", 11: "000123", 70: tt.code}))
				if r.MTI() != "0810" || r.String(39) != tt.want || r.String(70) != tt.code || r.String(11) != "000123" {
					t.Errorf("got %s 39=%q 70=%q 11=%q", r.MTI(), r.String(39), r.String(70), r.String(11))
				}
			})
		}
	}
}

func TestKeepAliveIsEchoed(t *testing.T) {
	spec := mustSpec(t, "iso87-ascii")
	_, addr := startBank(t, Config{Spec: spec})
	c := dial(t, addr, spec)
	c.c.Write([]byte("0000"))
	body, err := c.frame(time.Second)
	if err != nil || len(body) != 0 {
		t.Fatalf("got %q, %v; want an empty frame", body, err)
	}
}

func TestAuthorizationOverTCP(t *testing.T) {
	spec := mustSpec(t, "iso87-ascii")
	_, addr := startBank(t, Config{Spec: spec, Rules: testRules()})
	c := dial(t, addr, spec)

	r := c.roundTrip(purchase(t, spec, testPAN, "000001", "000000002500"))
	if r.MTI() != "0210" || r.String(39) != "00" || len(r.String(38)) != 6 {
		t.Fatalf("purchase: %s 39=%q 38=%q", r.MTI(), r.String(39), r.String(38))
	}
	for _, n := range []int{2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49} {
		if !r.Has(n) {
			t.Errorf("echo field %d missing", n)
		}
	}
	if r := c.roundTrip(purchase(t, spec, testPAN, "000002", "000000009000")); r.String(39) != "51" || r.Has(38) {
		t.Errorf("purchase above the balance: 39=%q 38=%q, want 51 and no auth code", r.String(39), r.String(38))
	}
	bal := msg(t, spec, "0100", map[int]string{2: testPAN, 3: "310000", 7: "1127093001", 11: "000003", 41: "TERM0001", 49: "156"})
	if r := c.roundTrip(bal); r.MTI() != "0110" || r.String(39) != "00" || r.String(54) != "0002156C000000007500" {
		t.Errorf("balance inquiry: %s 39=%q 54=%q", r.MTI(), r.String(39), r.String(54))
	}
}

func TestVoidAndReversalOverTCPApplyOnce(t *testing.T) {
	spec := mustSpec(t, "iso87-ascii")
	s, addr := startBank(t, Config{Spec: spec, Rules: testRules()})
	c := dial(t, addr, spec)
	p := purchase(t, spec, testPAN, "000010", "000000001000")
	if r := c.roundTrip(p); r.String(39) != "00" {
		t.Fatalf("purchase 39=%q", r.String(39))
	}
	orig := "0200" + "000010" + "1127093000" + "00000000001" + "00000000000"
	void := purchase(t, spec, testPAN, "000011", "000000001000")
	void.SetString(3, "200000")
	void.SetString(90, orig)
	if r := c.roundTrip(void); r.String(39) != "00" || r.String(90) != orig {
		t.Fatalf("void 39=%q 90=%q", r.String(39), r.String(90))
	}
	if b, _ := s.Ledger().Balance(testPAN); b != 10000 {
		t.Fatalf("balance after void %d, want 10000", b)
	}
	voidOrig := "0200" + "000011" + "1127093000" + "00000000001" + "00000000000"
	for i, mti := range []string{"0400", "0420", "0420"} {
		rev := msg(t, spec, mti, map[int]string{2: testPAN, 3: "200000", 4: "000000001000", 7: "1127093100",
			11: "00002" + string(rune('0'+i)), 32: "00000001", 41: "TERM0001", 90: voidOrig})
		r := c.roundTrip(rev)
		want := mti[:2] + string(mti[2]+1) + mti[3:]
		if r.MTI() != want || r.String(39) != "00" {
			t.Fatalf("reversal %d: %s 39=%q, want %s 00", i, r.MTI(), r.String(39), want)
		}
		if b, _ := s.Ledger().Balance(testPAN); b != 9000 {
			t.Fatalf("balance after reversal %d: %d, want 9000 (void taken back once)", i, b)
		}
	}
}

func TestUndecodableRequestAnswers30(t *testing.T) {
	spec := mustSpec(t, "iso87-ascii")
	_, addr := startBank(t, Config{Spec: spec})
	c := dial(t, addr, spec)
	// 0200, bitmap with field 11 then 4 characters of the 6 it needs and nothing else.
	body := []byte("0200" + "0020000000000000" + "0001")
	c.c.Write(append([]byte("0024"), body...))
	r := c.reply(time.Second)
	if r.MTI() != "0210" || r.String(39) != "30" {
		t.Errorf("got %s 39=%q, want 0210 30", r.MTI(), r.String(39))
	}
}

// macMessage signs m with X9.19 under key as the link convention says: over the packed message before the
// MAC field.
func macMessage(t testing.TB, m *codec.Message, key []byte, wire int) {
	t.Helper()
	m.Set(64, make([]byte, 8))
	packed, err := m.Pack(nil)
	if err != nil {
		t.Fatal(err)
	}
	mac, err := hsm.ComputeMAC(hsm.MACX919, key, packed[:len(packed)-wire])
	if err != nil {
		t.Fatal(err)
	}
	m.Set(64, mac)
}

// macOK checks the MAC of a reply.
func macOK(t testing.TB, m *codec.Message, key []byte, wire int) bool {
	t.Helper()
	packed, err := m.Pack(nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hsm.ComputeMAC(hsm.MACX919, key, packed[:len(packed)-wire])
	got, _ := m.Value(64)
	return bytes.Equal(got, want)
}

func TestMACIsCheckedAndSent(t *testing.T) {
	for _, specName := range []string{"iso87-ascii", "iso87-binary"} {
		t.Run(specName, func(t *testing.T) {
			spec := mustSpec(t, specName)
			wire, _ := macWireLen(spec)
			_, addr := startBank(t, Config{Spec: spec, Keys: Keys{ZAK: testKey}})
			c := dial(t, addr, spec)
			p := purchase(t, spec, testPAN, "000001", "000000000100")
			macMessage(t, p, testKey, wire)
			r := c.roundTrip(p)
			if r.String(39) != "00" || !macOK(t, r, testKey, wire) {
				t.Fatalf("good MAC: 39=%q, reply MAC ok %v", r.String(39), macOK(t, r, testKey, wire))
			}
			bad := purchase(t, spec, testPAN, "000002", "000000000100")
			macMessage(t, bad, testKey, wire)
			bad.SetString(4, "000000000200") // changed after signing
			if r := c.roundTrip(bad); r.String(39) != CodeMACError || r.Has(64) {
				t.Fatalf("bad MAC: 39=%q, MAC present %v; want A0 without MAC", r.String(39), r.Has(64))
			}
		})
	}
}

func TestKeyChangeSendsNewKeyUnderZMKAndUsesIt(t *testing.T) {
	spec := mustSpec(t, "iso87-ascii")
	wire, _ := macWireLen(spec)
	zmk := testKey
	_, addr := startBank(t, Config{Spec: spec, Keys: Keys{ZMK: zmk, ZAK: testKey}})
	c := dial(t, addr, spec)
	r := c.roundTrip(msg(t, spec, "0800", map[int]string{7: "1127093000", 11: "000001", 70: "161", 53: "0200000000000000"}))
	f48 := r.String(48)
	if r.String(39) != "00" || len(f48) != 38 || r.String(53) != "0200000000000000" {
		t.Fatalf("key change: 39=%q 48 length %d 53=%q", r.String(39), len(f48), r.String(53))
	}
	under, _ := hex.DecodeString(f48[:32])
	zmkBlock, _ := hsm.NewTDESCipher(zmk)
	newKey := make([]byte, 16)
	hsm.DecryptECB(zmkBlock, newKey, under)
	kcv, _ := hsm.KCV(newKey, false, 3)
	if hex.EncodeToString(kcv) != toLower(f48[32:]) {
		t.Fatalf("check value %s does not match the key (%x)", f48[32:], kcv)
	}
	for i, key := range [][]byte{newKey, testKey} { // the new key, and the previous one for requests in flight
		p := purchase(t, spec, testPAN, "00010"+string(rune('0'+i)), "000000000100")
		macMessage(t, p, key, wire)
		if r := c.roundTrip(p); r.String(39) != "00" || !macOK(t, r, newKey, wire) {
			t.Fatalf("request %d after key change: 39=%q, reply under the new key %v", i, r.String(39), macOK(t, r, newKey, wire))
		}
	}
}

func toLower(s string) string { return string(bytes.ToLower([]byte(s))) }

func TestKeyChangeWithoutZMKAnswers96(t *testing.T) {
	spec := mustSpec(t, "iso87-ascii")
	_, addr := startBank(t, Config{Spec: spec})
	c := dial(t, addr, spec)
	if r := c.roundTrip(msg(t, spec, "0800", map[int]string{11: "000001", 70: "161"})); r.String(39) != "96" || r.Has(48) {
		t.Fatalf("39=%q 48 present %v", r.String(39), r.Has(48))
	}
}

func TestPINIsVerifiedUnderZPK(t *testing.T) {
	spec := mustSpec(t, "iso87-ascii")
	rules := testRules()
	rules.Accounts[0].PINHash = HashPIN("1234")
	_, addr := startBank(t, Config{Spec: spec, Rules: rules, Keys: Keys{ZPK: testKey}})
	c := dial(t, addr, spec)
	zpk, _ := hsm.NewTDESCipher(testKey)
	for i, tt := range []struct{ pin, code string }{{"1234", "00"}, {"9999", "55"}} {
		block, err := hsm.EncryptPINBlock(zpk, hsm.ISO0, tt.pin, testPAN, nil)
		if err != nil {
			t.Fatal(err)
		}
		p := purchase(t, spec, testPAN, "00000"+string(rune('1'+i)), "000000000100")
		p.Set(52, block)
		if r := c.roundTrip(p); r.String(39) != tt.code {
			t.Errorf("PIN %d: 39=%q, want %s", i, r.String(39), tt.code)
		}
	}
}

func mustMessage(t testing.TB, specName string) *codec.Message {
	return codec.NewMessage(mustSpec(t, specName))
}

func TestBankInitiatedKeyChangeTakesEffectWhenAcknowledged(t *testing.T) {
	spec := mustSpec(t, "iso87-ascii")
	wire, _ := macWireLen(spec)
	s, addr := startBank(t, Config{Spec: spec, Keys: Keys{ZMK: testKey, ZAK: testKey}})
	if _, _, err := s.ChangeKey(KeyTypeMAC); err == nil {
		t.Fatal("key change with no connection succeeded")
	}
	c := dial(t, addr, spec)
	c.roundTrip(msg(t, spec, "0800", map[int]string{11: "000001", 70: "001"})) // the connection is served

	ctl := httptest.NewServer(s.ControlHandler())
	defer ctl.Close()
	resp, err := http.Post(ctl.URL+"/keychange", "application/json", strings.NewReader(`{"key":"zak"}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /keychange: %v %v", resp.Status, err)
	}
	resp.Body.Close()
	kc := c.reply(2 * time.Second)
	f48 := kc.String(48)
	if kc.MTI() != "0800" || kc.String(70) != "161" || kc.String(53)[:2] != KeyTypeMAC || len(f48) != 38 {
		t.Fatalf("key change: %s 70=%q 53=%q 48 length %d", kc.MTI(), kc.String(70), kc.String(53), len(f48))
	}
	under, _ := hex.DecodeString(f48[:32])
	zmk, _ := hsm.NewTDESCipher(testKey)
	newKey := make([]byte, 16)
	hsm.DecryptECB(zmk, newKey, under)
	if kcv, _ := hsm.KCV(newKey, false, 3); hex.EncodeToString(kcv) != toLower(f48[32:]) {
		t.Fatal("check value does not match the key")
	}

	p := purchase(t, spec, testPAN, "000002", "000000000100")
	macMessage(t, p, testKey, wire)
	if r := c.roundTrip(p); !macOK(t, r, testKey, wire) {
		t.Fatal("before the 0810 the reply is not MACed under the old key")
	}
	ack := msg(t, spec, "0810", map[int]string{11: kc.String(11), 39: "00", 70: "161"})
	c.send(ack)
	p = purchase(t, spec, testPAN, "000003", "000000000100")
	macMessage(t, p, newKey, wire)
	if r := c.roundTrip(p); r.String(39) != "00" || !macOK(t, r, newKey, wire) {
		t.Fatalf("after the 0810: 39=%q, reply under the new key %v", r.String(39), macOK(t, r, newKey, wire))
	}
}
