package bank

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ControlHandler serves the control endpoint: GET /faults returns the faults in force as JSON; PUT /faults
// changes them (the keys given replace those in force, the others stay); POST /keychange with
// {"key":"zpk"} or {"key":"zak"} sends a key change to every connection (see ChangeKey); GET /balances returns
// each account's balance by prefix and GET /transactions the remembered transactions (read-only, no card
// data: Ledger.Balances and Ledger.Transactions); GET /metrics is Prometheus.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Faults())
	})
	mux.HandleFunc("GET /balances", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.ledger.Balances())
	})
	mux.HandleFunc("GET /transactions", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.ledger.Transactions())
	})
	mux.HandleFunc("PUT /faults", func(w http.ResponseWriter, r *http.Request) {
		f := s.Faults()
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		if err := s.SetFaults(f); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, f)
	})
	mux.HandleFunc("POST /keychange", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Key string `json:"key"` // zpk or zak
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		keyType, ok := map[string]string{"zpk": KeyTypePIN, "zak": KeyTypeMAC}[req.Key]
		if !ok {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `key must be "zpk" or "zak"`})
			return
		}
		stan, n, err := s.ChangeKey(keyType)
		if err != nil {
			writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"stan": stan, "connections": n})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// LedgerTxn is a remembered transaction as Ledger.Transactions reports it: no card data.
type LedgerTxn struct {
	Key      string `json:"key"`  // terminal | STAN | transmission time | acquirer, as the request carried them
	Orig     string `json:"orig"` // for voids and refunds: the key of their debit
	Code     string `json:"code"` // the ledger's answer
	Amount   int64  `json:"amount"`
	Account  int    `json:"account"` // index of the account it moved, or -1 (no account, or declined)
	Credit   bool   `json:"credit"`  // a void or refund
	Refunded int64  `json:"refunded"`
	Reversed bool   `json:"reversed"`
}

// Transactions returns a snapshot of the remembered transactions (at most the rules' History), in no
// particular order. It is read-only: tests and the control endpoint reconcile what the bank applied.
func (l *Ledger) Transactions() []LedgerTxn {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]LedgerTxn, 0, len(l.txns))
	for k, t := range l.txns {
		out = append(out, LedgerTxn{Key: k, Orig: t.orig, Code: t.res.Code, Amount: t.amount, Account: t.account,
			Credit: t.credit, Refunded: t.refunded, Reversed: t.reversed})
	}
	return out
}

// Balances returns the balance of every account of the rules, by account prefix.
func (l *Ledger) Balances() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int64, len(l.balances))
	for i, a := range l.rules.Accounts {
		out[a.Prefix] = l.balances[i]
	}
	return out
}
