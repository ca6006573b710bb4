package terminal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/specs"
)

// Test vector B of shared/reference/unionpay-pos.md section 5: the terminal master key.
const testTMK = "70F2A84CCBC2AE8625CBB0F2C22AB923"

// Real UnionPay sign-on 0800 (github.com/yangyongzhen/go8583): terminal 22003600, merchant 104512541110001,
// 60 = 00 000000 003 (double-length keys).
const signOnFrame = "003C600601000060310031181208000020000000C00012000000323230303336303031303435313235343131313030303100110000000000300003303030"

type fixture struct {
	m   *Manager
	sw  *hsm.Software
	tmk []byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	lmk, _, err := hsm.GenerateLMK(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sw := hsm.NewSoftware(lmk, rand.Reader)
	clear, _ := hex.DecodeString(testTMK)
	// Two odd-parity components whose XOR, once the module sets odd parity, is the TMK.
	mask := make([]byte, len(clear))
	for i := range mask {
		mask[i] = 0x01
	}
	comp1 := clear
	kcv, _ := hsm.KCV(clear, false, 3)
	tmk, err := sw.ImportComponents(context.Background(), hsm.ComponentsRequest{Name: "term/22003600/tmk",
		Spec:       hsm.Spec{Type: hsm.KeyTMK, Algorithm: hsm.AlgTDES, Length: 16},
		Components: []hsm.Component{{Value: comp1}, {Value: mask}}, KCV: strings.ToUpper(hex.EncodeToString(kcv))})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewRegistry([]Terminal{{ID: "22003600", Merchant: "104512541110001", TMK: "term/22003600/tmk"}})
	if err != nil {
		t.Fatal(err)
	}
	sessions, _ := NewMemorySessions("")
	now := time.Date(2026, 11, 27, 9, 30, 15, 0, time.UTC)
	m := &Manager{Registry: reg, Sessions: sessions, Batches: NewMemoryBatches(), HSM: sw,
		Keys: func(string) (hsm.Key, error) { return tmk, nil }, AcquirerID: "00085500", Now: func() time.Time { return now }}
	return &fixture{m: m, sw: sw, tmk: clear}
}

func unpackFrame(t *testing.T, frameHex string) *codec.Message {
	t.Helper()
	s, _ := specs.Get("cup-pos")
	b, _ := hex.DecodeString(frameHex)
	body, _, err := s.Framing().Split(b)
	if err != nil {
		t.Fatal(err)
	}
	m := codec.NewMessage(s)
	if err := m.UnpackFrame(s.Framing(), body); err != nil {
		t.Fatal(err)
	}
	return m
}

func (f *fixture) answer(t *testing.T, req *codec.Message) *codec.Message {
	t.Helper()
	rsp := codec.NewMessage(req.Spec())
	if err := NewReply(req, rsp); err != nil {
		t.Fatal(err)
	}
	tm, ok := f.m.Registry.Lookup(req.String(41))
	if !ok {
		t.Fatal("terminal not registered")
	}
	f.m.Handle(context.Background(), tm, req, rsp)
	return rsp
}

func TestSignOnSendsWorkingKeysUnderTheTMK(t *testing.T) {
	f := newFixture(t)
	req := unpackFrame(t, signOnFrame)
	rsp := f.answer(t, req)
	if rsp.MTI() != "0810" || rsp.String(39) != "00" || rsp.String(11) != "000000" || rsp.String(41) != "22003600" ||
		rsp.String(42) != "104512541110001" {
		t.Fatalf("reply mti %s 39 %q 11 %q", rsp.MTI(), rsp.String(39), rsp.String(11))
	}
	if rsp.String(12) != "093015" || rsp.String(13) != "1127" || rsp.String(32) != "00085500" {
		t.Fatalf("12 %q 13 %q 32 %q", rsp.String(12), rsp.String(13), rsp.String(32))
	}
	if rsp.String(60) != "00000001003" {
		t.Fatalf("60 = %q, want batch 000001 and the layout asked for", rsp.String(60))
	}
	if hex.EncodeToString(rsp.TPDU()) != "6000000601" {
		t.Fatalf("TPDU not swapped: %X", rsp.TPDU())
	}
	f62, _ := rsp.Value(62)
	set, err := hsm.ParseCUPField62("003", f62)
	if err != nil {
		t.Fatal(err)
	}
	tmk, _ := hsm.NewTDESCipher(f.tmk)
	pik, mak, _, err := set.DecryptKeys(tmk) // checks each key against its check value
	if err != nil {
		t.Fatalf("field 62 does not decrypt under the TMK: %v", err)
	}
	if len(pik) != 16 || len(mak) != 8 {
		t.Fatalf("key lengths %d %d", len(pik), len(mak))
	}
	s, ok, _ := f.m.Sessions.Get(context.Background(), "22003600")
	if !ok || !s.SignedOn || s.Batch != "000001" || s.MAK.Type != hsm.KeyTAK || s.PIK.Type != hsm.KeyTPK {
		t.Fatalf("session %+v", s)
	}
	// The session's MAK (under the LMK) is the key sent to the terminal: a MAC made with the terminal's clear
	// MAK verifies in the module.
	data := []byte("0200 message authentication block")
	mac, _ := hsm.ComputeMAC(hsm.MACCupECB, mak, data)
	if err := f.sw.VerifyMAC(context.Background(), s.MAK, hsm.MACCupECB, data, mac); err != nil {
		t.Fatalf("MAC under the terminal's MAK does not verify with the session key: %v", err)
	}
}

func TestSignOnRefusesUnknownLayoutsAndDisallowedOnes(t *testing.T) {
	f := newFixture(t)
	req := unpackFrame(t, signOnFrame)
	_ = req.SetString(60, "00000000009")
	if rsp := f.answer(t, req); rsp.String(39) != "30" {
		t.Fatalf("60.3 = 009 answered %q", rsp.String(39))
	}
	_ = f.m.Registry.Reload([]Terminal{{ID: "22003600", Merchant: "104512541110001", TMK: "x", KeyLayout: "004"}})
	req = unpackFrame(t, signOnFrame)
	if rsp := f.answer(t, req); rsp.String(39) != "58" {
		t.Fatalf("layout 003 for a 004 terminal answered %q", rsp.String(39))
	}
}

func TestEchoAndSignOff(t *testing.T) {
	f := newFixture(t)
	f.answer(t, unpackFrame(t, signOnFrame))
	req := unpackFrame(t, signOnFrame)
	_ = req.SetMTI("0820")
	_ = req.SetString(60, "00000001301")
	if rsp := f.answer(t, req); rsp.MTI() != "0830" || rsp.String(39) != "00" {
		t.Fatalf("echo: %s %q", rsp.MTI(), rsp.String(39))
	}
	_ = req.SetString(60, "00000001002")
	f.answer(t, req)
	if s, _, _ := f.m.Sessions.Get(context.Background(), "22003600"); s.SignedOn {
		t.Fatal("still signed on after sign-off")
	}
}

func TestSettlementComparesTotals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_ = f.m.Batches.Add(ctx, "22003600", "000001", true, 12345, 1)
	_ = f.m.Batches.Add(ctx, "22003600", "000001", true, 100, 1)
	_ = f.m.Batches.Add(ctx, "22003600", "000001", false, 100, 1)
	settle := func(totals string) string {
		req := unpackFrame(t, signOnFrame)
		_ = req.SetMTI("0500")
		_ = req.SetString(60, "00000001201")
		_ = req.SetString(48, totals+"0"+strings.Repeat("0", 31))
		rsp := f.answer(t, req)
		if rsp.MTI() != "0510" || rsp.String(39) != "00" {
			t.Fatalf("settle reply %s %q", rsp.MTI(), rsp.String(39))
		}
		v := rsp.String(48)
		return string(v[30]) + string(v[61])
	}
	if got := settle("000000012445" + "002" + "000000000100" + "001"); got != "11" {
		t.Fatalf("matching totals: flags %s, want 11", got)
	}
	if got := settle("000000012345" + "001" + "000000000000" + "000"); got != "21" {
		t.Fatalf("different totals: flags %s, want 21 (RMB not balanced)", got)
	}
}

func TestRegistryValidates(t *testing.T) {
	_, err := NewRegistry([]Terminal{{ID: "short", Merchant: "104512541110001", TMK: "k"},
		{ID: "22003600", Merchant: "1", TMK: "k"}, {ID: "22003601", Merchant: "104512541110001"}})
	if err == nil || !strings.Contains(err.Error(), "must be 8 characters") ||
		!strings.Contains(err.Error(), "merchant") || !strings.Contains(err.Error(), "no tmk") {
		t.Fatalf("err = %v", err)
	}
}

func TestRegistryValidatesTheKeyProfile(t *testing.T) {
	const mid = "104512541110001"
	tests := []struct {
		name string
		term Terminal
		want string // error text; empty: valid
	}{
		{"sign-on terminal", Terminal{ID: "22003600", Merchant: mid, TMK: "k"}, ""},
		{"static keys without tmk", Terminal{ID: "20000001", Merchant: mid, MAC: MACX919, MAK: "m", PIK: "p"}, ""},
		{"mak without pik", Terminal{ID: "20000001", Merchant: mid, MAK: "m"}, "go together"},
		{"pik without mak or tmk", Terminal{ID: "20000001", Merchant: mid, PIK: "p"}, "no tmk"},
		{"unknown mac profile", Terminal{ID: "20000001", Merchant: mid, TMK: "k", MAC: "x9.9"}, "is not cup-ecb or x9.19"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRegistry([]Terminal{tc.term})
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestStaticKeyTerminalIsSignedOnWithItsKeys(t *testing.T) {
	f := newFixture(t)
	keys := map[string]hsm.Key{"kiosk/mak": {Name: "kiosk/mak"}, "kiosk/pik": {Name: "kiosk/pik"}}
	f.m.Keys = func(name string) (hsm.Key, error) {
		if k, ok := keys[name]; ok {
			return k, nil
		}
		return hsm.Key{}, hsm.ErrKeyNotFound
	}
	kiosk := &Terminal{ID: "20000001", Merchant: "898110000000004", MAC: MACX919, MAK: "kiosk/mak", PIK: "kiosk/pik"}
	s, ok, err := f.m.Session(context.Background(), kiosk)
	if err != nil || !ok || !s.SignedOn || s.MAK.Name != "kiosk/mak" || s.PIK.Name != "kiosk/pik" {
		t.Fatalf("session %+v ok %v err %v", s, ok, err)
	}
	kiosk.PIK = "missing"
	if _, _, err := f.m.Session(context.Background(), kiosk); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("missing static key: err %v", err)
	}
	pos := &Terminal{ID: "22003600", Merchant: "104512541110001", TMK: "k"}
	if _, ok, err := f.m.Session(context.Background(), pos); ok || err != nil {
		t.Fatalf("a terminal that never signed on has a session (ok %v err %v)", ok, err)
	}
}
