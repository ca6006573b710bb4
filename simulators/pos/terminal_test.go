package pos

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/railswitch/railswitch/simulators/pos/postest"
)

// Test keys and cards: published vectors only (shared/reference).
const (
	testTMK = "70F2A84CCBC2AE8625CBB0F2C22AB923" // unionpay-pos.md test vector B
	testBDK = "0123456789ABCDEFFEDCBA9876543210" // X9.24-1:2009 A.4
	testKSN = "FFFF9876543210E00000"
	panCUP  = "6212341234567890"
	panVisa = "4012345678909"
	pan4111 = "4111111111111111"
	testPIN = "123456"
)

func tmkBytes(t testing.TB) []byte {
	b, err := hex.DecodeString(testTMK)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testConfig(layout string) Config {
	return Config{TerminalID: "T0000001", MerchantID: "898110000000001", TMK: testTMK, KeyLayout: layout,
		Timeout: 2 * time.Second}
}

// startHost starts a POS host and a terminal signed on to it.
func startHost(t *testing.T, h *postest.Host, cfg Config, opts ...Option) *Terminal {
	t.Helper()
	if h.Spec == "" {
		h.Spec = "cup-pos"
	}
	if h.TMK == nil {
		h.TMK = tmkBytes(t)
	}
	if h.PIN == "" {
		h.PIN = testPIN
	}
	addr := h.Start(t)
	term, err := New(cfg, addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { term.Close() })
	return term
}

func do(t *testing.T, term *Terminal, req Request) *Result {
	t.Helper()
	res, err := term.Do(context.Background(), req)
	if err != nil {
		t.Fatalf("%s: %v", req.Txn, err)
	}
	return res
}

func mustApprove(t *testing.T, term *Terminal, req Request) *Result {
	t.Helper()
	res := do(t, term, req)
	if !res.Approved {
		t.Fatalf("%s: rc %q, problems %v", req.Txn, res.RC, res.Problems)
	}
	return res
}

func TestSignOnLoadsWorkingKeysOfEveryLayoutAndAdoptsBatch(t *testing.T) {
	for _, layout := range []string{"001", "003", "004"} {
		t.Run(layout, func(t *testing.T) {
			h := &postest.Host{NewBatch: "000123"}
			cfg := testConfig(layout)
			cfg.EncryptTrack = layout == "004"
			term := startHost(t, h, cfg)
			res := mustApprove(t, term, Request{Txn: SignOn})
			if st := term.State(); !st.SignedOn || st.Batch != "000123" {
				t.Fatalf("after sign-on: signed on %v, batch %s", st.SignedOn, st.Batch)
			}
			if got := res.Request.String(60); got != "00000001"+layout {
				t.Errorf("0800 field 60 = %s", got)
			}
			// The keys work: the host checks the PIN under the PIK, the MAC under the MAK and, with 004,
			// decrypts the track under the TDK to find the PAN.
			res = mustApprove(t, term, Request{Txn: Purchase, Amount: 100, Card: Card{PAN: panCUP, PIN: testPIN}})
			if sec := res.Request.String(53); (layout == "004") != (sec[2] == '1') || (layout != "001") != (sec[1] == '6') {
				t.Errorf("field 53 = %s for layout %s", sec, layout)
			}
			if got := res.Request.String(60); got != "22000123000"+"50" {
				t.Errorf("0200 field 60 = %s", got)
			}
		})
	}
}

func TestSignOnUnderWrongTMKFailsTheKeyCheckValue(t *testing.T) {
	h := &postest.Host{TMK: bytes.Repeat([]byte{0x01}, 16)}
	term := startHost(t, h, testConfig("003"))
	res := do(t, term, Request{Txn: SignOn})
	if res.Approved || !strings.Contains(FormatProblems(res.Problems), "check value") {
		t.Fatalf("approved %v, problems %v", res.Approved, res.Problems)
	}
	if term.State().SignedOn {
		t.Fatal("signed on with keys that fail their check values")
	}
	if _, err := term.Do(context.Background(), Request{Txn: Purchase, Amount: 1, Card: Card{PAN: panCUP}}); err == nil {
		t.Fatal("purchase allowed without sign-on")
	}
}

func TestPurchaseCardVariantsAndHostRules(t *testing.T) {
	h := &postest.Host{Limit: 100000}
	cfg := testConfig("004")
	cfg.EncryptTrack = true
	term := startHost(t, h, cfg)
	mustApprove(t, term, Request{Txn: SignOn})
	tests := []struct {
		name   string
		card   Card
		amount int64
		rc     string
		fields map[int]bool // fields that must be present (true) or absent (false) in the request
	}{
		{"swipe with PIN", Card{PAN: panCUP, PIN: testPIN}, 1000, "00", map[int]bool{2: false, 35: true, 52: true, 26: true, 55: false}},
		{"swipe without PIN", Card{PAN: panVisa}, 1000, "00", map[int]bool{35: true, 52: false, 26: false, 53: true}},
		{"chip with PIN", Card{PAN: pan4111, Entry: Chip, PIN: testPIN}, 2500, "00", map[int]bool{2: true, 14: true, 23: true, 55: true}},
		{"manual", Card{PAN: panCUP, Entry: Manual, Expiry: "2912"}, 300, "00", map[int]bool{2: true, 14: true, 35: false, 53: false}},
		{"wrong PIN", Card{PAN: panCUP, PIN: "999999"}, 1000, "55", nil},
		{"over the limit", Card{PAN: panCUP}, 100001, "51", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := do(t, term, Request{Txn: Purchase, Amount: tc.amount, Card: tc.card})
			if res.RC != tc.rc || len(res.Problems) > 0 {
				t.Fatalf("rc %q want %q, problems %v", res.RC, tc.rc, res.Problems)
			}
			for n, want := range tc.fields {
				if res.Request.Has(n) != want {
					t.Errorf("field %d present %v, want %v", n, !want, want)
				}
			}
			if term.State().Reversal != nil {
				t.Error("reversal kept after a matched reply")
			}
		})
	}
}

func TestTrackEncryptionChangesOnlyTheBlockBeforeTheLastDigit(t *testing.T) {
	h := &postest.Host{}
	cfg := testConfig("004")
	cfg.EncryptTrack = true
	term := startHost(t, h, cfg)
	mustApprove(t, term, Request{Txn: SignOn})
	plain := "6212341234567890=30121010000000"
	enc, ok, err := term.track(plain)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	n := len(plain)
	if len(enc) != n || enc[:n-17] != plain[:n-17] || enc[n-1] != plain[n-1] || enc[n-17:n-1] == plain[n-17:n-1] {
		t.Fatalf("encrypted track has the wrong shape (%d characters)", len(enc))
	}
}

func TestFollowUpTransactionsReferToTheirOriginals(t *testing.T) {
	term := startHost(t, &postest.Host{}, testConfig("003"))
	mustApprove(t, term, Request{Txn: SignOn})
	card := Card{PAN: panCUP, PIN: testPIN}

	p := mustApprove(t, term, Request{Txn: Purchase, Amount: 5000, Card: card})
	v := mustApprove(t, term, Request{Txn: Void, Card: Card{PIN: testPIN}})
	if v.Request.String(4) != "000000005000" || v.Request.String(61) != "000001"+p.Trace ||
		v.Request.String(37) != p.Reply.String(37) || v.Request.String(38) != p.Reply.String(38) {
		t.Errorf("void fields 4=%s 37=%s 38=%s 61=%s", v.Request.String(4), v.Request.String(37), v.Request.String(38), v.Request.String(61))
	}
	if _, err := term.Do(context.Background(), Request{Txn: Void, Orig: p.Trace}); err == nil {
		t.Error("a voided purchase was voided again")
	}

	p2 := mustApprove(t, term, Request{Txn: Purchase, Amount: 3000, Card: card})
	r := mustApprove(t, term, Request{Txn: Refund, Amount: 1000, Orig: p2.Trace})
	if r.Request.MTI() != "0220" || r.Request.String(63) != "CUP" || !strings.HasPrefix(r.Request.String(61), "000001"+p2.Trace) ||
		len(r.Request.String(61)) != 16 {
		t.Errorf("refund %s 61=%s 63=%s", r.Request.MTI(), r.Request.String(61), r.Request.String(63))
	}

	pa := mustApprove(t, term, Request{Txn: PreAuth, Amount: 8000, Card: card})
	if pa.Request.MTI() != "0100" || pa.Request.String(25) != "06" || pa.Request.String(3) != "030000" {
		t.Errorf("pre-auth %s 3=%s 25=%s", pa.Request.MTI(), pa.Request.String(3), pa.Request.String(25))
	}
	c := mustApprove(t, term, Request{Txn: Completion, Amount: 7000, Orig: pa.Trace})
	if c.Request.String(38) != pa.Reply.String(38) || c.Request.String(4) != "000000007000" {
		t.Errorf("completion 38=%s 4=%s", c.Request.String(38), c.Request.String(4))
	}
	cv := mustApprove(t, term, Request{Txn: CompletionVoid, Orig: c.Trace})
	if cv.Request.String(4) != "000000007000" || cv.Request.String(60)[:2] != "21" {
		t.Errorf("completion void 4=%s 60=%s", cv.Request.String(4), cv.Request.String(60))
	}
	pa2 := mustApprove(t, term, Request{Txn: PreAuth, Amount: 900, Card: card})
	mustApprove(t, term, Request{Txn: PreAuthVoid, Orig: pa2.Trace})
	pa3 := mustApprove(t, term, Request{Txn: PreAuth, Amount: 400, Card: card})
	ca := mustApprove(t, term, Request{Txn: CompletionAdvice, Orig: pa3.Trace})
	if ca.Request.MTI() != "0220" || ca.Request.String(60)[:2] != "24" {
		t.Errorf("completion advice %s 60=%s", ca.Request.MTI(), ca.Request.String(60))
	}
	b := mustApprove(t, term, Request{Txn: Balance, Card: card})
	if b.Request.Has(4) || !b.Reply.Has(54) {
		t.Errorf("balance: request 4 %v, reply 54 %v", b.Request.Has(4), b.Reply.Has(54))
	}
	// Debits: purchase 3000 + completion advice 400 (the void and the completion void cancelled theirs);
	// credits: refund 1000.
	if got := term.Totals(); got != (Totals{DebitAmount: 3400, DebitCount: 2, CreditAmount: 1000, CreditCount: 1}) {
		t.Errorf("totals %+v", got)
	}
}

func TestUnansweredRequestIsReversedBeforeTheNextTransaction(t *testing.T) {
	for _, tc := range []struct {
		name  string
		drop  func(h *postest.Host) Fault
		entry Entry
	}{
		{"host drops the reply", func(h *postest.Host) Fault { h.DropNext(1); return NoFault }, Swipe},
		{"terminal loses the reply", func(*postest.Host) Fault { return DropReply }, Chip},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &postest.Host{}
			cfg := testConfig("003")
			cfg.Timeout = time.Second // the host drops one reply: the terminal waits this long
			term := startHost(t, h, cfg)
			mustApprove(t, term, Request{Txn: SignOn})
			fault := tc.drop(h)
			card := Card{PAN: panCUP, PIN: testPIN, Entry: tc.entry}
			res, err := term.Do(context.Background(), Request{Txn: Purchase, Amount: 700, Card: card, Fault: fault})
			if !errors.Is(err, ErrNoReply) {
				t.Fatalf("err = %v, want ErrNoReply", err)
			}
			st := term.State()
			if st.Reversal == nil || st.Reversal.Reason != "98" || st.Reversal.Trace != res.Trace {
				t.Fatalf("stored reversal %+v", st.Reversal)
			}
			next := mustApprove(t, term, Request{Txn: Balance, Card: Card{PAN: panCUP}})
			if next.Reversal == nil || !next.Reversal.Approved {
				t.Fatalf("no acknowledged reversal before the next transaction: %+v", next.Reversal)
			}
			seen := h.Seen()
			if !slices.Equal(seen[len(seen)-3:], []string{"0200", "0400 39=98", "0200"}) {
				t.Errorf("host saw %v", seen)
			}
			rev := h.Last("0400")
			for _, n := range []int{26, 35, 36, 37, 52, 53} {
				if rev.Has(n) {
					t.Errorf("reversal carries field %d", n)
				}
			}
			if rev.String(11) != res.Trace || rev.String(4) != "000000000700" {
				t.Errorf("reversal 11=%s 4=%s, original trace %s", rev.String(11), rev.String(4), res.Trace)
			}
			if tc.entry == Chip && (!rev.Has(55) || len(rev.Raw(55)) >= len(res.Request.String(55))) {
				t.Error("chip reversal should carry the reduced field 55")
			}
			if term.State().Reversal != nil {
				t.Error("reversal still stored after its 0410")
			}
		})
	}
}

func TestApprovalWithBadMACIsRejectedAndReversedWithA0(t *testing.T) {
	h := &postest.Host{CorruptMAC: true}
	term := startHost(t, h, testConfig("001"))
	mustApprove(t, term, Request{Txn: SignOn})
	res := do(t, term, Request{Txn: Purchase, Amount: 100, Card: Card{PAN: panVisa}})
	if res.Approved || res.RC != "00" || !strings.Contains(FormatProblems(res.Problems), "MAC") {
		t.Fatalf("approved %v rc %s problems %v", res.Approved, res.RC, res.Problems)
	}
	if r := term.State().Reversal; r == nil || r.Reason != "A0" {
		t.Fatalf("reversal %+v, want reason A0", r)
	}
	h.CorruptMAC = false
	do(t, term, Request{Txn: Balance, Card: Card{PAN: panVisa}})
	if seen := h.Seen(); !slices.Contains(seen, "0400 39=A0") {
		t.Errorf("host saw %v", seen)
	}
}

func TestRequestWithBadMACIsDeclinedA0WithoutReversal(t *testing.T) {
	term := startHost(t, &postest.Host{}, testConfig("003"))
	mustApprove(t, term, Request{Txn: SignOn})
	res := do(t, term, Request{Txn: Purchase, Amount: 100, Card: Card{PAN: panVisa}, Fault: BadMAC})
	if res.RC != "A0" || res.Approved || len(res.Problems) > 0 || term.State().Reversal != nil {
		t.Fatalf("rc %s approved %v problems %v reversal %+v", res.RC, res.Approved, res.Problems, term.State().Reversal)
	}
}

func TestSettlementBalancedClosesTheBatch(t *testing.T) {
	h := &postest.Host{}
	term := startHost(t, h, testConfig("003"))
	mustApprove(t, term, Request{Txn: SignOn})
	mustApprove(t, term, Request{Txn: Purchase, Amount: 1200, Card: Card{PAN: panCUP}})
	p := mustApprove(t, term, Request{Txn: Purchase, Amount: 800, Card: Card{PAN: panVisa}})
	mustApprove(t, term, Request{Txn: Refund, Amount: 300, Orig: p.Trace})
	res := mustApprove(t, term, Request{Txn: Settle})
	if got := res.Request.String(48); got != "000000002000002000000000300001"+"0"+strings.Repeat("0", 31) {
		t.Errorf("0500 field 48 = %s", got)
	}
	if len(res.Upload) != 0 || h.Uploaded() != 0 {
		t.Errorf("balanced settlement uploaded %d messages", len(res.Upload))
	}
	if st := term.State(); st.Batch != "000002" || len(st.Records) != 0 {
		t.Errorf("after settlement batch %s, %d records", st.Batch, len(st.Records))
	}
}

func TestSettlementNotBalancedUploadsTheBatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		forced bool
		fault  Fault
	}{
		{"host says not balanced", true, NoFault},
		{"terminal reports wrong totals", false, WrongTotals},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &postest.Host{ForceUnbalanced: tc.forced}
			term := startHost(t, h, testConfig("003"))
			mustApprove(t, term, Request{Txn: SignOn})
			for i := 0; i < 10; i++ {
				mustApprove(t, term, Request{Txn: Purchase, Amount: int64(100 + i), Card: Card{PAN: pan4111}})
			}
			res := mustApprove(t, term, Request{Txn: Settle, Fault: tc.fault})
			if len(res.Upload) != 3 || h.Uploaded() != 10 {
				t.Fatalf("upload of 10 in %d messages, host counted %d", len(res.Upload), h.Uploaded())
			}
			first := res.Upload[0].Request
			if code := first.String(60)[8:]; code != "201" || !strings.HasPrefix(first.String(48), "08") || len(first.String(48)) != 2+8*40 {
				t.Errorf("first 0320: 60=%s 48 length %d", first.String(60), len(first.String(48)))
			}
			if rec := first.String(48)[2:42]; rec != "00"+"000002"+"0000"+pan4111+"000000000100" {
				t.Errorf("first upload record %s", rec)
			}
			end := res.Upload[2].Request
			if end.String(48) != "0010" || end.String(60)[8:] != "202" {
				t.Errorf("end 0320: 48=%s 60=%s", end.String(48), end.String(60))
			}
			if term.State().Batch != "000002" {
				t.Errorf("batch %s after upload", term.State().Batch)
			}
		})
	}
}

func TestHostRequestForNewSignOnBlocksTheNextTransaction(t *testing.T) {
	h := &postest.Host{AskSignOn: true}
	term := startHost(t, h, testConfig("003"))
	mustApprove(t, term, Request{Txn: SignOn})
	res := mustApprove(t, term, Request{Txn: Purchase, Amount: 100, Card: Card{PAN: panCUP}})
	if !strings.Contains(strings.Join(res.Notes, ";"), "new sign-on") || term.State().SignedOn {
		t.Fatalf("notes %v, signed on %v", res.Notes, term.State().SignedOn)
	}
	if _, err := term.Do(context.Background(), Request{Txn: Purchase, Amount: 100, Card: Card{PAN: panCUP}}); err == nil {
		t.Fatal("purchase sent before the new sign-on")
	}
	mustApprove(t, term, Request{Txn: SignOn})
	if !term.State().SignedOn {
		t.Fatal("not signed on after the new sign-on")
	}
}

func TestEchoAndSignOff(t *testing.T) {
	term := startHost(t, &postest.Host{}, testConfig("003"))
	mustApprove(t, term, Request{Txn: SignOn})
	e := mustApprove(t, term, Request{Txn: Echo})
	if e.Request.MTI() != "0820" || e.Request.String(60)[8:] != "301" {
		t.Errorf("echo %s 60=%s", e.Request.MTI(), e.Request.String(60))
	}
	s := mustApprove(t, term, Request{Txn: SignOff})
	if s.Request.String(60)[8:] != "002" || term.State().SignedOn {
		t.Errorf("sign-off 60=%s, signed on %v", s.Request.String(60), term.State().SignedOn)
	}
}

func TestDUKPTPINBlocksCarryTheirKSN(t *testing.T) {
	bdk, _ := hex.DecodeString(testBDK)
	h := &postest.Host{BDK: bdk, PIN: "1234"}
	cfg := testConfig("003")
	cfg.DUKPT = &DUKPT{BDK: testBDK, KSN: testKSN}
	term := startHost(t, h, cfg)
	mustApprove(t, term, Request{Txn: SignOn})
	for i := 1; i <= 2; i++ {
		res := mustApprove(t, term, Request{Txn: Purchase, Amount: 100, Card: Card{PAN: panVisa, PIN: "1234"}})
		want, _ := hex.DecodeString(testKSN)
		want[9] = byte(i)
		if got, _ := res.Request.Value(62); !bytes.Equal(got, want) {
			t.Errorf("purchase %d KSN %X, want %X", i, got, want)
		}
	}
	h.PIN = "0000"
	if res := do(t, term, Request{Txn: Purchase, Amount: 100, Card: Card{PAN: panVisa, PIN: "1234"}}); res.RC != "55" {
		t.Errorf("wrong PIN under DUKPT: rc %s", res.RC)
	}
}

func TestStateFileChainsRunsAndKeepsSecretsSealed(t *testing.T) {
	h := &postest.Host{}
	path := filepath.Join(t.TempDir(), "pos.json")
	cfg := testConfig("003")
	cfg.Timeout = time.Second // the host drops one reply: the terminal waits this long
	term := startHost(t, h, cfg, WithStateFile(path))
	mustApprove(t, term, Request{Txn: SignOn})
	h.DropNext(1)
	if _, err := term.Do(context.Background(), Request{Txn: Purchase, Amount: 900, Card: Card{PAN: panCUP, Entry: Manual}}); !errors.Is(err, ErrNoReply) {
		t.Fatalf("err %v", err)
	}
	term.Close()

	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v", info.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if bytes.Contains(data, []byte(panCUP)) || bytes.Contains(data, []byte(hex.EncodeToString([]byte(panCUP)))) {
		t.Error("state file holds the PAN in clear")
	}

	// A new run (a new process in the CLI) picks up the keys and sends the stored reversal first.
	again, err := New(cfg, term.link.addr, WithStateFile(path))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	res := mustApprove(t, again, Request{Txn: Purchase, Amount: 100, Card: Card{PAN: panCUP}})
	if res.Reversal == nil || !res.Reversal.Approved {
		t.Fatal("stored reversal not sent by the next run")
	}
	if _, err := New(Config{TerminalID: cfg.TerminalID, MerchantID: cfg.MerchantID, TMK: strings.Repeat("11", 16)}, "x", WithStateFile(path)); err == nil {
		t.Error("state file opened under another TMK")
	}
}

func TestConfigRejectsBadValuesWithoutShowingKeys(t *testing.T) {
	base := testConfig("003")
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"short tid", func(c *Config) { c.TerminalID = "T1" }},
		{"short mid", func(c *Config) { c.MerchantID = "M" }},
		{"bad TMK", func(c *Config) { c.TMK = "70F2A84CCBC2AE86ZZ" }},
		{"bad layout", func(c *Config) { c.KeyLayout = "002" }},
		{"track encryption without TDK", func(c *Config) { c.EncryptTrack = true }},
		{"railway on cup-pos", func(c *Config) {
			c.Railway = &Railway{Bureau: "03", Station: "BJP", Business: "1", Order: "E1", Window: "W1"}
		}},
		{"bad bureau", func(c *Config) {
			c.Spec = "rail-pos"
			c.Railway = &Railway{Bureau: "19", Station: "BJP", Business: "1", Order: "E1", Window: "W1"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.edit(&c)
			_, err := New(c, "127.0.0.1:1")
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "70F2") {
				t.Errorf("error shows the key: %v", err)
			}
		})
	}
}

func TestRailPOSSendsRailwayData(t *testing.T) {
	cfg := testConfig("003")
	cfg.Spec = "rail-pos"
	cfg.Railway = &Railway{Bureau: "03", Station: "BJP", Business: "1", Order: "E123456789", Window: "W0012"}
	term := startHost(t, &postest.Host{Spec: "rail-pos"}, cfg)
	mustApprove(t, term, Request{Txn: SignOn})
	res := mustApprove(t, term, Request{Txn: Purchase, Amount: 100, Card: Card{PAN: panCUP}})
	if got := res.Request.String(57); got != "03BJP  1E123456789          W0012   " {
		t.Errorf("field 57 = %q", got)
	}
}
