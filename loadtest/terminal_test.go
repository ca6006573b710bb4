package loadtest

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/server"
	"github.com/railswitch/railswitch/specs"
	"go.uber.org/zap"
)

func cupSpec(t testing.TB) *codec.Spec {
	t.Helper()
	s, err := specs.Get("cup-pos")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testTerminalOptions(t testing.TB) TerminalOptions {
	t.Helper()
	tmk, err := hex.DecodeString(DefaultTMK)
	if err != nil {
		t.Fatal(err)
	}
	return TerminalOptions{TIDPrefix: DefaultTIDPrefix, MID: DefaultMID, TMK: tmk, PAN: DefaultPAN, PIN: DefaultPIN, Amount: 1}
}

func TestTerminalIDsArePrefixAndZeroPaddedNumberFromOne(t *testing.T) {
	tests := []struct {
		prefix string
		i      int
		want   string // "" when the id does not fit
	}{
		{"LT", 0, "LT000001"},
		{"LT", 41, "LT000042"},
		{"LT", 999998, "LT999999"},
		{"LT", 999999, ""},
		{"RW", 0, "RW000001"},
		{"", 0, "00000001"},
	}
	spec := cupSpec(t)
	for _, tt := range tests {
		o := testTerminalOptions(t)
		o.TIDPrefix = tt.prefix
		nb, err := NewTerminalBuilder(o)
		if err != nil {
			t.Fatal(err)
		}
		b, err := nb(spec, tt.i)
		if tt.want == "" {
			if err == nil {
				t.Errorf("prefix %q terminal %d: want an error", tt.prefix, tt.i+1)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		m := codec.NewMessage(spec)
		if err := b.(Session).BuildSignOn(m, time.Now()); err != nil {
			t.Fatal(err)
		}
		if m.MTI() != "0800" || m.String(41) != tt.want || m.String(60) != "00000001003" || m.Has(64) {
			t.Errorf("sign-on: %s 41=%q 60=%q 64 %v", m.MTI(), m.String(41), m.String(60), m.Has(64))
		}
	}
}

func TestNewTerminalBuilderRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name string
		edit func(*TerminalOptions)
	}{
		{"short TMK", func(o *TerminalOptions) { o.TMK = o.TMK[:7] }},
		{"prefix of 8", func(o *TerminalOptions) { o.TIDPrefix = "LOADTEST" }},
		{"short merchant", func(o *TerminalOptions) { o.MID = "8981100" }},
		{"card with letters", func(o *TerminalOptions) { o.PAN = "62123412345678X0" }},
		{"PIN of 3 digits", func(o *TerminalOptions) { o.PIN = "123" }},
		{"zero amount", func(o *TerminalOptions) { o.Amount = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testTerminalOptions(t)
			tt.edit(&o)
			if _, err := NewTerminalBuilder(o); err == nil {
				t.Error("want an error")
			}
		})
	}
}

// Working keys of the builder tests: the X9.24 example BDK value (shared/reference) as PIK, its left half
// as MAK.
const testPIK, testMAK = "0123456789ABCDEFFEDCBA9876543210", "0123456789ABCDEF"

// signOn hands b the 0810 of a host that gives it testPIK and testMAK under the default TMK and batch 000123.
func signOn(t testing.TB, b *TerminalBuilder, spec *codec.Spec) {
	t.Helper()
	tmkClear, _ := hex.DecodeString(DefaultTMK)
	tmk, _ := hsm.NewTDESCipher(tmkClear)
	pik, _ := hex.DecodeString(testPIK)
	mak, _ := hex.DecodeString(testMAK)
	set, err := hsm.EncryptCUPKeySet(tmk, pik, mak, nil)
	if err != nil {
		t.Fatal(err)
	}
	f62, err := set.Field62(keyLayout)
	if err != nil {
		t.Fatal(err)
	}
	rep := codec.NewMessage(spec)
	if err := firstErr(rep.SetMTI("0810"), rep.SetString(39, "00"), rep.SetString(60, "00000123003"), rep.Set(62, f62)); err != nil {
		t.Fatal(err)
	}
	if err := b.SignedOn(rep); err != nil {
		t.Fatal(err)
	}
}

// reply packs a reply to req with code 39, RRN and authorization code, MACed under mak, and unpacks it as
// a terminal receives it.
func reply(t *testing.T, spec *codec.Spec, req *codec.Message, code string, mak []byte) *codec.Message {
	t.Helper()
	r := codec.NewMessage(spec)
	err := firstErr(r.SetMTI("0210"), r.CopyField(3, req), r.CopyField(11, req), r.CopyField(41, req),
		r.SetString(37, "112709300001"), r.SetString(38, "A1B2C3"), r.SetString(39, code), r.Set(64, zeroMAC[:]))
	if err != nil {
		t.Fatal(err)
	}
	packed, err := r.Pack(nil)
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := hsm.ComputeMAC(hsm.MACCupECB, mak, packed[:len(packed)-8])
	copy(packed[len(packed)-8:], mac)
	got := codec.NewMessage(spec)
	if err := got.Unpack(packed); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestTerminalBuilderMACsRequestsChecksApprovalsAndVoidsItsPurchases(t *testing.T) {
	spec := cupSpec(t)
	nb, err := NewTerminalBuilder(testTerminalOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	bld, err := nb(spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := bld.(*TerminalBuilder)
	signOn(t, b, spec)
	mak, _ := hex.DecodeString(testMAK)
	wrongMAK, _ := hex.DecodeString("70F2A84CCBC2AE86")

	// a purchase: PIN block under the PIK, batch from the sign-on, MAC over the frame
	m := codec.NewMessage(spec)
	if k, err := b.Build(m, Purchase, time.Now()); err != nil || k != Purchase {
		t.Fatalf("purchase: %v %v", k, err)
	}
	frame, err := m.AppendFrame(spec.Framing(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Seal(m, frame)
	sent := codec.NewMessage(spec)
	if err := sent.UnpackFrame(spec.Framing(), frame[2:]); err != nil {
		t.Fatal(err)
	}
	mab, _ := sent.BytesBefore(64)
	want, _ := hsm.ComputeMAC(hsm.MACCupECB, mak, mab)
	if got, _ := sent.Value(64); string(got) != string(want) {
		t.Errorf("request MAC %x, want %x", got, want)
	}
	pikClear, _ := hex.DecodeString(testPIK)
	pik, _ := hsm.NewTDESCipher(pikClear)
	if pin, err := hsm.DecryptPINBlock(pik, hsm.ISO0, sent.Raw(52), DefaultPAN); err != nil || pin != DefaultPIN {
		t.Errorf("PIN block does not decrypt to the PIN under the PIK (%v)", err)
	}
	if sent.String(60)[:8] != "22000123" || sent.String(4) != "000000000001" || sent.String(41) != "LT000001" {
		t.Errorf("60=%q 4=%q 41=%q", sent.String(60), sent.String(4), sent.String(41))
	}

	// approvals must carry a valid MAC; declines need none
	tests := []struct {
		code    string
		mak     []byte
		wantErr bool
	}{
		{"00", wrongMAK, true},
		{"51", wrongMAK, false},
		{"00", mak, false}, // this one becomes voidable
	}
	for _, tt := range tests {
		if err := b.Answered(m, reply(t, spec, m, tt.code, tt.mak)); (err != nil) != tt.wantErr {
			t.Errorf("reply %s: error %v, want one %v", tt.code, err, tt.wantErr)
		}
	}

	// a void names the approved purchase: its RRN, authorization code, batch and trace
	v := codec.NewMessage(spec)
	if k, err := b.Build(v, Void, time.Now()); err != nil || k != Void {
		t.Fatalf("void: %v %v", k, err)
	}
	if v.String(3) != "200000" || v.String(37) != "112709300001" || v.String(38) != "A1B2C3" ||
		v.String(61) != "000123"+m.String(11) || v.String(60)[:2] != "23" || v.Has(52) {
		t.Errorf("void 3=%q 37=%q 38=%q 61=%q 60=%q PIN %v", v.String(3), v.String(37), v.String(38), v.String(61), v.String(60), v.Has(52))
	}
	if k, _ := b.Build(codec.NewMessage(spec), Void, time.Now()); k != Purchase {
		t.Errorf("a second void of one purchase: built %v, want a purchase", k)
	}
}

func TestTerminalBuilderNeedsASignOnBeforeRequests(t *testing.T) {
	nb, err := NewTerminalBuilder(testTerminalOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := nb(cupSpec(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(codec.NewMessage(cupSpec(t)), Purchase, time.Now()); err == nil {
		t.Error("a purchase before the sign-on was built")
	}
}

// startDemo runs the demo switch in-process with its two bank simulators and n load-test terminals.
func startDemo(t *testing.T, n int) *server.Demo {
	t.Helper()
	d, err := server.StartDemo(context.Background(), t.TempDir(), server.DemoAddrs{LoadTerminals: n}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Close(ctx)
	})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ok, _ := d.Ready(); ok {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatal("the demo's bank links never signed on")
		}
	}
}

func TestTerminalSpecAgainstTheDemoSwitch(t *testing.T) {
	d := startDemo(t, 4)
	addr := d.Channels()[0].Addr() // pos: cup-pos
	tests := []struct {
		name    string
		edit    func(*TerminalOptions)
		signErr string // "" when the terminals sign on and transact
	}{
		{"registered terminals sign on, buy, inquire and void", func(*TerminalOptions) {}, ""},
		{"a wrong TMK fails every sign-on", func(o *TerminalOptions) { o.TMK = append(append([]byte{}, o.TMK[8:]...), o.TMK[:8]...) }, "check value"},
		{"unregistered terminals are refused at sign-on", func(o *TerminalOptions) { o.TIDPrefix = "LX" }, `"97"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testTerminalOptions(t)
			tt.edit(&o)
			nb, err := NewTerminalBuilder(o)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Run(context.Background(), Config{Target: addr, Spec: cupSpec(t), Terminals: 4,
				Duration: 1500 * time.Millisecond, Mix: Mix{80, 10, 10}, NewBuilder: nb})
			if tt.signErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.signErr) {
					t.Fatalf("error %v, want one about %s", err, tt.signErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%.0f/s, p50 %.2f ms, %v, kinds %v", rep.TPS, rep.Latency.P50, rep.Responses, rep.Kinds)
			if rep.SignOns != 4 || rep.SignOnFailures != 0 {
				t.Errorf("sign-ons %d, failed %d; want 4 and 0", rep.SignOns, rep.SignOnFailures)
			}
			if rep.Completed == 0 || rep.Completed != rep.Sent || rep.Errors+rep.Timeouts+rep.Invalid+rep.Unmatched != 0 {
				t.Errorf("sent %d, answered %d, errors %d, timeouts %d, invalid %d, unmatched %d", rep.Sent,
					rep.Completed, rep.Errors, rep.Timeouts, rep.Invalid, rep.Unmatched)
			}
			if rep.Responses["00"] != rep.Completed {
				t.Errorf("responses %v: every purchase, inquiry and void of its own purchases must be approved", rep.Responses)
			}
			if rep.Kinds["void"] == 0 || rep.Kinds["balance"] == 0 || rep.Kinds["purchase"] == 0 {
				t.Errorf("kinds %v", rep.Kinds)
			}
		})
	}
}

// TestEachRunStartsItsTracesWhereTheLastRunCouldNotHaveReached: a later run begins 1,000 traces a second
// further on, so a terminal sending under 1,000 a second never repeats the trace of a run before it within
// the switch's duplicate window.
func TestEachRunStartsItsTracesWhereTheLastRunCouldNotHaveReached(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		gap  time.Duration
		want int
	}{{time.Second, 1000}, {10 * time.Second, 10000}, {5 * time.Minute, 300000}} {
		next := traceStart(t0.Add(tc.gap))
		if got := (next - traceStart(t0) + 999999) % 999999; got != tc.want {
			t.Errorf("a run %s later starts %d traces on, want %d", tc.gap, got, tc.want)
		}
	}
}
