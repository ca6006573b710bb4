package bank

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
	"sync"
)

// Response codes the ledger gives.
const (
	CodeApproved          = "00"
	CodeInvalidTxn        = "12" // nothing left to void, or the original was reversed or declined
	CodeInvalidAmount     = "13" // a void or refund larger than what is left of the original
	CodeNoOriginal        = "25" // the original of a void or refund is unknown
	CodeInsufficientFunds = "51"
	CodeWrongPIN          = "55"
	CodeOverLimit         = "61"
)

// Request is one balance-changing or inquiring request, reduced to what the ledger needs.
type Request struct {
	// Key identifies the transaction: a request with a Key seen before is a duplicate and gets the first
	// answer again without being applied twice.
	Key string
	// Orig is the Key of the original transaction, for voids, refunds and reversals.
	Orig   string
	PAN    string
	Amount int64
	// VerifyPIN, when the request carries a PIN block, reports whether its PIN hashes (SHA-256) to hash.
	VerifyPIN func(hash []byte) bool
}

// Result is the ledger's answer.
type Result struct {
	Code       string
	AuthCode   string // set on approvals of debits and credits
	Balance    int64  // the account's balance after the request
	HasBalance bool   // the card has an account
	Duplicate  bool   // the request's Key was seen before: nothing was applied
}

// txn is a remembered transaction.
type txn struct {
	res      Result
	account  int // index in rules.Accounts, or -1
	amount   int64
	credit   bool   // a void or refund
	orig     string // for credits: the debit it refers to
	refunded int64  // for debits: voided or refunded so far
	reversed bool
}

// Ledger holds the balances and the remembered transactions. It is safe for concurrent use; one mutex is
// enough at simulator rates.
type Ledger struct {
	mu       sync.Mutex
	rules    *Rules
	balances []int64
	txns     map[string]*txn
	order    []string // ring of remembered keys, oldest at next once full
	next     int
	history  int
	authSeq  uint32
}

// NewLedger starts a ledger with the balances of the rules (nil rules: approve everything).
func NewLedger(r *Rules) *Ledger {
	if r == nil {
		r = &Rules{Default: Default{Code: CodeApproved}}
	}
	h := r.History
	if h <= 0 {
		h = DefaultHistory
	}
	l := &Ledger{rules: r, balances: make([]int64, len(r.Accounts)), txns: make(map[string]*txn), history: h}
	for i, a := range r.Accounts {
		l.balances[i] = a.Balance
	}
	return l
}

// Balance returns the balance of the account that the card number pan falls in.
func (l *Ledger) Balance(pan string) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := l.account(pan)
	if i < 0 {
		return 0, false
	}
	return l.balances[i], true
}

// Debit authorizes a purchase or an authorization: BIN lists, then the card's account (PIN, limit,
// balance), then the default rule.
func (l *Ledger) Debit(req Request) Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.txns[req.Key]; ok {
		return duplicate(t.res)
	}
	t := &txn{account: -1, amount: req.Amount}
	t.res = l.decideDebit(req, t)
	l.remember(req.Key, t)
	return t.res
}

func (l *Ledger) decideDebit(req Request, t *txn) Result {
	if code, ok := l.binDecline(req.PAN); ok {
		return Result{Code: code}
	}
	i := l.account(req.PAN)
	if i < 0 {
		d := l.rules.Default
		switch {
		case d.Code != CodeApproved:
			return Result{Code: d.Code}
		case d.Limit > 0 && req.Amount > d.Limit:
			return Result{Code: CodeOverLimit}
		}
		return Result{Code: CodeApproved, AuthCode: l.authCode()}
	}
	a := &l.rules.Accounts[i]
	res := Result{Balance: l.balances[i], HasBalance: true}
	switch {
	case !pinOK(a, req):
		res.Code = CodeWrongPIN
	case a.Limit > 0 && req.Amount > a.Limit:
		res.Code = CodeOverLimit
	case req.Amount > l.balances[i]:
		res.Code = CodeInsufficientFunds
	default:
		l.balances[i] -= req.Amount
		t.account = i
		res = Result{Code: CodeApproved, AuthCode: l.authCode(), Balance: l.balances[i], HasBalance: true}
	}
	return res
}

// Inquire answers a balance inquiry; it changes nothing.
func (l *Ledger) Inquire(req Request) Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	if code, ok := l.binDecline(req.PAN); ok {
		return Result{Code: code}
	}
	i := l.account(req.PAN)
	if i < 0 {
		return Result{Code: l.rules.Default.Code}
	}
	if !pinOK(&l.rules.Accounts[i], req) {
		return Result{Code: CodeWrongPIN}
	}
	return Result{Code: CodeApproved, Balance: l.balances[i], HasBalance: true}
}

// Credit applies a void or refund of the debit req.Orig: the amount goes back to the account, at most what
// is left of the original.
func (l *Ledger) Credit(req Request) Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.txns[req.Key]; ok {
		return duplicate(t.res)
	}
	t := &txn{account: -1, amount: req.Amount, credit: true, orig: req.Orig}
	o, ok := l.txns[req.Orig]
	switch {
	case !ok:
		t.res = Result{Code: CodeNoOriginal}
	case o.credit || o.reversed || o.res.Code != CodeApproved || o.refunded == o.amount:
		t.res = Result{Code: CodeInvalidTxn}
	case req.Amount > o.amount-o.refunded:
		t.res = Result{Code: CodeInvalidAmount}
	default:
		o.refunded += req.Amount
		t.account = o.account
		t.res = Result{Code: CodeApproved, AuthCode: l.authCode()}
		if o.account >= 0 {
			l.balances[o.account] += req.Amount
			t.res.Balance, t.res.HasBalance = l.balances[o.account], true
		}
	}
	l.remember(req.Key, t)
	return t.res
}

// Reverse undoes the transaction req.Orig once: a debit gives back what was not already voided, a void or
// refund takes its credit back (unless its debit was reversed, which already settled it). A reversal of an
// unknown, declined or already reversed transaction is acknowledged with 00 and changes nothing, so a
// repeated reversal is applied once.
func (l *Ledger) Reverse(req Request) Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	o, ok := l.txns[req.Orig]
	if !ok || o.reversed || o.res.Code != CodeApproved {
		return Result{Code: CodeApproved, Duplicate: ok && o.reversed}
	}
	o.reversed = true
	giveBack := o.amount - o.refunded
	if o.credit {
		giveBack = 0
		if d, ok := l.txns[o.orig]; ok && !d.reversed {
			d.refunded -= o.amount
			giveBack = -o.amount
		}
	}
	res := Result{Code: CodeApproved}
	if o.account >= 0 {
		l.balances[o.account] += giveBack
		res.Balance, res.HasBalance = l.balances[o.account], true
	}
	return res
}

func duplicate(r Result) Result {
	r.Duplicate = true
	return r
}

// remember stores t under key, forgetting the oldest transaction when the history is full.
func (l *Ledger) remember(key string, t *txn) {
	l.txns[key] = t
	if len(l.order) < l.history {
		l.order = append(l.order, key)
		return
	}
	delete(l.txns, l.order[l.next])
	l.order[l.next] = key
	l.next = (l.next + 1) % l.history
}

// account returns the index of the account with the longest prefix of pan, or -1.
func (l *Ledger) account(pan string) int {
	best, bestLen := -1, 0
	for i, a := range l.rules.Accounts {
		if len(a.Prefix) > bestLen && strings.HasPrefix(pan, a.Prefix) {
			best, bestLen = i, len(a.Prefix)
		}
	}
	return best
}

func (l *Ledger) binDecline(pan string) (string, bool) {
	for _, b := range l.rules.BINLists {
		for _, p := range b.Prefixes {
			if strings.HasPrefix(pan, p) {
				return b.Code, true
			}
		}
	}
	return "", false
}

func (l *Ledger) authCode() string {
	l.authSeq = l.authSeq%999999 + 1
	var b [6]byte
	for i, v := len(b)-1, l.authSeq; i >= 0; i, v = i-1, v/10 {
		b[i] = byte('0' + v%10)
	}
	return string(b[:])
}

// pinOK reports whether the request passes the account's PIN check: accounts without a PIN hash and requests
// without a PIN block pass.
func pinOK(a *Account, req Request) bool {
	return a.PINHash == nil || req.VerifyPIN == nil || req.VerifyPIN(a.PINHash)
}

// HashPIN returns the SHA-256 of a PIN's digits, the form rules files keep (pin_sha256).
func HashPIN(pin string) []byte {
	h := sha256.Sum256([]byte(pin))
	return h[:]
}

// equalHash compares two hashes in constant time.
func equalHash(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
