package pos

import (
	"fmt"
	"sort"
)

// Txn names a terminal transaction, as the CLI and scenario files spell it.
type Txn string

// The POS terminal's transactions (unionpay-pos.md section 4) and the kiosk's two.
const (
	SignOn           Txn = "sign-on"
	SignOff          Txn = "sign-off"
	Echo             Txn = "echo"
	Purchase         Txn = "purchase"
	Balance          Txn = "balance"
	Void             Txn = "void"
	Refund           Txn = "refund"
	PreAuth          Txn = "preauth"
	PreAuthVoid      Txn = "preauth-void"
	Completion       Txn = "completion"
	CompletionAdvice Txn = "completion-advice"
	CompletionVoid   Txn = "completion-void"
	Settle           Txn = "settle"
	Reversal         Txn = "reversal"     // sent by the terminal itself, never asked for
	BatchUpload      Txn = "batch-upload" // sent by the terminal itself after an unbalanced settlement
	KioskPurchase    Txn = "kiosk-purchase"
	KioskRefund      Txn = "kiosk-refund"
)

// financial describes a financial transaction: MTI, processing code (3), condition code (25), message type
// code (60.1), whether it is reversed when unanswered, and which earlier transactions it refers to.
type financial struct {
	mti, proc, cond, typ string
	reversible           bool
	orig                 []Txn // kinds of original it refers to; none for a new card transaction
	origAmount           bool  // the amount is the original's (voids)
	origDate             bool  // 61 carries the original date MMDD
}

var financials = map[Txn]financial{
	Purchase:         {mti: "0200", proc: "000000", cond: "00", typ: "22", reversible: true},
	Balance:          {mti: "0200", proc: "310000", cond: "00", typ: "01"},
	Void:             {mti: "0200", proc: "200000", cond: "00", typ: "23", reversible: true, orig: []Txn{Purchase}, origAmount: true},
	Refund:           {mti: "0220", proc: "200000", cond: "00", typ: "25", orig: []Txn{Purchase, Completion, CompletionAdvice}, origDate: true},
	PreAuth:          {mti: "0100", proc: "030000", cond: "06", typ: "10", reversible: true},
	PreAuthVoid:      {mti: "0100", proc: "200000", cond: "06", typ: "11", reversible: true, orig: []Txn{PreAuth}, origAmount: true, origDate: true},
	Completion:       {mti: "0200", proc: "000000", cond: "06", typ: "20", reversible: true, orig: []Txn{PreAuth}, origDate: true},
	CompletionAdvice: {mti: "0220", proc: "000000", cond: "06", typ: "24", orig: []Txn{PreAuth}, origDate: true},
	CompletionVoid:   {mti: "0200", proc: "200000", cond: "06", typ: "21", reversible: true, orig: []Txn{Completion}, origAmount: true, origDate: true},
}

// Txns lists the transactions a caller can ask a POS terminal for.
func Txns() []Txn {
	out := []Txn{SignOn, SignOff, Echo, Settle}
	for t := range financials {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// ParseTxn checks a transaction name.
func ParseTxn(s string) (Txn, error) {
	t := Txn(s)
	if _, ok := financials[t]; ok || t == SignOn || t == SignOff || t == Echo || t == Settle ||
		t == KioskPurchase || t == KioskRefund {
		return t, nil
	}
	return "", fmt.Errorf("unknown transaction %q (want one of %v, %s, %s)", s, Txns(), KioskPurchase, KioskRefund)
}
