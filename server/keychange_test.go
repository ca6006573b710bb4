package server

import (
	"context"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/specs"
)

// bankKeyChange asks a bank simulator for a key change ("zpk" or "zak") through its control API and waits
// until the switch has the new key in force; then it leaves the switch's 0810 time to reach the bank, which
// puts the key in force only when it reads it.
func bankKeyChange(t *testing.T, d *Demo, control, key string) {
	t.Helper()
	acq := d.acquirers["bank-a"]
	current := map[string]func() *hsm.Key{"zpk": acq.ZPK, "zak": acq.ZAK}[key]
	before := current().KCV
	resp, err := http.Post(control+"/keychange", "application/json", strings.NewReader(`{"key":"`+key+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /keychange %s: status %d", key, resp.StatusCode)
	}
	waitFor(t, "the switch to install the new "+key, 5*time.Second, func() bool { return current().KCV != before })
	time.Sleep(200 * time.Millisecond)
}

// TestBankKeyChangeKeepsPurchasesApprovedAcrossARestart: bank A changes its ZPK and ZAK twice each (the bank
// then accepts neither original key, so approvals prove PIN blocks and MACs under the new keys); purchases
// keep being approved, each new key is a new version in the key store, and a restarted switch uses them.
func TestBankKeyChangeKeepsPurchasesApprovedAcrossARestart(t *testing.T) {
	d := startTestDemo(t)
	control := httptest.NewServer(d.BankA.ControlHandler())
	defer control.Close()
	tt := dialTerminal(t, d.Channels()[0].Addr(), "22003600", "104512541110001")
	tt.signOn()
	if rc := tt.purchase(cupCard, 100).String(39); rc != "00" {
		t.Fatalf("purchase before the key change answered %q", rc)
	}
	for _, key := range []string{"zpk", "zak", "zpk", "zak"} {
		bankKeyChange(t, d, control.URL, key)
		if rc := tt.purchase(cupCard, 100).String(39); rc != "00" {
			t.Fatalf("purchase after the %s change answered %q, want 00", key, rc)
		}
	}
	for _, name := range []string{"acq/bank-a/zpk", "acq/bank-a/zak"} {
		if k, err := d.keys.Get(name); err != nil || k.Version != 3 {
			t.Fatalf("key store %s: version %d (%v), want 3", name, k.Version, err)
		}
	}
	zpk, zak := d.acquirers["bank-a"].ZPK().KCV, d.acquirers["bank-a"].ZAK().KCV

	restartSwitch(t, d)
	if got := d.acquirers["bank-a"]; got.ZPK().KCV != zpk || got.ZAK().KCV != zak {
		t.Fatalf("after the restart the zone keys are %s/%s, want %s/%s", got.ZPK().KCV, got.ZAK().KCV, zpk, zak)
	}
	tt = dialTerminal(t, d.Channels()[0].Addr(), "22003600", "104512541110001")
	tt.signOn()
	if rc := tt.purchase(cupCard, 100).String(39); rc != "00" {
		t.Fatalf("purchase after the restart answered %q, want 00", rc)
	}
}

// keyChangeRequest is a bank's 0800/161 carrying the clear key newKey (hex) under the demo's bank A ZMK,
// with check value kcv ("" computes the right one).
func keyChangeRequest(t *testing.T, f53, newKey, kcv string) *codec.Message {
	t.Helper()
	spec, _ := specs.Get("iso87-ascii")
	zmkClear, _ := hex.DecodeString(demoZoneA)
	hsm.FixParity(zmkClear)
	zmk, err := hsm.NewTDESCipher(zmkClear)
	if err != nil {
		t.Fatal(err)
	}
	clearKey, _ := hex.DecodeString(newKey)
	hsm.FixParity(clearKey)
	under := make([]byte, len(clearKey))
	if err := hsm.EncryptECB(zmk, under, clearKey); err != nil {
		t.Fatal(err)
	}
	if kcv == "" {
		v, _ := hsm.KCV(clearKey, false, 3)
		kcv = hex.EncodeToString(v)
	}
	m := codec.NewMessage(spec)
	_ = m.SetMTI("0800")
	_ = m.SetString(11, "000042")
	_ = m.SetString(48, strings.ToUpper(hex.EncodeToString(under)+kcv))
	if f53 != "" {
		_ = m.SetString(53, f53)
	}
	_ = m.SetString(70, "161")
	return m
}

func TestKeyChangeAnswerCodes(t *testing.T) {
	d := startTestDemo(t)
	const newKey = "70F2A84CCBC2AE8625CBB0F2C22AB923" // the demo's bank B zone key: a published test value
	tests := []struct {
		name    string
		req     *codec.Message
		noZMK   bool
		code    string
		changed bool // the ZAK in force is the new key
	}{
		{"unknown key type", keyChangeRequest(t, "0300000000000000", newKey, ""), false, "12", false},
		{"check value does not match", keyChangeRequest(t, "0200000000000000", newKey, "000000"), false, "63", false},
		{"field 48 too short", func() *codec.Message {
			m := keyChangeRequest(t, "0200000000000000", newKey, "")
			_ = m.SetString(48, "0123")
			return m
		}(), false, "30", false},
		{"no ZMK configured", keyChangeRequest(t, "0200000000000000", newKey, ""), true, "96", false},
		{"good ZAK", keyChangeRequest(t, "0200000000000000", newKey, ""), false, "00", true},
		{"same ZAK again, as from another connection", keyChangeRequest(t, "0200000000000000", newKey, ""), false, "00", true},
	}
	acq := d.acquirers["bank-a"]
	original := acq.ZAK().KCV
	kc := &keyChanger{s: d.Switch}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ac := d.cfg.Acquirers["bank-a"]
			if tc.noZMK {
				saved := ac.ZMK
				ac.ZMK = ""
				d.cfg.Acquirers["bank-a"] = ac
				defer func() { ac.ZMK = saved; d.cfg.Acquirers["bank-a"] = ac }()
			}
			resp := codec.NewMessage(tc.req.Spec())
			if code := kc.hook("bank-a")(context.Background(), tc.req, resp); code != tc.code {
				t.Fatalf("answered %q, want %q", code, tc.code)
			}
			if changed := acq.ZAK().KCV != original; changed != tc.changed {
				t.Fatalf("ZAK changed: %v, want %v", changed, tc.changed)
			}
		})
	}
	if k, _ := d.keys.Get("acq/bank-a/zak"); k.Version != 2 {
		t.Fatalf("the ZAK is at version %d in the key store, want 2 (one change, the repeat stores nothing)", k.Version)
	}
	if prev := acq.PreviousZAK(); prev == nil || prev.KCV != original {
		t.Fatal("the replaced ZAK is not kept for responses in flight")
	}
}
