package router

import (
	"cmp"
	"fmt"
	"slices"
	"unsafe"
)

// A BIN prefix or PAN is compared as a 19-digit number: shorter values are padded on the right, a range's low
// end with 0s and its high end with 9s. 19 nines fit in a uint64, and so does 10^19 (the end of the domain).
const (
	panDigits   = 19
	minBINLen   = 6
	maxBINLen   = 11
	minPANLen   = 12
	bucketShift = 1e14 // the first 5 of the 19 digits choose a bucket of the lookup index
	nBuckets    = 100000
	scanWindow  = 32 // below this many intervals, a linear scan beats a binary search
)

var pow10 = func() (p [panDigits + 1]uint64) {
	p[0] = 1
	for i := 1; i <= panDigits; i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// BINRange is one row of a BIN table: the PANs from Low to High (prefixes of 6 to 11 digits) go to Acquirer.
type BINRange struct {
	Low, High string // as written
	Acquirer  string
	Priority  int    // decides between identical ranges; higher wins
	CardType  string // e.g. credit, debit; may be empty
	Source    Source
	lo, hi    uint64    // padded to 19 digits
	acq       *Acquirer // resolved Acquirer
}

// String gives the range as an engineer writes it: "436742" or "621000-629999".
func (r *BINRange) String() string { return spanString(r.lo, r.hi) }

func (r *BINRange) contains(v uint64) bool { return r.lo <= v && v <= r.hi }

// parseDigits reads an all-digit string of 1 to 19 digits. It does not allocate.
func parseDigits(s string) (v uint64, ok bool) {
	if len(s) == 0 || len(s) > panDigits {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i] - '0'
		if c > 9 {
			return 0, false
		}
		v = v*10 + uint64(c)
	}
	return v, true
}

// padPAN turns a PAN (12 to 19 digits) into its 19-digit value. It does not allocate.
func padPAN(pan string) (uint64, bool) {
	if len(pan) < minPANLen || len(pan) > panDigits {
		return 0, false
	}
	v, ok := parseDigits(pan)
	return v * pow10[panDigits-len(pan)], ok
}

// parsePrefix reads a BIN prefix of 6 to 11 digits and gives its padded low and high ends.
func parsePrefix(s string) (lo, hi uint64, err error) {
	v, ok := parseDigits(s)
	if !ok || len(s) < minBINLen || len(s) > maxBINLen {
		return 0, 0, fmt.Errorf("BIN %q is not 6 to 11 digits", s)
	}
	scale := pow10[panDigits-len(s)]
	return v * scale, v*scale + scale - 1, nil
}

// parseSpan reads a low and a high prefix and checks that low <= high once padded.
func parseSpan(low, high string) (lo, hi uint64, err error) {
	lo, _, err = parsePrefix(low)
	if err != nil {
		return 0, 0, err
	}
	_, hi, err = parsePrefix(high)
	if err != nil {
		return 0, 0, err
	}
	if lo > hi {
		return 0, 0, fmt.Errorf("BIN range %s-%s: low is above high", low, high)
	}
	return lo, hi, nil
}

// spanString writes a padded span back as the shortest prefixes (at least 6 digits) that give it.
// Both ends get the same length, as engineers write them.
func spanString(lo, hi uint64) string {
	l, h := fmt.Sprintf("%019d", lo), fmt.Sprintf("%019d", hi)
	n := max(padLen(l, '0'), padLen(h, '9'))
	if l[:n] == h[:n] {
		return l[:n]
	}
	return l[:n] + "-" + h[:n]
}

// padLen is the length of s without its trailing pad digits, at least a BIN's 6.
func padLen(s string, pad byte) int {
	n := len(s)
	for n > minBINLen && s[n-1] == pad {
		n--
	}
	return n
}

// binIndex is a BIN table flattened into disjoint intervals: interval i covers [iv[i].start, iv[i+1].start)
// and points to the most specific range there.
//
// Lookup must cost about one memory miss at a million ranges, so it does not search iv. Every start is a
// multiple of 10^8 (a BIN has at most 11 digits), so within a bucket of the first five digits a start fits in
// a uint32 (in units of 10^8). Each bucket has its own run of slots {start, meta} in one array, beginning
// with the interval that holds the bucket's first value; the bucket table (400 KB) stays in cache, and the
// run is scanned in order, so its cache lines stream in together. meta packs the range index and a class
// (acquirer and card type, what the rules need), so a lookup reads nothing else that is big.
type binIndex struct {
	ranges  []BINRange // the winners, in (low asc, high desc) order
	losers  []BINRange // identical ranges that lost on priority, kept for explain
	iv      []interval
	classes []binClass
	bucket  []uint32 // bucket[b]: index in slots of the run of bucket b; bucket[nBuckets] = len(slots)
	slots   []slot
}

type interval struct {
	start uint64
	owner int32 // index into ranges; -1: no range
}

type slot struct {
	start uint32 // in units of 10^8 from the bucket's first value
	meta  uint32 // class<<metaShift | owner+1 (0: no range)
}

const (
	unit      = 1e8
	metaShift = 22
	maxRanges = 1<<metaShift - 2
	maxClass  = 1<<(32-metaShift) - 1
)

// binClass is an acquirer and card type pair; a table has few of them.
type binClass struct {
	acq      *Acquirer
	cardType string
}

// buildIndex checks and flattens ranges. Partial overlaps and identical ranges of equal priority are issues;
// the offending range is left out so the rest of the table can still be checked. It sorts rs and keeps the
// winners in its front part, so a table of a million ranges holds one copy of them, not three.
func buildIndex(rs []BINRange) (*binIndex, Errors) {
	slices.SortStableFunc(rs, func(a, b BINRange) int {
		return cmp.Or(cmp.Compare(a.lo, b.lo), cmp.Compare(b.hi, a.hi), cmp.Compare(b.Priority, a.Priority))
	})
	var errs Errors
	// Winners are written to rs[:len(ix.ranges)], never past the range being read, nor over rs[i-1] before
	// it is compared with rs[i].
	ix := &binIndex{ranges: rs[:0]}
	var stack []int32 // indices into ix.ranges of the ranges open at the sweep position
	ix.iv = []interval{{0, -1}}
	emit := func(at uint64, owner int32) {
		last := len(ix.iv) - 1
		switch {
		case ix.iv[last].start == at:
			ix.iv[last].owner = owner
			if last > 0 && ix.iv[last-1].owner == owner {
				ix.iv = ix.iv[:last]
			}
		case ix.iv[last].owner != owner:
			ix.iv = append(ix.iv, interval{start: at, owner: owner})
		}
	}
	top := func() int32 {
		if len(stack) == 0 {
			return -1
		}
		return stack[len(stack)-1]
	}
	pop := func() {
		t := &ix.ranges[top()]
		stack = stack[:len(stack)-1]
		emit(t.hi+1, top())
	}
	for i := range rs {
		r := &rs[i]
		for len(stack) > 0 && ix.ranges[top()].hi < r.lo {
			pop()
		}
		if i > 0 && rs[i-1].lo == r.lo && rs[i-1].hi == r.hi && rs[i-1].Priority == r.Priority {
			q := &rs[i-1]
			errs = append(errs, newIssue(r.Source, fmt.Sprintf("BIN range %s is the same as %s at %s with the same priority %d",
				r, q, q.Source, r.Priority)))
			continue
		}
		if t := top(); t >= 0 {
			p := &ix.ranges[t]
			if p.lo == r.lo && p.hi == r.hi { // sorted by priority: p is the winner
				ix.losers = append(ix.losers, *r)
				continue
			}
			if r.hi > p.hi {
				errs = append(errs, newIssue(r.Source, fmt.Sprintf("BIN range %s partially overlaps %s at %s", r, p, p.Source)))
				continue
			}
		}
		ix.ranges = append(ix.ranges, *r)
		stack = append(stack, int32(len(ix.ranges)-1))
		emit(r.lo, top())
	}
	for len(stack) > 0 {
		pop()
	}
	return ix, errs
}

// link resolves the ranges' acquirers by name, gives each interval its class and builds the lookup slots.
func (ix *binIndex) link(byName map[string]*Acquirer) error {
	for _, rs := range [][]BINRange{ix.ranges, ix.losers} {
		for i := range rs {
			rs[i].acq = byName[rs[i].Acquirer]
		}
	}
	if len(ix.ranges) > maxRanges {
		return fmt.Errorf("%d BIN ranges: at most %d fit in a table", len(ix.ranges), maxRanges)
	}
	ids := map[binClass]uint32{{}: 0}
	ix.classes = []binClass{{}}
	meta := make([]uint32, len(ix.iv))
	for i, v := range ix.iv {
		if v.owner < 0 {
			continue
		}
		c := binClass{ix.ranges[v.owner].acq, ix.ranges[v.owner].CardType}
		id, ok := ids[c]
		if !ok {
			id = uint32(len(ix.classes))
			ids[c] = id
			ix.classes = append(ix.classes, c)
		}
		meta[i] = id<<metaShift | uint32(v.owner+1)
	}
	if len(ix.classes) > maxClass {
		return fmt.Errorf("%d acquirer and card type pairs: at most %d fit in a table", len(ix.classes), maxClass)
	}
	ix.bucket = make([]uint32, nBuckets+1)
	ix.slots = make([]slot, 0, len(ix.iv)+nBuckets)
	adviseHuge(unsafe.Pointer(unsafe.SliceData(ix.slots)), uintptr(cap(ix.slots))*unsafe.Sizeof(slot{}))
	i := 0 // the interval that holds the bucket's first value
	for b := range nBuckets {
		base := uint64(b) * bucketShift
		for i+1 < len(ix.iv) && ix.iv[i+1].start <= base {
			i++
		}
		ix.bucket[b] = uint32(len(ix.slots))
		ix.slots = append(ix.slots, slot{0, meta[i]})
		for j := i + 1; j < len(ix.iv) && ix.iv[j].start < base+bucketShift; j++ {
			ix.slots = append(ix.slots, slot{uint32((ix.iv[j].start - base) / unit), meta[j]})
		}
	}
	ix.bucket[nBuckets] = uint32(len(ix.slots))
	return nil
}

// find gives the most specific range that holds v and its class, or nil and nil.
func (ix *binIndex) find(v uint64) (*BINRange, *binClass) {
	b := v / bucketShift
	if b >= nBuckets {
		return nil, nil
	}
	off := uint32(v % bucketShift / unit)
	// The answer is the last slot of the run starting at or before off. Binary search narrows a big run;
	// the last few slots are scanned in order.
	lo, hi := int(ix.bucket[b]), int(ix.bucket[b+1])-1
	for hi-lo > scanWindow {
		mid := int(uint(lo+hi+1) >> 1)
		if ix.slots[mid].start <= off {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	for lo < hi && ix.slots[lo+1].start <= off {
		lo++
	}
	m := ix.slots[lo].meta
	if m&(1<<metaShift-1) == 0 {
		return nil, nil
	}
	return &ix.ranges[m&(1<<metaShift-1)-1], &ix.classes[m>>metaShift]
}
