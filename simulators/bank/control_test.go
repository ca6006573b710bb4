package bank

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"

	"github.com/railswitch/railswitch/specs"
)

func TestLedgerTransactionsAndBalancesReportWhatWasApplied(t *testing.T) {
	tests := []struct {
		name     string
		run      func(l *Ledger)
		want     []LedgerTxn
		balances map[string]int64
	}{
		{"nothing applied", func(*Ledger) {}, []LedgerTxn{},
			map[string]int64{"4012345678909": 10000, "401234": 1000000}},
		{"a debit, then its reversal", func(l *Ledger) {
			l.Debit(Request{Key: "p", PAN: "4012345678909", Amount: 1000})
			l.Reverse(Request{Orig: "p"})
		}, []LedgerTxn{{Key: "p", Code: "00", Amount: 1000, Account: 0, Reversed: true}},
			map[string]int64{"4012345678909": 10000, "401234": 1000000}},
		{"a declined debit, an approved one and a partial refund", func(l *Ledger) {
			l.Debit(Request{Key: "big", PAN: "4012345678909", Amount: 20000})
			l.Debit(Request{Key: "p", PAN: "4012345678909", Amount: 1000})
			l.Credit(Request{Key: "r", Orig: "p", PAN: "4012345678909", Amount: 300})
		}, []LedgerTxn{
			{Key: "big", Code: "51", Amount: 20000, Account: -1},
			{Key: "p", Code: "00", Amount: 1000, Account: 0, Refunded: 300},
			{Key: "r", Orig: "p", Code: "00", Amount: 300, Account: 0, Credit: true},
		}, map[string]int64{"4012345678909": 9300, "401234": 1000000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLedger(testRules())
			tt.run(l)
			got := l.Transactions()
			sort.Slice(got, func(i, j int) bool { return got[i].Key < got[j].Key })
			if len(got) != len(tt.want) {
				t.Fatalf("Transactions() = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("Transactions()[%d] = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
			b := l.Balances()
			if len(b) != len(tt.balances) {
				t.Fatalf("Balances() = %v, want %v", b, tt.balances)
			}
			for k, v := range tt.balances {
				if b[k] != v {
					t.Errorf("Balances()[%s] = %d, want %d", k, b[k], v)
				}
			}
		})
	}
}

func TestControlServesBalancesAndTransactionsReadOnly(t *testing.T) {
	spec, err := specs.Get("iso87-ascii")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Spec: spec, Rules: testRules()})
	if err != nil {
		t.Fatal(err)
	}
	srv.Ledger().Debit(Request{Key: "p", PAN: "4012345678909", Amount: 1000})
	h := srv.ControlHandler()
	tests := []struct {
		method, path string
		status       int
		check        func(t *testing.T, body []byte)
	}{
		{"GET", "/balances", http.StatusOK, func(t *testing.T, body []byte) {
			var b map[string]int64
			if err := json.Unmarshal(body, &b); err != nil || b["4012345678909"] != 9000 || b["401234"] != 1000000 {
				t.Errorf("body %s (%v)", body, err)
			}
		}},
		{"GET", "/transactions", http.StatusOK, func(t *testing.T, body []byte) {
			var txns []LedgerTxn
			if err := json.Unmarshal(body, &txns); err != nil || len(txns) != 1 || txns[0].Key != "p" || txns[0].Amount != 1000 {
				t.Errorf("body %s (%v)", body, err)
			}
		}},
		{"PUT", "/balances", http.StatusMethodNotAllowed, nil},
		{"POST", "/transactions", http.StatusMethodNotAllowed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			if tt.check != nil {
				tt.check(t, rec.Body.Bytes())
			}
		})
	}
}
