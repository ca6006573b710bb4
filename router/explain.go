package router

import (
	"fmt"
	"strings"
)

// MaskPAN keeps the first 6 and the last 4 digits of a PAN and stars the rest, the only form in which a PAN
// may leave this package (DESIGN invariant 4). A value too short to mask is starred whole.
func MaskPAN(pan string) string {
	if len(pan) < minPANLen {
		return strings.Repeat("*", len(pan))
	}
	return pan[:6] + strings.Repeat("*", len(pan)-10) + pan[len(pan)-4:]
}

// Explanation says how a message is routed and why: the winning rule with its source, and every other rule
// or BIN range that matched but lost. It holds the PAN masked only. The JSON form is what
// `switch routes explain --json` prints.
type Explanation struct {
	PAN          string      `json:"pan,omitempty"`
	MTI          string      `json:"mti,omitempty"`
	Class        string      `json:"class,omitempty"`
	Proc         string      `json:"proc,omitempty"`
	Channel      string      `json:"channel,omitempty"`
	Kind         string      `json:"kind"` // acquirer, local, decline, original or none
	Acquirer     string      `json:"acquirer,omitempty"`
	Fallbacks    []string    `json:"fallbacks,omitempty"`
	Handler      string      `json:"handler,omitempty"`
	ResponseCode string      `json:"response_code,omitempty"`
	Rule         string      `json:"rule,omitempty"`   // the winning rule; "bin RANGE" for a BIN-only table
	Source       string      `json:"source,omitempty"` // file:line of the winning rule (or BIN row)
	BINRange     *BINInfo    `json:"bin_range,omitempty"`
	RunnersUp    []Candidate `json:"runners_up"`            // matched but lost, and why
	NotMatched   []Candidate `json:"not_matched,omitempty"` // rules tried before the winner, and why they did not match
	Version      uint64      `json:"table_version"`
	Checksum     string      `json:"table_checksum"` // short form
}

// BINInfo describes a BIN range in an explanation.
type BINInfo struct {
	Range    string `json:"range"`
	Acquirer string `json:"acquirer"`
	CardType string `json:"card_type,omitempty"`
	Priority int    `json:"priority"`
	Source   string `json:"source"`
}

// Candidate is a rule or BIN range that an explanation mentions, with why it did not win.
type Candidate struct {
	Rule     string `json:"rule,omitempty"`
	BINRange string `json:"bin_range,omitempty"`
	Source   string `json:"source"`
	Result   string `json:"result"`
	Why      string `json:"why"`
}

func binInfo(r *BINRange) *BINInfo {
	return &BINInfo{Range: r.String(), Acquirer: r.Acquirer, CardType: r.CardType, Priority: r.Priority, Source: r.Source.String()}
}

// Explain routes k as Lookup does and says why. The error is ErrBadPAN or ErrBadMTI; a message that no rule
// matches gives kind "none" and no error.
func (t *Table) Explain(k Key) (Explanation, error) {
	var pk key
	if err := t.parseKey(k, &pk); err != nil {
		return Explanation{}, err
	}
	e := Explanation{PAN: MaskPAN(k.PAN), MTI: k.MTI, Proc: k.Proc, Channel: k.Channel, Kind: KindNone.String(),
		RunnersUp: []Candidate{}, Version: t.version, Checksum: t.ShortChecksum()}
	if pk.class >= 0 {
		e.Class = className(classOf(pk.class))
	}
	var win *Rule
	for i := range t.rules {
		r := &t.rules[i]
		why := r.miss(&pk)
		switch {
		case why != "" && win == nil:
			e.NotMatched = append(e.NotMatched, Candidate{Rule: r.Name, Source: r.Source.String(), Result: r.String(), Why: why})
		case why == "" && win == nil:
			win = r
			e.fill(t.route(r, &pk))
		case why == "":
			e.RunnersUp = append(e.RunnersUp, Candidate{Rule: r.Name, Source: r.Source.String(), Result: r.String(),
				Why: fmt.Sprintf("rule %s (%s) comes first", win.Name, win.Source)})
		}
	}
	if t.binsOnly {
		e.NotMatched = nil // the one implicit rule is not the engineer's
	}
	if pk.bin != nil {
		e.BINRange = binInfo(pk.bin)
		if t.binsOnly {
			e.Rule, e.Source = "bin "+pk.bin.String(), pk.bin.Source.String()
		}
		e.RunnersUp = append(e.RunnersUp, t.binRunnersUp(pk.pan, pk.bin)...)
	}
	return e, nil
}

func (e *Explanation) fill(rt Route) {
	e.Kind, e.Handler, e.ResponseCode = rt.Kind.String(), rt.Handler, rt.ResponseCode
	e.Rule, e.Source = rt.Rule.Name, rt.Rule.Source.String()
	if rt.Acquirer != nil {
		e.Acquirer = rt.Acquirer.Name
	}
	for _, f := range rt.Fallbacks {
		e.Fallbacks = append(e.Fallbacks, f.Name)
	}
}

// binRunnersUp lists the BIN ranges that hold v but lost to win: the ranges around it, which are less
// specific, and identical ranges of lower priority. It scans the table; explain is not a hot path.
func (t *Table) binRunnersUp(v uint64, win *BINRange) []Candidate {
	var holders []*BINRange // win and the ranges around it, most specific first
	for i := len(t.bins.ranges) - 1; i >= 0; i-- {
		if r := &t.bins.ranges[i]; r.contains(v) {
			holders = append(holders, r)
		}
	}
	var out []Candidate
	add := func(r *BINRange, why string) {
		out = append(out, Candidate{BINRange: r.String(), Source: r.Source.String(), Result: "acquirer " + r.Acquirer, Why: why})
	}
	for _, h := range holders {
		if h != win {
			add(h, fmt.Sprintf("less specific than %s (%s)", win, win.Source))
		}
		for i := range t.bins.losers {
			if l := &t.bins.losers[i]; l.lo == h.lo && l.hi == h.hi {
				add(l, fmt.Sprintf("priority %d is below %d of the same range at %s", l.Priority, h.Priority, h.Source))
			}
		}
	}
	return out
}
