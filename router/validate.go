package router

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
)

// maxEndpoints bounds an acquirer's endpoints so that a failover attempt can track them in one word.
const maxEndpoints = 64

// maxWeight bounds an endpoint's weight, which sets the length of the weighted schedule.
const maxWeight = 1000

// loads numbers every table built in this process, so a newer table always has a higher version.
var loads atomic.Uint64

var (
	declineCode = regexp.MustCompile(`^[0-9A-Z]{2}$`)
	procPrefix  = regexp.MustCompile(`^[0-9]{1,6}$`)
	classCode   = regexp.MustCompile(`^[0-9]{2}$`)
)

// compile validates a parsed config and builds the table, or gives every problem found.
func (c *config) compile() (*Table, error) {
	t := &Table{byName: map[string]*Acquirer{}, binsOnly: c.binsOnly, files: c.files}
	c.compileAcquirers(t)
	t.bins = c.compileBINs(t)
	c.compileRules(t)
	if len(c.errs) > 0 {
		return nil, c.errs.sorted()
	}
	t.version = loads.Add(1)
	t.checksum = hex.EncodeToString(c.sum.Sum(nil))
	return t, nil
}

func (c *config) compileAcquirers(t *Table) {
	for i := range c.acquirers {
		a := &c.acquirers[i]
		if a.Name == "" {
			c.issue(a.Source.File, a.Source.Line, "an acquirer needs a name")
			continue
		}
		if old := t.byName[a.Name]; old != nil {
			c.issue(a.Source.File, a.Source.Line, "acquirer %s is already defined at %s", a.Name, old.Source)
			continue
		}
		if len(a.Endpoints) == 0 || len(a.Endpoints) > maxEndpoints {
			c.issue(a.Source.File, a.Source.Line, "acquirer %s needs 1 to %d endpoints", a.Name, maxEndpoints)
		}
		seen := map[string]bool{}
		total := 0
		for _, e := range a.Endpoints {
			if seen[e.Name] {
				c.issue(a.Source.File, a.Source.Line, "acquirer %s: endpoint %s is listed twice", a.Name, e.Name)
			}
			seen[e.Name] = true
			if e.Weight > maxWeight {
				c.issue(a.Source.File, a.Source.Line, "acquirer %s: endpoint %s: weight %d is above %d", a.Name, e.Name, e.Weight, maxWeight)
			}
			total += e.Weight
		}
		if a.Strategy == Weighted && total == 0 && len(a.Endpoints) > 0 {
			c.issue(a.Source.File, a.Source.Line, "acquirer %s: weighted, but every weight is 0", a.Name)
		}
		a.Breaker = a.Breaker.withDefaults()
		t.byName[a.Name] = a
		t.acquirers = append(t.acquirers, a)
	}
	for _, a := range t.acquirers {
		a.fallbacks = c.resolve(t, a.Source, a.Name, a.Fallbacks)
	}
}

// resolve looks up fallback acquirers; self is the acquirer they are the fallbacks of.
func (c *config) resolve(t *Table, src Source, self string, names []string) []*Acquirer {
	var out []*Acquirer
	for _, n := range names {
		a := t.byName[n]
		switch {
		case a == nil:
			c.issue(src.File, src.Line, "unknown acquirer %q in fallbacks", n)
		case n == self:
			c.issue(src.File, src.Line, "acquirer %s cannot be its own fallback", n)
		default:
			out = append(out, a)
		}
	}
	return out
}

func (c *config) compileBINs(t *Table) *binIndex {
	ok := c.bins[:0] // the valid rows, kept in place
	for _, r := range c.bins {
		var err error
		if r.lo, r.hi, err = parseSpan(r.Low, r.High); err != nil {
			c.issue(r.Source.File, r.Source.Line, "%v", err)
			continue
		}
		if t.byName[r.Acquirer] == nil {
			if !c.binsOnly {
				c.issue(r.Source.File, r.Source.Line, "unknown acquirer %q", r.Acquirer)
				continue
			}
			a := &Acquirer{Name: r.Acquirer, Source: r.Source, Breaker: BreakerConfig{}.withDefaults()}
			t.byName[a.Name] = a
			t.acquirers = append(t.acquirers, a)
		}
		ok = append(ok, r)
	}
	ix, errs := buildIndex(ok)
	c.errs = append(c.errs, errs...)
	if err := ix.link(t.byName); err != nil {
		c.issue(ok[0].Source.File, 0, "%v", err) // too big: there are ranges
	}
	return ix
}

func (c *config) compileRules(t *Table) {
	if c.binsOnly {
		t.rules = []Rule{{Name: "bin-table", Kind: KindAcquirer, BINTable: true}}
		return
	}
	cardTypes := map[string]bool{}
	for _, rs := range [][]BINRange{t.bins.ranges, t.bins.losers} {
		for _, r := range rs {
			cardTypes[r.CardType] = true
		}
	}
	names := map[string]Source{}
	t.rules = c.rules
	for i := range t.rules {
		r := &t.rules[i]
		bad := func(format string, args ...any) {
			c.issue(r.Source.File, r.Source.Line, "rule %s: %s", r.Name, fmt.Sprintf(format, args...))
		}
		if r.Name == "" {
			c.issue(r.Source.File, r.Source.Line, "a rule needs a name")
		} else if at, dup := names[r.Name]; dup {
			bad("the name is already used at %s", at)
		}
		names[r.Name] = r.Source
		for _, cl := range r.Classes {
			code, named := classNames[cl]
			if !named {
				code = cl
			}
			if !classCode.MatchString(code) {
				bad("unknown class %q (want %s, or two digits)", cl, strings.Join(sortedKeys(classNames), ", "))
				continue
			}
			n := int(code[0]-'0')*10 + int(code[1]-'0')
			r.classMask[n/64] |= 1 << (n % 64)
		}
		for _, p := range r.Procs {
			if !procPrefix.MatchString(p) {
				bad("processing code %q is not 1 to 6 digits", p)
			}
		}
		for _, b := range r.BINs {
			low, high, _ := strings.Cut(b, "-")
			if high == "" {
				high = low
			}
			lo, hi, err := parseSpan(low, high)
			if err != nil {
				bad("%v", err)
				continue
			}
			r.bins = append(r.bins, span{lo, hi})
		}
		for _, ct := range r.CardTypes {
			if !cardTypes[ct] {
				bad("card type %q is in no BIN range, so the rule can never match", ct)
			}
		}
		switch r.Kind {
		case KindAcquirer:
			if !r.BINTable {
				if r.acq = t.byName[r.Acquirer]; r.acq == nil {
					bad("unknown acquirer %q", r.Acquirer)
				}
			}
			r.fallbacks = c.resolve(t, r.Source, r.Acquirer, r.Fallbacks)
		case KindLocal:
			if r.Handler == "" {
				bad("local needs a handler name")
			}
		case KindDecline:
			if !declineCode.MatchString(r.ResponseCode) {
				bad("decline code %q is not 2 digits or capital letters", r.ResponseCode)
			}
		}
		if r.Kind != KindAcquirer && len(r.Fallbacks) > 0 {
			bad("fallbacks only go with acquirer or bin_table")
		}
	}
	for j := range t.rules {
		for i := range j {
			if t.rules[i].Kind != KindNone && t.rules[i].covers(&t.rules[j]) {
				s := &t.rules[j]
				c.issue(s.Source.File, s.Source.Line, "rule %s is unreachable: rule %s at %s matches every message it does",
					s.Name, t.rules[i].Name, t.rules[i].Source)
				break
			}
		}
	}
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
