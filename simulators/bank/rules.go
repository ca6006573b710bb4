package bank

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/railswitch/railswitch/internal/yamlwalk"
	"go.yaml.in/yaml/v3"
)

// Rules is the bank's authorization policy: accounts with balances, BIN lists that decline, and the answer
// for cards without an account. The zero value (no file) approves every request with 00.
type Rules struct {
	// Accounts are matched by the longest prefix of the card number; a full card number is its own prefix.
	Accounts []Account
	// BINLists decline every card whose number starts with one of a list's prefixes, before any account.
	BINLists []BINList
	// Default answers cards that have no account.
	Default Default
	// History is how many transactions are remembered for duplicates, voids and reversals (oldest forgotten
	// first); 0 means DefaultHistory.
	History int
}

// DefaultHistory is the number of transactions remembered when the rules do not say.
const DefaultHistory = 200000

// Account is a balance shared by the cards whose number starts with Prefix.
type Account struct {
	Prefix  string
	Balance int64 // minor units
	// Limit is the largest single debit (minor units); above it the request declines 61. 0: no limit.
	Limit int64
	// PINHash is the SHA-256 of the PIN's digits; when set, a request with a PIN block (field 52) must carry
	// that PIN under the ZPK or it declines 55.
	PINHash []byte
}

// BINList declines cards by prefix with its own response code.
type BINList struct {
	Name     string
	Code     string
	Prefixes []string
}

// Default is the answer for a card with no account: Code 00 approves (no balance is kept), any other code
// declines with it.
type Default struct {
	Code  string
	Limit int64 // largest single debit approved by default; above it 61. 0: no limit.
}

// RulesError is a problem in a rules file, with its line.
type RulesError struct {
	File string
	Line int
	Msg  string
}

// Error describes the problem.
func (e *RulesError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// LoadRules reads a rules file (format in docs/bank-link.md).
func LoadRules(path string) (*Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseRules(path, data)
}

// ParseRules parses rules YAML; file names the source in errors.
func ParseRules(file string, data []byte) (*Rules, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &RulesError{File: file, Line: 1, Msg: err.Error()}
	}
	r := &Rules{Default: Default{Code: "00"}}
	if len(doc.Content) == 0 {
		return r, nil
	}
	p := &rulesParser{file: file}
	p.Walker = yamlwalk.Walker{Fail: func(n *yaml.Node, msg string) { p.fail(n, "%s", msg) }}
	p.Mapping(doc.Content[0], func(key string, _, v *yaml.Node) {
		switch key {
		case "accounts":
			p.List(v, func(n *yaml.Node) { r.Accounts = append(r.Accounts, p.account(n)) })
		case "bin_lists":
			p.List(v, func(n *yaml.Node) { r.BINLists = append(r.BINLists, p.binList(n)) })
		case "default":
			p.Mapping(v, func(key string, _, v *yaml.Node) {
				switch key {
				case "code":
					r.Default.Code = p.code(v)
				case "limit":
					r.Default.Limit = p.amount(v)
				default:
					p.fail(v, "unknown key %q in default (want code, limit)", key)
				}
			})
		case "history":
			var h int
			if err := v.Decode(&h); err != nil || h < 0 {
				p.fail(v, "history: want a whole number of transactions >= 0, got %q", v.Value)
			}
			r.History = h
		default:
			p.fail(v, "unknown key %q (want accounts, bin_lists, default, history)", key)
		}
	})
	if p.err != nil {
		return nil, p.err
	}
	return r, nil
}

// rulesParser walks the YAML nodes and keeps the first error, with its line.
type rulesParser struct {
	yamlwalk.Walker
	file string
	err  error
}

func (p *rulesParser) fail(n *yaml.Node, format string, args ...any) {
	if p.err == nil {
		p.err = &RulesError{File: p.file, Line: n.Line, Msg: fmt.Sprintf(format, args...)}
	}
}

func (p *rulesParser) account(n *yaml.Node) Account {
	var a Account
	p.Mapping(n, func(key string, _, v *yaml.Node) {
		switch key {
		case "prefix":
			a.Prefix = p.prefix(v)
		case "balance":
			a.Balance = p.amount(v)
		case "limit":
			a.Limit = p.amount(v)
		case "pin_sha256":
			h, err := hex.DecodeString(v.Value)
			if err != nil || len(h) != 32 {
				p.fail(v, "pin_sha256 must be 64 hex digits")
			}
			a.PINHash = h
		default:
			p.fail(v, "unknown key %q in an account (want prefix, balance, limit, pin_sha256)", key)
		}
	})
	if a.Prefix == "" {
		p.fail(n, "account without prefix")
	}
	return a
}

func (p *rulesParser) binList(n *yaml.Node) BINList {
	var b BINList
	p.Mapping(n, func(key string, _, v *yaml.Node) {
		switch key {
		case "name":
			b.Name = v.Value
		case "code":
			b.Code = p.code(v)
		case "prefixes":
			p.List(v, func(c *yaml.Node) { b.Prefixes = append(b.Prefixes, p.prefix(c)) })
		default:
			p.fail(v, "unknown key %q in a BIN list (want name, code, prefixes)", key)
		}
	})
	if b.Code == "" || b.Code == "00" {
		p.fail(n, "BIN list %q needs a decline code other than 00", b.Name)
	}
	return b
}

func (p *rulesParser) prefix(n *yaml.Node) string {
	s := n.Value
	if n.Kind != yaml.ScalarNode || s == "" || len(s) > 19 || strings.Trim(s, "0123456789") != "" {
		p.fail(n, "a card prefix is 1 to 19 digits (quote it)")
	}
	return s
}

func (p *rulesParser) code(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode || len(n.Value) != 2 {
		p.fail(n, "a response code is 2 characters (quote it: \"05\")")
	}
	return n.Value
}

func (p *rulesParser) amount(n *yaml.Node) int64 {
	var v int64
	if err := n.Decode(&v); err != nil || v < 0 {
		p.fail(n, "want a whole number of minor units >= 0, got %q", n.Value)
	}
	return v
}
