package bank

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRulesReadsEveryKey(t *testing.T) {
	src := `
accounts:
  - {prefix: "4012345678909", balance: 10000, limit: 5000, pin_sha256: "03ac674216f3e15c761ee1a5e255f067953623c8b388b4459e13f978d7c846f4"}
  - {prefix: "401234", balance: 1000000}
bin_lists:
  - {name: stolen, code: "43", prefixes: ["4012349", "4999"]}
default: {code: "05", limit: 100}
history: 10
`
	r, err := ParseRules("r.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Accounts) != 2 || r.Accounts[0].Limit != 5000 || !equalHash(r.Accounts[0].PINHash, HashPIN("1234")) ||
		r.Accounts[1].Balance != 1000000 {
		t.Errorf("accounts %+v", r.Accounts)
	}
	if len(r.BINLists) != 1 || r.BINLists[0].Code != "43" || len(r.BINLists[0].Prefixes) != 2 {
		t.Errorf("bin lists %+v", r.BINLists)
	}
	if r.Default != (Default{Code: "05", Limit: 100}) || r.History != 10 {
		t.Errorf("default %+v history %d", r.Default, r.History)
	}
}

func TestParseRulesEmptyFileApprovesByDefault(t *testing.T) {
	r, err := ParseRules("r.yaml", nil)
	if err != nil || r.Default.Code != "00" {
		t.Fatalf("%+v %v", r, err)
	}
}

func TestParseRulesErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		msg       string
	}{
		{"unknown top-level key", "accounts: []\nbogus: 1\n", 2, "unknown key"},
		{"prefix with letters", "accounts:\n  - prefix: 40AB\n    balance: 1\n", 2, "1 to 19 digits"},
		{"negative balance", "accounts:\n  - prefix: \"4\"\n    balance: -5\n", 3, ">= 0"},
		{"BIN list approving", "bin_lists:\n  - name: x\n    code: \"00\"\n    prefixes: [\"4\"]\n", 2, "decline code"},
		{"response code of 3 characters", "default: {code: \"000\"}\n", 1, "2 characters"},
		{"bad pin hash", "accounts:\n  - prefix: \"4\"\n    pin_sha256: abc\n", 3, "64 hex"},
		{"account without prefix", "accounts:\n  - balance: 5\n", 2, "without prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRules("r.yaml", []byte(tt.src))
			var re *RulesError
			if !errors.As(err, &re) || re.Line != tt.line || !strings.Contains(re.Msg, tt.msg) {
				t.Fatalf("error %v, want line %d containing %q", err, tt.line, tt.msg)
			}
		})
	}
}
