package router

import (
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestMaskPANKeepsFirstSixAndLastFour(t *testing.T) {
	tests := map[string]string{
		"4111111111111111":      "411111******1111",
		"4012345678909":         "401234***8909",
		strings.Repeat("7", 19): "777777*********7777",
		"12345":                 "*****",
	}
	for pan, want := range tests {
		if got := MaskPAN(pan); got != want {
			t.Errorf("MaskPAN = %s, want %s", got, want)
		}
	}
}

func TestExplainGivesWinnerRunnersUpAndMissesAgainstFixtures(t *testing.T) {
	tb := mustLoad(t, "testdata/routes.yaml")
	tests := []struct {
		golden string
		key    Key
	}{
		{"explain-bin-table.golden", Key{Channel: "pos", MTI: "0200", Proc: "000000", PAN: testPAN("436742")}},
		{"explain-priority.golden", Key{Channel: "kiosk", MTI: "0200", Proc: "000000", PAN: testPAN("62148850")}},
		{"explain-decline.golden", Key{Channel: "kiosk", MTI: "0200", Proc: "000000", PAN: testPAN("436742")}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			e, err := tb.Explain(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			e.Version, e.Checksum = 0, "" // vary with the load order and the fixture bytes
			out, _ := json.MarshalIndent(e, "", "  ")
			if strings.Contains(string(out), tt.key.PAN) {
				t.Fatal("the explanation holds the full PAN")
			}
			golden(t, tt.golden, append(out, '\n'))
		})
	}
}

func TestExplainAgreesWithLookup(t *testing.T) {
	tb := mustLoad(t, "testdata/routes.yaml")
	for _, prefix := range []string{"436742", "436750", "62148850", "621999", "999999", "411111"} {
		for _, k := range []Key{
			{Channel: "pos", MTI: "0200", Proc: "000000", PAN: testPAN(prefix)},
			{Channel: "kiosk", MTI: "0100", Proc: "200000", PAN: testPAN(prefix)},
			{Channel: "pos", MTI: "0500", Proc: "", PAN: testPAN(prefix)},
		} {
			rt, err := tb.Lookup(k)
			e, _ := tb.Explain(k)
			if err != nil || e.Rule != rt.Rule.Name || e.Kind != rt.Kind.String() {
				t.Errorf("%s %s %s: explain says %s/%s, lookup %s/%s (%v)", prefix, k.Channel, k.MTI, e.Rule, e.Kind,
					rt.Rule.Name, rt.Kind, err)
			}
		}
	}
}

func TestCompareReportsChangedDestinationsAgainstFixture(t *testing.T) {
	d := Compare(mustLoad(t, "testdata/routes.yaml"), mustLoad(t, "testdata/routes-new.yaml"))
	out, _ := json.MarshalIndent(d, "", "  ")
	golden(t, "diff.golden", append(out, '\n'))
}

func TestCompareOfATableWithItselfIsEmpty(t *testing.T) {
	if d := Compare(mustLoad(t, "testdata/routes.yaml"), mustLoad(t, "testdata/routes.yaml")); !d.Empty() {
		t.Fatalf("diff = %+v, want empty", d)
	}
}

func TestCompareBINsCoversEveryPANExactlyOnce(t *testing.T) {
	// Every span the diff reports is one where the two tables disagree, and every PAN where they disagree
	// is in a reported span.
	old, err := LoadBINs("testdata/bins.csv")
	if err != nil {
		t.Fatal(err)
	}
	new, err := LoadBINs("testdata/bins-new.csv")
	if err != nil {
		t.Fatal(err)
	}
	d := Compare(old, new)
	inDiff := func(v uint64) bool {
		for _, c := range d.BINs {
			lo, hi, _ := strings.Cut(c.Range, "-")
			if hi == "" {
				hi = lo
			}
			l, h, _ := parseSpan(lo, hi)
			if l <= v && v <= h {
				return true
			}
		}
		return false
	}
	for _, ix := range []*binIndex{old.bins, new.bins} {
		for _, iv := range ix.iv {
			for _, v := range []uint64{iv.start, iv.start - 1, iv.start + 1} {
				if v >= pow10[panDigits] {
					continue
				}
				a, _ := old.bins.find(v)
				b, _ := new.bins.find(v)
				differ := (a == nil) != (b == nil) || a != nil && (a.Acquirer != b.Acquirer || a.CardType != b.CardType)
				if differ != inDiff(v) {
					t.Fatalf("%019d: tables differ %v, diff says %v", v, differ, inDiff(v))
				}
			}
		}
	}
}
