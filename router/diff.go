package router

import (
	"fmt"
	"slices"
	"strings"
)

// Diff is what changes between two tables: the BIN spans whose destination (acquirer or card type) changes,
// and the rules and acquirers that change. The JSON form is what `switch routes diff --json` prints.
type Diff struct {
	BINs      []BINChange  `json:"bins"`
	Rules     []RuleChange `json:"rules"`
	Acquirers []string     `json:"acquirers"`
}

// Empty says whether nothing that routing depends on changes.
func (d Diff) Empty() bool { return len(d.BINs)+len(d.Rules)+len(d.Acquirers) == 0 }

// BINChange is a span of PANs whose BIN-table destination changes. "-" means no range holds the span.
type BINChange struct {
	Range       string `json:"range"`
	Old         string `json:"old"`
	New         string `json:"new"`
	OldCardType string `json:"old_card_type,omitempty"`
	NewCardType string `json:"new_card_type,omitempty"`
}

// RuleChange is a rule added, removed, changed or moved (its order among the other rules changed, which
// matters because the first match wins).
type RuleChange struct {
	Rule   string `json:"rule"`
	Change string `json:"change"` // added, removed, changed, moved
	Old    string `json:"old,omitempty"`
	New    string `json:"new,omitempty"`
	Source string `json:"source"` // in the new table, or the old one for a removed rule
}

// Compare gives what changes from old to new. BIN spans come from walking the two flattened interval maps
// side by side, so a change is reported for exactly the PANs it affects, whatever ranges were edited.
func Compare(old, new *Table) Diff {
	return Diff{BINs: diffBINs(old.bins, new.bins), Rules: diffRules(old.rules, new.rules),
		Acquirers: diffAcquirers(old, new)}
}

func diffBINs(a, b *binIndex) []BINChange {
	type dest struct{ acq, card string }
	at := func(ix *binIndex, i int) dest {
		if o := ix.iv[i].owner; o >= 0 {
			return dest{ix.ranges[o].Acquirer, ix.ranges[o].CardType}
		}
		return dest{"-", ""}
	}
	next := func(ix *binIndex, i int) uint64 {
		if i+1 < len(ix.iv) {
			return ix.iv[i+1].start
		}
		return pow10[panDigits] // the end of the domain
	}
	var out []BINChange
	var lastEnd uint64
	var lastLo uint64
	for i, j, pos := 0, 0, uint64(0); pos < pow10[panDigits]; {
		end := min(next(a, i), next(b, j))
		da, db := at(a, i), at(b, j)
		if da != db {
			c := BINChange{Old: da.acq, New: db.acq, OldCardType: da.card, NewCardType: db.card}
			if n := len(out); n > 0 && lastEnd == pos && out[n-1].Old == c.Old && out[n-1].New == c.New &&
				out[n-1].OldCardType == c.OldCardType && out[n-1].NewCardType == c.NewCardType {
				out[n-1].Range = spanString(lastLo, end-1)
			} else {
				lastLo = pos
				c.Range = spanString(pos, end-1)
				out = append(out, c)
			}
			lastEnd = end
		}
		pos = end
		if next(a, i) == end {
			i++
		}
		if next(b, j) == end {
			j++
		}
	}
	return out
}

// describe writes a rule's conditions and result on one line, for diffs.
func describe(r *Rule) string {
	var b strings.Builder
	for _, c := range []struct {
		name string
		vals []string
	}{{"channel", r.Channels}, {"class", r.Classes}, {"proc", r.Procs}, {"bin", r.BINs}, {"card_type", r.CardTypes}} {
		if len(c.vals) > 0 {
			fmt.Fprintf(&b, "%s=%s ", c.name, strings.Join(c.vals, ","))
		}
	}
	b.WriteString("-> " + r.String())
	if len(r.Fallbacks) > 0 {
		b.WriteString(" (fallbacks " + strings.Join(r.Fallbacks, ",") + ")")
	}
	return b.String()
}

func diffRules(old, new []Rule) []RuleChange {
	oldBy := map[string]*Rule{}
	for i := range old {
		oldBy[old[i].Name] = &old[i]
	}
	newBy := map[string]bool{}
	var out []RuleChange
	var oldOrder, newOrder []string // the rules in both tables, in each table's order
	for i := range new {
		r := &new[i]
		newBy[r.Name] = true
		o := oldBy[r.Name]
		switch {
		case o == nil:
			out = append(out, RuleChange{Rule: r.Name, Change: "added", New: describe(r), Source: r.Source.String()})
			continue
		case describe(o) != describe(r):
			out = append(out, RuleChange{Rule: r.Name, Change: "changed", Old: describe(o), New: describe(r), Source: r.Source.String()})
		}
		newOrder = append(newOrder, r.Name)
	}
	for i := range old {
		if r := &old[i]; !newBy[r.Name] {
			out = append(out, RuleChange{Rule: r.Name, Change: "removed", Old: describe(r), Source: r.Source.String()})
		} else {
			oldOrder = append(oldOrder, r.Name)
		}
	}
	// The rules outside a longest common subsequence of the two orders are the ones that moved.
	keep := lcs(oldOrder, newOrder)
	for i := range new {
		r := &new[i]
		if oldBy[r.Name] != nil && !keep[r.Name] {
			out = append(out, RuleChange{Rule: r.Name, Change: "moved",
				Old: fmt.Sprintf("position %d", slices.Index(oldOrder, r.Name)+1),
				New: fmt.Sprintf("position %d", slices.Index(newOrder, r.Name)+1), Source: r.Source.String()})
		}
	}
	return out
}

// lcs gives the names on a longest common subsequence of a and b.
func lcs(a, b []string) map[string]bool {
	n, m := len(a), len(b)
	dp := make([][]int, n+1)
	for i := range dp {
		dp[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				dp[i][j] = dp[i+1][j+1] + 1
			} else {
				dp[i][j] = max(dp[i+1][j], dp[i][j+1])
			}
		}
	}
	keep := map[string]bool{}
	for i, j := 0, 0; i < n && j < m; {
		switch {
		case a[i] == b[j]:
			keep[a[i]] = true
			i, j = i+1, j+1
		case dp[i+1][j] >= dp[i][j+1]:
			i++
		default:
			j++
		}
	}
	return keep
}

func diffAcquirers(old, new *Table) []string {
	var out []string
	for _, a := range new.acquirers {
		o := old.byName[a.Name]
		switch {
		case o == nil:
			out = append(out, fmt.Sprintf("acquirer %s added (%s)", a.Name, a.Source))
		case !slices.Equal(o.Fallbacks, a.Fallbacks):
			out = append(out, fmt.Sprintf("acquirer %s: fallbacks [%s] -> [%s] (%s)", a.Name,
				strings.Join(o.Fallbacks, ","), strings.Join(a.Fallbacks, ","), a.Source))
		}
		if o != nil && (!slices.Equal(o.Endpoints, a.Endpoints) || o.Strategy != a.Strategy || o.Breaker != a.Breaker) {
			out = append(out, fmt.Sprintf("acquirer %s: endpoints, strategy or breaker changed (%s)", a.Name, a.Source))
		}
	}
	for _, a := range old.acquirers {
		if new.byName[a.Name] == nil {
			out = append(out, fmt.Sprintf("acquirer %s removed", a.Name))
		}
	}
	return out
}
