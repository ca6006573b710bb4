package bank

import "testing"

// testRules: one card account, one BIN-prefix account with a limit, a stolen-card list, default decline 14.
func testRules() *Rules {
	return &Rules{
		Accounts: []Account{
			{Prefix: "4012345678909", Balance: 10000},
			{Prefix: "401234", Balance: 1000000, Limit: 5000},
		},
		BINLists: []BINList{{Name: "stolen", Code: "43", Prefixes: []string{"4012349"}}},
		Default:  Default{Code: "14"},
	}
}

func TestLedgerDebitDecisions(t *testing.T) {
	tests := []struct {
		name    string
		pan     string
		amount  int64
		code    string
		balance int64
	}{
		{"approves within the balance", "4012345678909", 2500, "00", 7500},
		{"declines 51 above the balance", "4012345678909", 10001, "51", 10000},
		{"longest prefix wins: BIN account with a limit declines 61", "4012340000000001", 5001, "61", 1000000},
		{"BIN account approves under its limit", "4012340000000001", 5000, "00", 995000},
		{"BIN list declines with its code before any account", "4012349000000000", 1, "43", 1000000},
		{"card without account gets the default code", "5555555555554444", 1, "14", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLedger(testRules())
			res := l.Debit(Request{Key: "k", PAN: tt.pan, Amount: tt.amount})
			if res.Code != tt.code {
				t.Fatalf("code %s, want %s", res.Code, tt.code)
			}
			if (res.AuthCode != "") != (tt.code == "00") {
				t.Errorf("auth code %q on code %s", res.AuthCode, res.Code)
			}
			if b, ok := l.Balance(tt.pan); ok && b != tt.balance {
				t.Errorf("balance %d, want %d", b, tt.balance)
			}
		})
	}
}

func TestLedgerNilRulesApprovesEverything(t *testing.T) {
	l := NewLedger(nil)
	if res := l.Debit(Request{Key: "k", PAN: "5555555555554444", Amount: 1 << 40}); res.Code != "00" || res.AuthCode == "" {
		t.Fatalf("got %+v", res)
	}
}

func TestLedgerDefaultLimit(t *testing.T) {
	l := NewLedger(&Rules{Default: Default{Code: "00", Limit: 100}})
	if res := l.Debit(Request{Key: "a", PAN: "1", Amount: 101}); res.Code != CodeOverLimit {
		t.Fatalf("code %s, want 61", res.Code)
	}
}

const card = "4012345678909"

// step is one ledger operation of a sequence and what it must give.
type step struct {
	op      string // debit, credit, reverse, repeat (same key again)
	key     string
	orig    string
	amount  int64
	code    string
	balance int64
}

func TestLedgerVoidsRefundsAndReversalsApplyOnce(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"a repeated debit is answered again and applied once", []step{
			{op: "debit", key: "p", amount: 1000, code: "00", balance: 9000},
			{op: "debit", key: "p", amount: 1000, code: "00", balance: 9000},
		}},
		{"a void restores the amount; a second void of it declines 12", []step{
			{op: "debit", key: "p", amount: 1000, code: "00", balance: 9000},
			{op: "credit", key: "v", orig: "p", amount: 1000, code: "00", balance: 10000},
			{op: "credit", key: "v", orig: "p", amount: 1000, code: "00", balance: 10000},
			{op: "credit", key: "v2", orig: "p", amount: 1000, code: "12", balance: 10000},
		}},
		{"partial refunds up to the original, then 13", []step{
			{op: "debit", key: "p", amount: 1000, code: "00", balance: 9000},
			{op: "credit", key: "r1", orig: "p", amount: 300, code: "00", balance: 9300},
			{op: "credit", key: "r2", orig: "p", amount: 800, code: "13", balance: 9300},
			{op: "credit", key: "r3", orig: "p", amount: 700, code: "00", balance: 10000},
		}},
		{"a void of an unknown original declines 25", []step{
			{op: "credit", key: "v", orig: "nope", amount: 1, code: "25", balance: 10000},
		}},
		{"a reversal restores a debit once, however often it is repeated", []step{
			{op: "debit", key: "p", amount: 1000, code: "00", balance: 9000},
			{op: "reverse", orig: "p", code: "00", balance: 10000},
			{op: "reverse", orig: "p", code: "00", balance: 10000},
			{op: "credit", key: "v", orig: "p", amount: 1000, code: "12", balance: 10000},
		}},
		{"reversing a refunded debit gives back only what is left", []step{
			{op: "debit", key: "p", amount: 1000, code: "00", balance: 9000},
			{op: "credit", key: "r", orig: "p", amount: 400, code: "00", balance: 9400},
			{op: "reverse", orig: "p", code: "00", balance: 10000},
			{op: "reverse", orig: "r", code: "00", balance: 10000},
		}},
		{"reversing a void takes the credit back and the purchase can be voided again", []step{
			{op: "debit", key: "p", amount: 1000, code: "00", balance: 9000},
			{op: "credit", key: "v", orig: "p", amount: 1000, code: "00", balance: 10000},
			{op: "reverse", orig: "v", code: "00", balance: 9000},
			{op: "reverse", orig: "v", code: "00", balance: 9000},
			{op: "credit", key: "v2", orig: "p", amount: 1000, code: "00", balance: 10000},
		}},
		{"reversal of a declined or unknown request is acknowledged and changes nothing", []step{
			{op: "debit", key: "big", amount: 20000, code: "51", balance: 10000},
			{op: "reverse", orig: "big", code: "00", balance: 10000},
			{op: "reverse", orig: "never-seen", code: "00", balance: 10000},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLedger(testRules())
			for i, s := range tt.steps {
				req := Request{Key: s.key, Orig: s.orig, PAN: card, Amount: s.amount}
				var res Result
				switch s.op {
				case "debit":
					res = l.Debit(req)
				case "credit":
					res = l.Credit(req)
				case "reverse":
					res = l.Reverse(req)
				}
				b, _ := l.Balance(card)
				if res.Code != s.code || b != s.balance {
					t.Fatalf("step %d (%s %s): code %s balance %d, want %s %d", i, s.op, s.key, res.Code, b, s.code, s.balance)
				}
			}
		})
	}
}

func TestLedgerForgetsOldestBeyondHistory(t *testing.T) {
	l := NewLedger(&Rules{Default: Default{Code: "00"}, History: 2})
	for _, k := range []string{"a", "b", "c"} {
		l.Debit(Request{Key: k, Amount: 1})
	}
	if res := l.Credit(Request{Key: "v", Orig: "a", Amount: 1}); res.Code != CodeNoOriginal {
		t.Errorf("void of a forgotten original: %s, want 25", res.Code)
	}
	if res := l.Credit(Request{Key: "w", Orig: "c", Amount: 1}); res.Code != CodeApproved {
		t.Errorf("void of a remembered original: %s, want 00", res.Code)
	}
}

func TestLedgerPINCheck(t *testing.T) {
	r := testRules()
	r.Accounts[0].PINHash = HashPIN("1234")
	tests := []struct {
		name   string
		verify func([]byte) bool
		code   string
	}{
		{"right PIN approves", func(h []byte) bool { return equalHash(h, HashPIN("1234")) }, "00"},
		{"wrong PIN declines 55", func(h []byte) bool { return equalHash(h, HashPIN("4321")) }, "55"},
		{"no PIN block is not checked", nil, "00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLedger(r)
			if res := l.Debit(Request{Key: "k", PAN: card, Amount: 1, VerifyPIN: tt.verify}); res.Code != tt.code {
				t.Errorf("code %s, want %s", res.Code, tt.code)
			}
		})
	}
}
