package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/railswitch/railswitch/simulators/pos/postest"
)

// Test keys of shared/reference: unionpay-pos.md test vector B (TMK) and the X9.19 vector key.
const (
	simTMK = "70F2A84CCBC2AE8625CBB0F2C22AB923"
	simMAK = "5775204D69616F6A756E404726444311"
)

func posHost(t *testing.T) string {
	tmk, _ := hex.DecodeString(simTMK)
	return (&postest.Host{Spec: "cup-pos", TMK: tmk, PIN: "123456"}).Start(t)
}

func TestSimPOSRunsChainThroughTheStateFile(t *testing.T) {
	addr := posHost(t)
	state := filepath.Join(t.TempDir(), "pos.json")
	base := []string{"--target", addr, "--tmk", simTMK, "--state", state}
	steps := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"purchase", "--amount", "100", "--pan", "6212341234567890"}, 1, "not signed on"},
		{[]string{"sign-on"}, 0, "working keys loaded"},
		{[]string{"purchase", "--amount", "1250", "--pan", "6212341234567890", "--pin", "123456"}, 0, "purchase trace 000002: rc 00 approved"},
		{[]string{"void", "--pin", "123456"}, 0, "void trace 000003: rc 00 approved"},
		{[]string{"purchase", "--amount", "100", "--pan", "4012345678909", "--pin", "111111"}, 2, "rc 55 declined"},
		{[]string{"settle"}, 0, "batch 000001 closed"},
	}
	for _, s := range steps {
		out, err := runCmd(newSimPOSCmd(), "", append(base, s.args...)...)
		if exitCode(err) != s.code || !strings.Contains(out+errString(err), s.want) {
			t.Fatalf("%v: exit %d (%v), output:\n%s", s.args, exitCode(err), err, out)
		}
		if strings.Contains(out, "6212341234567890") || strings.Contains(out, "4012345678909") {
			t.Fatalf("%v: output shows a full PAN", s.args)
		}
	}
	if info, err := os.Stat(state); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v %v", info.Mode(), err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestSimPOSJSONOutput(t *testing.T) {
	addr := posHost(t)
	out, err := runCmd(newSimPOSCmd(), "", "--target", addr, "--tmk", simTMK, "--json", "sign-on")
	if err != nil {
		t.Fatal(err, out)
	}
	var j resultJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if j.Txn != "sign-on" || j.RC != "00" || !j.Approved || len(j.Reply) == 0 {
		t.Errorf("%+v", j)
	}
}

func TestSimPOSInteractiveSession(t *testing.T) {
	addr := posHost(t)
	in := "sign-on\npurchase 300\nstate\nvoid\nrefund 5\nbogus\nsettle\nquit\n"
	out, err := runCmd(newSimPOSCmd(), in, "--target", addr, "--tmk", simTMK, "--pan", "4111111111111111", "--interactive")
	if err != nil {
		t.Fatal(err, out)
	}
	for _, want := range []string{"sign-on trace 000001: rc 00 approved", "purchase trace 000002: rc 00 approved",
		"000002 purchase", "void trace 000003: rc 00 approved", "error: refund: no open", "unknown transaction \"bogus\"",
		"settle trace 000004: rc 00 approved"} {
		if !strings.Contains(out, want) {
			t.Errorf("session output lacks %q:\n%s", want, out)
		}
	}
}

func TestSimKioskPurchaseAndRefund(t *testing.T) {
	mak, _ := hex.DecodeString(simMAK)
	pik, _ := hex.DecodeString(simTMK)
	addr := (&postest.Host{Spec: "kiosk", KioskMAK: mak, KioskPIK: pik, PIN: "123456"}).Start(t)
	state := filepath.Join(t.TempDir(), "kiosk.json")
	base := []string{"--target", addr, "--mak", simMAK, "--pik", simTMK, "--state", state,
		"--bureau", "10", "--station", "SHH", "--window", "KIOSK07"}
	out, err := runCmd(newSimKioskCmd(), "", append(base, "purchase", "--amount", "15350", "--pan", "6212341234567890", "--pin", "123456", "--order", "E820000123")...)
	if err != nil || !strings.Contains(out, "kiosk-purchase trace 000001: rc 00 approved") {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err = runCmd(newSimKioskCmd(), "", append(base, "refund", "--pan", "6212341234567890")...)
	if err != nil || !strings.Contains(out, "kiosk-refund trace 000002: rc 00 approved") {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := runCmd(newSimKioskCmd(), "", append(base, "teleport")...); err == nil {
		t.Error("unknown kiosk transaction accepted")
	}
}

func TestSimRunWritesJUnitAndFailsOnAFailedStep(t *testing.T) {
	addr := posHost(t)
	dir := t.TempDir()
	good := filepath.Join("..", "..", "simulators", "scenarios", "02-purchase-void-refund.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`name: bad
terminal: {tid: "10000009", mid: "898110000000001", tmk: `+simTMK+`}
steps:
  - {name: sign on, txn: sign-on}
  - {name: wrong expectation, txn: echo, expect: {rc: "96"}}
`), 0o600)
	junit := filepath.Join(dir, "junit.xml")
	out, err := runCmd(newSimRunCmd(), "", "--target", addr, "--junit", junit, good, bad)
	if exitCode(err) != 1 || !strings.Contains(out, "FAIL  echo") || !strings.Contains(out, "purchase-void-refund: 8 passed, 0 failed") {
		t.Fatalf("exit %d (%v):\n%s", exitCode(err), err, out)
	}
	x, rerr := os.ReadFile(junit)
	if rerr != nil || !bytes.Contains(x, []byte(`<testsuites tests="10" failures="1" errors="0"`)) {
		t.Errorf("JUnit file: %v\n%s", rerr, x)
	}
	if _, err := runCmd(newSimRunCmd(), "", "--target", addr, good); err != nil {
		t.Errorf("passing suite: %v", err)
	}
}
