package scenario

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/xml"
	"path/filepath"
	"strings"
	"testing"

	"github.com/railswitch/railswitch/simulators/pos/postest"
)

// hostFor starts the test responder that fits a scenario file's device, with the file's test keys.
func hostFor(t *testing.T, f *File) (*postest.Host, string) {
	t.Helper()
	h := &postest.Host{PIN: "123456", Spec: "cup-pos"}
	if f.Terminal != nil {
		if f.Terminal.Spec != "" {
			h.Spec = f.Terminal.Spec
		}
		h.TMK, _ = hex.DecodeString(f.Terminal.TMK)
	} else {
		h.Spec = "kiosk"
		h.KioskMAK, _ = hex.DecodeString(f.Kiosk.MAK)
		h.KioskPIK, _ = hex.DecodeString(f.Kiosk.PIK)
	}
	return h, h.Start(t)
}

func TestShippedSuitePassesAgainstTheResponder(t *testing.T) {
	files, err := filepath.Glob("../scenarios/*.yaml")
	if err != nil || len(files) < 7 {
		t.Fatalf("shipped suite: %v, %d files", err, len(files))
	}
	covered := map[string]bool{}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			_, addr := hostFor(t, f)
			var out bytes.Buffer
			res := Run(context.Background(), f, Options{Target: addr, Out: &out})
			if res.Err != nil || res.Failed() > 0 {
				t.Fatalf("%d failed, err %v:\n%s", res.Failed(), res.Err, out.String())
			}
			for _, s := range f.Steps {
				covered[s.Txn] = true
			}
		})
	}
	for _, txn := range []string{"sign-on", "sign-off", "echo", "purchase", "balance", "void", "refund", "preauth",
		"preauth-void", "completion", "completion-advice", "completion-void", "settle", "kiosk-purchase", "kiosk-refund"} {
		if !covered[txn] {
			t.Errorf("the shipped suite has no %s step", txn)
		}
	}
}

const failing = `
name: failing
terminal: {tid: "10000009", mid: "898110000000001", tmk: 70F2A84CCBC2AE8625CBB0F2C22AB923, timeout: 5s}
steps:
  - name: sign on
    txn: sign-on
  - name: declined but expected approved
    txn: purchase
    amount: 100
    pan: "6212341234567890"
    pin: "000000"
  - name: void of the declined purchase
    txn: void
    refer: declined but expected approved
  - name: wrong field expectation
    txn: purchase
    amount: 100
    pan: "6212341234567890"
    expect: {rc: "00", fields: {4: "000000000999", 48: "1"}}
  - name: no reply expected but one came
    txn: echo
    expect: {no_reply: true}
  - name: reversal expected but none stored
    txn: echo
    expect: {reversal: true}
  - name: expected decline comes
    txn: purchase
    amount: 100
    pan: "6212341234567890"
    pin: "999999"
    expect: {rc: "55"}
`

func TestFailedStepsAreReportedAndWrittenAsJUnitFailures(t *testing.T) {
	f, err := Parse("failing.yaml", []byte(failing))
	if err != nil {
		t.Fatal(err)
	}
	_, addr := hostFor(t, f)
	var out bytes.Buffer
	res := Run(context.Background(), f, Options{Target: addr, Out: &out})
	wantFail := map[string]string{
		"declined but expected approved":    `rc "55", want "00"`,
		"void of the declined purchase":     "no approved transaction",
		"wrong field expectation":           `field 4 = "000000000100", want "000000000999"; field 48 absent`,
		"no reply expected but one came":    "expected no reply",
		"reversal expected but none stored": "reversal sent and acknowledged: false, want true",
	}
	for _, s := range res.Steps {
		want, fail := wantFail[s.Name]
		if s.Passed == fail {
			t.Errorf("step %q passed %v (failure %q)", s.Name, s.Passed, s.Failure)
		}
		if fail && !strings.Contains(s.Failure, want) {
			t.Errorf("step %q failure %q, want it to say %q", s.Name, s.Failure, want)
		}
	}
	if res.Failed() != len(wantFail) {
		t.Errorf("%d failed, want %d", res.Failed(), len(wantFail))
	}
	if !strings.Contains(out.String(), "FAIL  purchase          declined but expected approved: rc=55") || !strings.Contains(out.String(), "PASS  sign-on           sign on: rc=00") {
		t.Errorf("output:\n%s", out.String())
	}

	var x bytes.Buffer
	if err := WriteJUnit(&x, []*FileResult{res, {Name: "broken", Err: errString("connect refused")}}); err != nil {
		t.Fatal(err)
	}
	var parsed junitSuites
	if err := xml.Unmarshal(x.Bytes(), &parsed); err != nil {
		t.Fatalf("JUnit output does not parse: %v", err)
	}
	if parsed.Tests != len(f.Steps)+1 || parsed.Failures != len(wantFail) || parsed.Errors != 1 || len(parsed.Suites) != 2 {
		t.Errorf("JUnit totals: tests %d failures %d errors %d suites %d", parsed.Tests, parsed.Failures, parsed.Errors, len(parsed.Suites))
	}
	if c := parsed.Suites[0].Cases[1]; c.Name != "declined but expected approved" || c.Failure == nil {
		t.Errorf("JUnit case %+v", c)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestRunWithoutTargetOrReachableHostIsAnError(t *testing.T) {
	f, err := Parse("x.yaml", []byte(failing))
	if err != nil {
		t.Fatal(err)
	}
	if res := Run(context.Background(), f, Options{}); res.Err == nil || res.Failed() != 1 {
		t.Errorf("no target: err %v", res.Err)
	}
	res := Run(context.Background(), f, Options{Target: "127.0.0.1:1"})
	if res.Steps[0].Passed || !strings.Contains(res.Steps[0].Failure, "connect") {
		t.Errorf("unreachable host: %+v", res.Steps[0])
	}
}

func TestParseRejectsBadFilesWithTheirLine(t *testing.T) {
	head := "terminal: {tid: \"10000009\", mid: \"898110000000001\", tmk: 70F2A84CCBC2AE8625CBB0F2C22AB923}\nsteps:\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key", head + "  - {txn: echo, colour: red}\n", "colour"},
		{"unknown transaction", head + "  - {txn: echo}\n  - {txn: teleport}\n", "x.yaml:4: step \"step 2\": unknown transaction"},
		{"refer to a later step", head + "  - {name: a, txn: void, refer: b}\n  - {name: b, txn: purchase}\n", "does not name an earlier step"},
		{"kiosk step without kiosk", head + "  - {txn: kiosk-purchase}\n", "without a kiosk"},
		{"unknown fault", head + "  - {txn: echo, fault: fire}\n", "unknown fault"},
		{"duplicate name", head + "  - {name: a, txn: echo}\n  - {name: a, txn: echo}\n", "name used twice"},
		{"no steps", head, "no steps"},
		{"no reply and rc", head + "  - {txn: echo, expect: {no_reply: true, rc: \"00\"}}\n", "no_reply and rc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}
