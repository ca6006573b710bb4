package router

import (
	"slices"
	"strings"
	"time"
)

// Kind is what a rule does with a message it matches.
type Kind uint8

// The kinds of rule result.
const (
	KindNone     Kind = iota
	KindAcquirer      // send to an acquirer, then its fallbacks
	KindLocal         // answer here, with a named local handler (sign-on, echo, settlement...)
	KindDecline       // decline with a response code
	KindOriginal      // send to the acquirer of the original transaction (voids, refunds, completions, reversals)
)

var kindNames = [...]string{"none", "acquirer", "local", "decline", "original"}

// String names the kind as the JSON output and the docs do.
func (k Kind) String() string { return kindNames[k] }

// Class names for the first two digits of an MTI. Other two-digit codes may be written as digits.
var classNames = map[string]string{
	"authorization": "01",
	"financial":     "02",
	"file":          "03",
	"reversal":      "04",
	"settlement":    "05",
	"network":       "08",
}

// className gives the name of a two-digit class code, or the code itself.
func className(code string) string {
	for n, c := range classNames {
		if c == code {
			return n
		}
	}
	return code
}

// span is a padded BIN interval, inclusive at both ends.
type span struct{ lo, hi uint64 }

// Rule is one routing rule. Rules are tried in file order and the first that matches wins. Empty conditions
// match anything; a list matches any of its values.
type Rule struct {
	Name   string
	Source Source

	Channels  []string // channel names
	Classes   []string // class names or two-digit codes, as written
	Procs     []string // processing-code prefixes, 1 to 6 digits; 6 digits is an exact match
	BINs      []string // BIN prefixes or low-high ranges written in the rule
	CardTypes []string // card types from the BIN table

	Kind Kind
	// BINTable: the acquirer is the one of the most specific BIN range that holds the PAN; the rule does not
	// match a PAN that no range holds.
	BINTable     bool
	Acquirer     string   // KindAcquirer without BINTable
	Fallbacks    []string // tried in order; empty means the acquirer's own fallbacks
	Handler      string   // KindLocal
	ResponseCode string   // KindDecline

	classMask [2]uint64 // bit c set: class c (0..99) matches; zero: any
	bins      []span
	acq       *Acquirer   // resolved Acquirer
	fallbacks []*Acquirer // resolved Fallbacks
}

// needsBIN says whether the rule can only match a PAN that the BIN table holds.
func (r *Rule) needsBIN() bool { return r.BINTable || len(r.CardTypes) > 0 }

// String describes the result of the rule: "acquirer ccb", "decline 57"...
func (r *Rule) String() string {
	switch {
	case r.BINTable:
		return "acquirer from the BIN table"
	case r.Kind == KindAcquirer:
		return "acquirer " + r.Acquirer
	case r.Kind == KindLocal:
		return "local " + r.Handler
	case r.Kind == KindDecline:
		return "decline " + r.ResponseCode
	}
	return r.Kind.String()
}

// key is the parsed form of a lookup key.
type key struct {
	channel, proc string
	class         int // -1: no MTI
	pan           uint64
	hasPAN        bool
	bin           *BINRange // the most specific range holding the PAN
	cls           *binClass // its acquirer and card type
}

// miss says why the rule does not match k, or "" when it does. Lookup uses matches, which is the same test
// without building a reason.
func (r *Rule) miss(k *key) string {
	switch {
	case len(r.Channels) > 0 && !slices.Contains(r.Channels, k.channel):
		return "channel " + quoteEmpty(k.channel) + " is not " + strings.Join(r.Channels, " or ")
	case !r.classOK(k.class):
		return "message class " + classOf(k.class) + " is not " + strings.Join(r.Classes, " or ")
	case !r.procOK(k.proc):
		return "processing code " + quoteEmpty(k.proc) + " does not start with " + strings.Join(r.Procs, " or ")
	case !r.binOK(k):
		return "the PAN is not in BIN " + strings.Join(r.BINs, " or ")
	case len(r.CardTypes) > 0 && (k.cls == nil || !slices.Contains(r.CardTypes, k.cls.cardType)):
		ct := "none"
		if k.cls != nil {
			ct = quoteEmpty(k.cls.cardType)
		}
		return "card type " + ct + " is not " + strings.Join(r.CardTypes, " or ")
	case r.BINTable && k.cls == nil:
		return "no BIN range holds the PAN"
	}
	return ""
}

func (r *Rule) matches(k *key) bool {
	if len(r.Channels) > 0 && !slices.Contains(r.Channels, k.channel) {
		return false
	}
	if !r.classOK(k.class) || !r.procOK(k.proc) || !r.binOK(k) {
		return false
	}
	if r.needsBIN() && k.cls == nil {
		return false
	}
	return len(r.CardTypes) == 0 || slices.Contains(r.CardTypes, k.cls.cardType)
}

func (r *Rule) classOK(c int) bool {
	if r.classMask == [2]uint64{} {
		return true
	}
	return c >= 0 && r.classMask[c/64]&(1<<(c%64)) != 0
}

func (r *Rule) procOK(proc string) bool {
	if len(r.Procs) == 0 {
		return true
	}
	for _, p := range r.Procs {
		if strings.HasPrefix(proc, p) {
			return true
		}
	}
	return false
}

func (r *Rule) binOK(k *key) bool {
	if len(r.bins) == 0 {
		return true
	}
	if !k.hasPAN {
		return false
	}
	for _, s := range r.bins {
		if s.lo <= k.pan && k.pan <= s.hi {
			return true
		}
	}
	return false
}

// covers says whether r matches every message that s matches, so that s, written after r, is unreachable.
// It errs on the side of "no": only a certain shadow is reported.
func (r *Rule) covers(s *Rule) bool {
	if r.needsBIN() && !s.needsBIN() {
		return false
	}
	if r.classMask != [2]uint64{} && (s.classMask == [2]uint64{} ||
		s.classMask[0]&^r.classMask[0] != 0 || s.classMask[1]&^r.classMask[1] != 0) {
		return false
	}
	if !subset(r.Channels, s.Channels) || !subset(r.CardTypes, s.CardTypes) {
		return false
	}
	if len(r.Procs) > 0 {
		if len(s.Procs) == 0 {
			return false
		}
		for _, p := range s.Procs {
			if !slices.ContainsFunc(r.Procs, func(q string) bool { return strings.HasPrefix(p, q) }) {
				return false
			}
		}
	}
	if len(r.bins) > 0 {
		if len(s.bins) == 0 {
			return false
		}
		for _, b := range s.bins {
			if !slices.ContainsFunc(r.bins, func(a span) bool { return a.lo <= b.lo && b.hi <= a.hi }) {
				return false
			}
		}
	}
	return true
}

// subset says whether condition list a accepts everything b accepts (an empty list accepts anything).
func subset(a, b []string) bool {
	if len(a) == 0 {
		return true
	}
	if len(b) == 0 {
		return false
	}
	for _, v := range b {
		if !slices.Contains(a, v) {
			return false
		}
	}
	return true
}

func classOf(c int) string {
	if c < 0 {
		return "none"
	}
	return string([]byte{byte('0' + c/10), byte('0' + c%10)})
}

func quoteEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

// Strategy is how a balancer spreads requests over an acquirer's endpoints.
type Strategy uint8

// The balancing strategies.
const (
	RoundRobin    Strategy = iota // each healthy endpoint in turn
	Weighted                      // in proportion to the endpoints' weights (smooth, interleaved)
	LeastInFlight                 // the healthy endpoint with the fewest requests in flight
)

var strategyNames = map[string]Strategy{"round-robin": RoundRobin, "weighted": Weighted, "least-inflight": LeastInFlight}

// String names the strategy as the routes file does.
func (s Strategy) String() string {
	for n, v := range strategyNames {
		if v == s {
			return n
		}
	}
	return "unknown"
}

// Acquirer is an acquiring bank: its endpoints, how to balance over them, and where to go when none can take
// a request.
type Acquirer struct {
	Name      string
	Source    Source
	Strategy  Strategy
	Fallbacks []string
	Endpoints []Endpoint
	Breaker   BreakerConfig
	fallbacks []*Acquirer
}

// Endpoint is one host of an acquirer; Connections links are kept open to it.
type Endpoint struct {
	Name        string
	Address     string
	Weight      int // for Weighted; default 1
	Connections int // default 1
}

// BreakerConfig sets an endpoint's circuit breaker.
type BreakerConfig struct {
	Failures  int           // consecutive failures that open the breaker; default 5
	Cooldown  time.Duration // time open before a probe is let through; default 30s
	Probes    int           // requests let through at once while half-open; default 1
	Successes int           // probe successes that close it again; default 1
}

func (c BreakerConfig) withDefaults() BreakerConfig {
	if c.Failures <= 0 {
		c.Failures = 5
	}
	if c.Cooldown <= 0 {
		c.Cooldown = 30 * time.Second
	}
	if c.Probes <= 0 {
		c.Probes = 1
	}
	if c.Successes <= 0 {
		c.Successes = 1
	}
	return c
}
