package router

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

func mustLoad(t testing.TB, path string) *Table {
	t.Helper()
	tb, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return tb
}

func names(as []*Acquirer) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Name)
	}
	return out
}

func TestLookupAppliesEveryRuleKindInFileOrder(t *testing.T) {
	tb := mustLoad(t, "testdata/routes.yaml")
	tests := []struct {
		name                      string
		key                       Key
		rule                      string
		kind                      Kind
		acquirer                  string
		fallbacks                 []string
		handler, code, bin, cards string
	}{
		{name: "network class goes to a local handler", key: Key{Channel: "pos", MTI: "0800"},
			rule: "network-local", kind: KindLocal, handler: "network"},
		{name: "reversal goes to the original acquirer", key: Key{Channel: "pos", MTI: "0400", Proc: "000000", PAN: testPAN("436742")},
			rule: "reversals", kind: KindOriginal, bin: "436742"},
		{name: "processing-code prefix: void goes to the original acquirer", key: Key{Channel: "pos", MTI: "0200", Proc: "200000", PAN: testPAN("436742")},
			rule: "voids-refunds", kind: KindOriginal, bin: "436742"},
		{name: "channel and card type: credit at a kiosk is declined", key: Key{Channel: "kiosk", MTI: "0200", Proc: "000000", PAN: testPAN("436742")},
			rule: "kiosk-no-credit", kind: KindDecline, code: "57", bin: "436742"},
		{name: "debit at a kiosk passes the card-type rule", key: Key{Channel: "kiosk", MTI: "0200", Proc: "000000", PAN: testPAN("436750")},
			rule: "by-bin", kind: KindAcquirer, acquirer: "icbc", bin: "436700-436799"},
		{name: "processing-code prefix to a named acquirer with its own fallbacks", key: Key{Channel: "pos", MTI: "0200", Proc: "310000", PAN: testPAN("436742")},
			rule: "balance-to-cup", kind: KindAcquirer, acquirer: "cup", fallbacks: []string{"icbc"}, bin: "436742"},
		{name: "BIN written in the rule", key: Key{Channel: "pos", MTI: "0200", Proc: "000000", PAN: "4111111111111111"},
			rule: "test-cards", kind: KindDecline, code: "14"},
		{name: "BIN low-high range written in the rule", key: Key{Channel: "pos", MTI: "0200", Proc: "000000", PAN: testPAN("401250")},
			rule: "test-cards", kind: KindDecline, code: "14"},
		{name: "BIN table: the range inside another wins", key: Key{Channel: "pos", MTI: "0200", Proc: "000000", PAN: testPAN("436742")},
			rule: "by-bin", kind: KindAcquirer, acquirer: "ccb", fallbacks: []string{"icbc"}, bin: "436742"},
		{name: "BIN table: identical ranges, higher priority wins", key: Key{Channel: "pos", MTI: "0200", Proc: "000000", PAN: testPAN("62148850")},
			rule: "by-bin", kind: KindAcquirer, acquirer: "icbc", bin: "621488"},
		{name: "BIN table: the outer range", key: Key{Channel: "pos", MTI: "0100", Proc: "030000", PAN: testPAN("62212345")},
			rule: "by-bin", kind: KindAcquirer, acquirer: "cup", fallbacks: []string{"icbc"}, bin: "621000-629999"},
		{name: "no BIN range: the default rule, with the rule's fallbacks", key: Key{Channel: "pos", MTI: "0200", Proc: "000000", PAN: testPAN("999999")},
			rule: "default", kind: KindAcquirer, acquirer: "cup", fallbacks: []string{"ccb"}},
		{name: "class not listed: the default rule", key: Key{Channel: "pos", MTI: "0500", PAN: testPAN("436742")},
			rule: "default", kind: KindAcquirer, acquirer: "cup", fallbacks: []string{"ccb"}, bin: "436742"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := tb.Lookup(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if rt.Rule.Name != tt.rule || rt.Kind != tt.kind || rt.Handler != tt.handler || rt.ResponseCode != tt.code {
				t.Errorf("got rule %s kind %s handler %q code %q; want %s %s %q %q", rt.Rule.Name, rt.Kind, rt.Handler,
					rt.ResponseCode, tt.rule, tt.kind, tt.handler, tt.code)
			}
			if got := ""; rt.Acquirer != nil && rt.Acquirer.Name != tt.acquirer || rt.Acquirer == nil && tt.acquirer != got {
				t.Errorf("acquirer = %v, want %s", rt.Acquirer, tt.acquirer)
			}
			if !slices.Equal(names(rt.Fallbacks), tt.fallbacks) {
				t.Errorf("fallbacks = %v, want %v", names(rt.Fallbacks), tt.fallbacks)
			}
			if got := ""; rt.BIN != nil && rt.BIN.String() != tt.bin || rt.BIN == nil && tt.bin != got {
				t.Errorf("BIN = %v, want %s", rt.BIN, tt.bin)
			}
		})
	}
}

func TestLookupRejectsMalformedKeys(t *testing.T) {
	tb := mustLoad(t, "testdata/routes.yaml")
	tests := []struct {
		key  Key
		want error
	}{
		{Key{MTI: "0200", PAN: strings.Repeat("1", 11)}, ErrBadPAN},
		{Key{MTI: "0200", PAN: "41111111111111x1"}, ErrBadPAN},
		{Key{MTI: "0200", PAN: strings.Repeat("1", 20)}, ErrBadPAN},
		{Key{MTI: "02x0", PAN: testPAN("436742")}, ErrBadMTI},
		{Key{MTI: "200", PAN: testPAN("436742")}, ErrBadMTI},
	}
	for _, tt := range tests {
		if _, err := tb.Lookup(tt.key); !errors.Is(err, tt.want) {
			t.Errorf("Lookup(MTI %q) = %v, want %v", tt.key.MTI, err, tt.want)
		}
	}
}

func TestLookupWithoutMatchingRuleIsNoRoute(t *testing.T) {
	tb, err := LoadBINs("testdata/bins.csv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Lookup(Key{MTI: "0200", PAN: testPAN("999999")}); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("err = %v, want ErrNoRoute", err)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tb := mustLoad(t, "testdata/routes.yaml")
	k := Key{Channel: "pos", MTI: "0200", Proc: "000000", PAN: testPAN("62148850")}
	if n := testing.AllocsPerRun(100, func() { _, _ = tb.Lookup(k) }); n != 0 {
		t.Fatalf("Lookup allocates %v times", n)
	}
}

func TestBINFileAloneRoutesEveryRowToItsAcquirer(t *testing.T) {
	tb, err := LoadBINs("testdata/bins.csv")
	if err != nil {
		t.Fatal(err)
	}
	for prefix, want := range map[string]string{"436742": "ccb", "436799": "icbc", "62148800": "icbc", "621489": "cup", "601382": "ccb"} {
		rt, err := tb.Lookup(Key{MTI: "0200", PAN: testPAN(prefix)})
		if err != nil || rt.Acquirer.Name != want {
			t.Errorf("%s: acquirer %v, %v; want %s", prefix, rt.Acquirer, err, want)
		}
	}
}

// TestValidationNamesFileAndLineOfEveryProblem loads each bad fixture and expects every problem in it,
// each as "file:line: text".
func TestValidationNamesFileAndLineOfEveryProblem(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"testdata/bad-bins.csv", []string{
			`testdata/bad-bins.csv:2: BIN "4367" is not 6 to 11 digits`,
			`testdata/bad-bins.csv:3: BIN "43674a" is not 6 to 11 digits`,
			`testdata/bad-bins.csv:4: BIN range 436800-436700: low is above high`,
			`testdata/bad-bins.csv:6: BIN range 505000-515000 partially overlaps 500000-509999 at testdata/bad-bins.csv:5`,
			`testdata/bad-bins.csv:8: BIN range 520000 is the same as 520000 at testdata/bad-bins.csv:7 with the same priority 1`,
			`testdata/bad-bins.csv:9: priority "x" is not a whole number`,
			`testdata/bad-bins.csv:10: want 3 to 5 columns`,
			`testdata/bad-bins.csv:11: acquirer is empty`,
		}},
		{"testdata/bad-header.csv", []string{
			`testdata/bad-header.csv:1: the header line must be bin_low,bin_high,acquirer,priority,card_type`,
		}},
		{"testdata/broken.yaml", []string{`testdata/broken.yaml:2: yaml: line 2:`}},
		{"testdata/bad-routes.yaml", []string{
			`testdata/bad-routes-bins.csv:2: unknown acquirer "nobank"`,
			`testdata/bad-routes.yaml:1: open testdata/missing.csv:`,
			`testdata/bad-routes.yaml:3: unknown acquirer "nobank" in fallbacks`,
			`testdata/bad-routes.yaml:4: unknown strategy "random"`,
			`testdata/bad-routes.yaml:8: acquirer ccb is already defined at testdata/bad-routes.yaml:3`,
			`testdata/bad-routes.yaml:10: acquirer icbc needs 1 to 64 endpoints`,
			`testdata/bad-routes.yaml:16: rule shadowed is unreachable: rule all-financial at testdata/bad-routes.yaml:13`,
			`testdata/bad-routes.yaml:20: rule ghost: unknown acquirer "nobank"`,
			`testdata/bad-routes.yaml:23: a rule needs exactly one result`,
			`testdata/bad-routes.yaml:26: rule bad-values: unknown class "nonsense"`,
			`testdata/bad-routes.yaml:26: rule bad-values: processing code "2x" is not 1 to 6 digits`,
			`testdata/bad-routes.yaml:26: rule bad-values: BIN "12345" is not 6 to 11 digits`,
			`testdata/bad-routes.yaml:26: rule bad-values: card type "platinum" is in no BIN range`,
			`testdata/bad-routes.yaml:26: rule bad-values: decline code "5" is not 2 digits or capital letters`,
			`testdata/bad-routes.yaml:32: rule all-financial: the name is already used at testdata/bad-routes.yaml:13`,
			`testdata/bad-routes.yaml:35: unknown rule key "colour"`,
			`testdata/bad-routes.yaml:35: a rule needs a name`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			var err error
			if strings.HasSuffix(tt.file, ".csv") {
				_, err = LoadBINs(tt.file)
			} else {
				_, err = Load(tt.file)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want Errors", err)
			}
			got := strings.Split(errs.Error(), "\n")
			if len(got) != len(tt.want) {
				t.Errorf("%d problems, want %d:\n%s", len(got), len(tt.want), errs)
			}
			for i := range min(len(got), len(tt.want)) {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("problem %d = %q, want it to start with %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestUnreachableRules(t *testing.T) {
	// Each case: an earlier rule and a later one (YAML bodies), and whether the later one is unreachable.
	tests := []struct {
		name, first, second string
		unreachable         bool
	}{
		{"no conditions shadows everything", "acquirer: ccb", "class: financial\n    acquirer: icbc", true},
		{"same class", "class: financial\n    acquirer: ccb", "class: financial\n    proc: \"00\"\n    acquirer: icbc", true},
		{"shorter proc prefix shadows longer", "proc: \"2\"\n    acquirer: ccb", "proc: \"200000\"\n    acquirer: icbc", true},
		{"wider BIN shadows narrower", "bin: 621000-629999\n    acquirer: ccb", "bin: \"621488\"\n    acquirer: icbc", true},
		{"channel subset", "channel: [pos, kiosk]\n    acquirer: ccb", "channel: kiosk\n    decline: \"57\"", true},
		{"a BIN-table rule shadows a card-type rule", "bin_table: true", "card_type: credit\n    decline: \"57\"", true},
		{"different class is reachable", "class: financial\n    acquirer: ccb", "class: reversal\n    original: true", false},
		{"narrower first is reachable", "proc: \"20\"\n    acquirer: ccb", "proc: \"2\"\n    acquirer: icbc", false},
		{"a BIN-table rule does not shadow a rule that matches PANs outside the table", "bin_table: true", "acquirer: icbc", false},
		{"partly overlapping channels are reachable", "channel: [pos]\n    acquirer: ccb", "channel: [pos, kiosk]\n    acquirer: icbc", false},
	}
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/bins.csv", []byte("bin_low,bin_high,acquirer,priority,card_type\n436742,436742,ccb,,credit\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := "bins: bins.csv\nacquirers:\n" +
				"  - {name: ccb, endpoints: [{name: a, address: \"h:1\"}]}\n" +
				"  - {name: icbc, endpoints: [{name: a, address: \"h:2\"}]}\n" +
				"rules:\n  - name: first\n    " + tt.first + "\n  - name: second\n    " + tt.second + "\n"
			path := dir + "/routes.yaml"
			if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			got := err != nil && strings.Contains(err.Error(), "rule second is unreachable: rule first")
			if got != tt.unreachable || (err != nil && !got) {
				t.Fatalf("unreachable = %v, want %v (err: %v)", got, tt.unreachable, err)
			}
		})
	}
}

func TestChecksumIsSHA256OfTheSourceFilesAndVersionsGrow(t *testing.T) {
	a := mustLoad(t, "testdata/routes.yaml")
	b := mustLoad(t, "testdata/routes.yaml")
	h := sha256.New()
	for _, f := range []string{"testdata/routes.yaml", "testdata/bins.csv"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(data)
	}
	if want := hex.EncodeToString(h.Sum(nil)); a.Checksum() != want || a.ShortChecksum() != want[:12] {
		t.Errorf("checksum = %s, want %s", a.Checksum(), want)
	}
	if b.Version() <= a.Version() {
		t.Errorf("versions %d then %d: want growing", a.Version(), b.Version())
	}
	if !slices.Equal(a.Files(), []string{"testdata/routes.yaml", "testdata/bins.csv"}) {
		t.Errorf("files = %v", a.Files())
	}
}

func TestProblemsNeverShowACardNumber(t *testing.T) {
	path := t.TempDir() + "/bins.csv"
	for _, body := range []string{ // card numbers in the wrong columns; a CSV syntax error
		"bin_low,bin_high,acquirer,priority,card_type\n4111111111111111,411111,ccb,4012345678909,\n",
		"bin_low,bin_high,acquirer,priority,card_type\n411111,411111,ccb,\"x\"4111111111111111,\n",
	} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadBINs(path)
		if err == nil {
			t.Fatal("no error")
		}
		if msg := err.Error(); strings.Contains(msg, "4111111111111111") || strings.Contains(msg, "4012345678909") {
			t.Fatalf("a problem shows a card number: %s", msg)
		}
	}
}
