package router

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// testPAN makes a 16-digit PAN-shaped value from a BIN prefix, so no card number is written in the tests.
func testPAN(prefix string) string { return prefix + strings.Repeat("0", 16-len(prefix)) }

func TestPrefixesArePaddedTo19DigitsLowWithZerosHighWithNines(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi uint64
		bad    bool
	}{
		{in: "436742", lo: 4367420000000000000, hi: 4367429999999999999},
		{in: "62148800", lo: 6214880000000000000, hi: 6214880099999999999},
		{in: "12345678901", lo: 1234567890100000000, hi: 1234567890199999999},
		{in: "000000", lo: 0, hi: 9999999999999},
		{in: "999999", lo: 9999990000000000000, hi: 9999999999999999999},
		{in: "43674", bad: true},
		{in: strings.Repeat("1", 12), bad: true},
		{in: "43674a", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		lo, hi, err := parsePrefix(tt.in)
		if (err != nil) != tt.bad || lo != tt.lo || hi != tt.hi {
			t.Errorf("parsePrefix(%q) = %d, %d, %v; want %d, %d, bad=%v", tt.in, lo, hi, err, tt.lo, tt.hi, tt.bad)
		}
	}
}

func TestPANsArePaddedWithZerosAndMustBe12To19Digits(t *testing.T) {
	tests := []struct {
		pan string
		v   uint64
		ok  bool
	}{
		{"4111111111111111", 4111111111111111000, true},
		{"4012345678909", 4012345678909000000, true},
		{strings.Repeat("9", 19), 9999999999999999999, true},
		{strings.Repeat("1", 12), 1111111111110000000, true},
		{strings.Repeat("1", 11), 0, false},
		{strings.Repeat("1", 20), 0, false},
		{"41111111111111x1", 0, false},
	}
	for _, tt := range tests {
		if v, ok := padPAN(tt.pan); ok != tt.ok || (ok && v != tt.v) {
			t.Errorf("padPAN(%s) = %d, %v; want %d, %v", MaskPAN(tt.pan), v, ok, tt.v, tt.ok)
		}
	}
}

func TestSpanStringGivesTheShortestPrefixes(t *testing.T) {
	tests := []struct{ low, high, want string }{
		{"436742", "436742", "436742"},
		{"621000", "629999", "621000-629999"},
		{"62148800", "62148899", "621488"},
		{"62148800", "62148849", "6214880-6214884"},
		{"4367420", "4367429", "436742"},
	}
	for _, tt := range tests {
		lo, hi, err := parseSpan(tt.low, tt.high)
		if err != nil {
			t.Fatal(err)
		}
		if got := spanString(lo, hi); got != tt.want {
			t.Errorf("spanString(%s-%s) = %s, want %s", tt.low, tt.high, got, tt.want)
		}
	}
}

// nestedRanges makes a random laminar family of ranges (any two are nested or disjoint), with low-high
// ranges of sibling prefixes and identical pairs of different priority: the shape a valid table has.
func nestedRanges(rng *rand.Rand, n int) []BINRange {
	var out []BINRange
	var grow func(prefix string)
	grow = func(prefix string) {
		for d := 0; d < 10 && len(out) < n; d++ {
			if rng.IntN(3) == 0 {
				continue // a gap
			}
			p := prefix + fmt.Sprint(d)
			if len(p) < minBINLen {
				grow(p)
				continue
			}
			r := BINRange{Low: p, High: p, Acquirer: fmt.Sprintf("a%d", len(out)), Priority: rng.IntN(3)}
			if d > 0 && d < 9 && rng.IntN(5) == 0 { // d > 0: a range of all ten digits would equal its parent
				d += 1 + rng.IntN(9-d)
				r.High = prefix + fmt.Sprint(d)
			}
			r.lo, r.hi, _ = parseSpan(r.Low, r.High)
			out = append(out, r)
			if rng.IntN(5) == 0 {
				twin := r
				twin.Acquirer, twin.Priority = r.Acquirer+"-twin", r.Priority+1+rng.IntN(2)
				out = append(out, twin)
			}
			if r.Low == r.High && len(p) < maxBINLen && rng.IntN(2) == 0 {
				grow(p)
			}
		}
	}
	used := map[int]bool{}
	for len(out) < n {
		if s := rng.IntN(10000); !used[s] {
			used[s] = true
			grow(fmt.Sprintf("%04d", s))
		}
	}
	return out
}

// bruteFind is the definition of "most specific": the narrowest range that holds v, then the highest priority.
func bruteFind(rs []BINRange, v uint64) *BINRange {
	var best *BINRange
	for i := range rs {
		r := &rs[i]
		if !r.contains(v) {
			continue
		}
		if best == nil || r.hi-r.lo < best.hi-best.lo || (r.hi-r.lo == best.hi-best.lo && r.Priority > best.Priority) {
			best = r
		}
	}
	return best
}

func TestFlattenedIndexFindsTheMostSpecificRangeLikeBruteForce(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		rs := nestedRanges(rng, 300)
		ix, errs := buildIndex(slices.Clone(rs))
		if len(errs) > 0 {
			t.Fatalf("seed %d: a valid family was rejected: %v", seed, errs[0])
		}
		if err := ix.link(nil); err != nil {
			t.Fatal(err)
		}
		var probes []uint64
		for _, r := range rs {
			probes = append(probes, r.lo, r.hi, r.lo-1, r.hi+1, r.lo+rng.Uint64N(r.hi-r.lo+1))
		}
		for _, v := range probes {
			if v >= pow10[panDigits] {
				continue
			}
			got, _ := ix.find(v)
			want := bruteFind(rs, v)
			if (got == nil) != (want == nil) || (got != nil && got.Acquirer != want.Acquirer) {
				t.Fatalf("seed %d: find(%019d) = %v, want %v", seed, v, got, want)
			}
		}
	}
}

func TestIdenticalRangesHigherPriorityWinsAndLoserIsKept(t *testing.T) {
	rs := []BINRange{
		{Low: "621488", High: "621488", Acquirer: "low", Priority: 1},
		{Low: "621488", High: "621488", Acquirer: "high", Priority: 9},
	}
	for i := range rs {
		rs[i].lo, rs[i].hi, _ = parseSpan(rs[i].Low, rs[i].High)
	}
	ix, errs := buildIndex(slices.Clone(rs))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	_ = ix.link(nil)
	if got, _ := ix.find(rs[0].lo); got == nil || got.Acquirer != "high" {
		t.Fatalf("find = %v, want the priority 9 range", got)
	}
	if len(ix.losers) != 1 || ix.losers[0].Acquirer != "low" {
		t.Fatalf("losers = %v, want the priority 1 range", ix.losers)
	}
}

func TestIdenticalRangesOfEqualPriorityAreAnError(t *testing.T) {
	tests := []struct {
		priorities []int
		errors     int
	}{
		{[]int{1, 2}, 0},
		{[]int{1, 1}, 1},
		{[]int{5, 3, 3}, 1}, // the two losers tie with each other
		{[]int{3, 5, 3, 5}, 2},
	}
	for _, tt := range tests {
		var rs []BINRange
		for i, p := range tt.priorities {
			r := BINRange{Low: "621488", High: "621488", Acquirer: fmt.Sprint("a", i), Priority: p, Source: Source{"b.csv", i + 2}}
			r.lo, r.hi, _ = parseSpan(r.Low, r.High)
			rs = append(rs, r)
		}
		if _, errs := buildIndex(rs); len(errs) != tt.errors {
			t.Errorf("priorities %v: %d errors, want %d: %v", tt.priorities, len(errs), tt.errors, errs)
		}
	}
}
