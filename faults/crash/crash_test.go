//go:build faults

package crash

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/railswitch/railswitch/journal"
	"github.com/railswitch/railswitch/simulators/pos"
)

// Knobs of the kill test, overridable from the environment for longer runs.
var (
	numTerminals = envInt("CRASH_TERMINALS", 48)
	numKills     = envInt("CRASH_KILLS", 3)
	loadPerRun   = envDuration("CRASH_LOAD", 4*time.Second) // load before each kill, and after the last restart
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// attempt is one purchase a terminal tried and what it saw. Every purchase has its own amount, so the
// amount identifies it in the journal and at the bank.
type attempt struct {
	Terminal, Batch, Trace string
	Amount                 int64
	Bank                   int       // 0: bank A's card, 1: bank B's
	Sent                   bool      // the request was handed to a connection
	RC                     string    // field 39 of the reply; "" without one
	Approved               bool      // 39 = 00 and the reply passed the terminal's checks
	Err                    string    // no reply, refused connection, ...
	Start, At              time.Time // when the terminal began the purchase and when it had its outcome
}

// driver runs the terminals: each signs on once, then sends purchases one after another until stopped, and
// records every attempt. A terminal whose request got no reply keeps its stored reversal and sends it before
// its next purchase, as a real POS does; it never signs on again.
type driver struct {
	terms   []*pos.Terminal
	ids     []string
	stop    atomic.Bool
	wg      sync.WaitGroup
	amount  atomic.Int64
	mu      sync.Mutex
	log     []attempt
	revs    atomic.Int64 // stored reversals the switch acknowledged
	signOns atomic.Int64 // a reply asked the terminal to sign on again (must stay 0)
}

func newDriver(t *testing.T, posAddr string, n int) *driver {
	t.Helper()
	d := &driver{}
	d.amount.Store(10_000)
	for i := range n {
		id := fmt.Sprintf("LT%06d", i+1)
		term, err := pos.New(pos.Config{TerminalID: id, MerchantID: "898110000000009", TMK: demoTMK,
			Timeout: 15 * time.Second}, posAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { term.Close() })
		d.terms, d.ids = append(d.terms, term), append(d.ids, id)
	}
	return d
}

// signOn signs every terminal on once.
func (d *driver) signOn(t *testing.T) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(d.terms))
	for i, term := range d.terms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, err := term.Do(ctx, pos.Request{Txn: pos.SignOn})
			if err == nil && !res.Approved {
				err = fmt.Errorf("sign-on answered %q (%s)", res.RC, pos.FormatProblems(res.Problems))
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("terminal %s: %v", d.ids[i], err)
		}
	}
}

// start lets every terminal send purchases until halt.
func (d *driver) start() {
	for i, term := range d.terms {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			card := pos.Card{PAN: cardBankA, PIN: cardPIN}
			if i%2 == 1 {
				card.PAN = cardBankB
			}
			for !d.stop.Load() {
				amount := d.amount.Add(1)
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				res, err := term.Do(ctx, pos.Request{Txn: pos.Purchase, Amount: amount, Card: card})
				cancel()
				a := attempt{Terminal: d.ids[i], Batch: term.State().Batch, Amount: amount, Bank: i % 2, Start: start, At: time.Now()}
				if res != nil {
					if res.Reversal != nil && res.Reversal.Approved {
						d.revs.Add(1)
					}
					a.Sent, a.Trace, a.RC, a.Approved = res.Request != nil, res.Trace, res.RC, res.Approved
				}
				if err != nil {
					a.Err = err.Error()
				}
				d.mu.Lock()
				d.log = append(d.log, a)
				d.mu.Unlock()
				if !term.State().SignedOn {
					d.signOns.Add(1) // the host asked for a new sign-on: the session did not survive
					return
				}
				if err != nil {
					time.Sleep(20 * time.Millisecond) // the switch is down: do not spin
				}
			}
		}()
	}
}

// halt stops the terminals after their current purchase.
func (d *driver) halt() {
	d.stop.Store(true)
	d.wg.Wait()
}

// snapshot returns the attempts so far.
func (d *driver) snapshot() []attempt {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]attempt(nil), d.log...)
}

// runFigures are what one run of the switch did.
type runFigures struct {
	run                        int
	readyAfter                 time.Duration // start of the process to /readyz 200
	bindWait                   time.Duration // restarts refused with "address already in use" before one bound
	firstApprovalAfterKill     time.Duration // the previous run's SIGKILL to the next approval a terminal saw
	intentsRecovered           int           // reversals queued at start from intents left by the kill
	queued, acked, dead        float64       // reversal queue: entries queued, acknowledged, dead-lettered in this run
	requests, approvals, other float64       // channel requests and replies of this run (railswitch_channel_*)
}

// TestSIGKILLUnderLoadLosesNoApprovalAndReversesEveryUndeliveredOne kills the switch with SIGKILL three times
// in a row under load from dozens of terminals, restarts it on the same directories each time, and then
// reconciles what the terminals saw, the journal, the ledger sink and the banks' balances:
//
//	(a) every approval a terminal received is in the journal;
//	(b) the sink holds exactly the journal's idempotency keys (repeats counted, not failed, for the file sink);
//	(c) every request that reached a bank and was approved there but not delivered to its terminal was
//	    reversed, and the bank acknowledged the reversal (the queue ends empty, no dead letters); no approval
//	    a terminal received was reversed, except in the window between the journal append and the removal of
//	    the request's intent;
//	(d) each bank's balance moved by exactly the approved-and-not-reversed purchases, which are the approvals
//	    the terminals received.
func TestSIGKILLUnderLoadLosesNoApprovalAndReversesEveryUndeliveredOne(t *testing.T) {
	testStart := time.Now()
	dir := t.TempDir()
	banks := [2]*testBank{startBank(t, "bank-a", zoneBankA, "621234"), startBank(t, "bank-b", zoneBankB, "411111")}
	posAddr, admin := freeAddr(t), freeAddr(t)
	writeConfig(t, dir, numTerminals, banks, posAddr, admin)
	t.Logf("config in %s (sink: %s); pos %s, admin %s, banks %s %s", dir, sink.name(), posAddr, admin, banks[0].addr, banks[1].addr)

	sw, ready, _ := startReady(t, dir, 0, admin)
	t.Logf("run 0: ready %s after start", ready.Sub(sw.started).Round(time.Millisecond))
	drv := newDriver(t, posAddr, numTerminals)
	drv.signOn(t)
	drv.start()
	defer drv.halt()

	var runs []runFigures
	var recovered []string // transaction ids of intents recovered at the restarts
	fig := runFigures{run: 0, readyAfter: ready.Sub(sw.started)}
	for k := 1; k <= numKills; k++ {
		time.Sleep(loadPerRun)
		fig.fill(admin)
		sw.kill(t)
		killed := time.Now()
		runs = append(runs, fig)
		var ready time.Time
		var bindWait time.Duration
		sw, ready, bindWait = startReady(t, dir, k, admin)
		fig = runFigures{run: k, readyAfter: ready.Sub(sw.started), bindWait: bindWait}
		if bindWait > 0 {
			t.Errorf("run %d: the switch could not bind its listeners for %s after the SIGKILL (address already in use: the pos channel needs SO_REUSEADDR)",
				k, bindWait.Round(time.Millisecond))
		}
		for _, e := range readLog(t, sw.log) {
			if e.Msg == msgRecoveredIntent {
				fig.intentsRecovered++
				recovered = append(recovered, e.Txn)
			}
		}
		fig.firstApprovalAfterKill = firstApprovalAfter(t, drv, killed, 60*time.Second)
		t.Logf("run %d: SIGKILL then restart: bind retried for %s, ready %s after start, first approval %s after the kill, %d intents reversed at start",
			k, bindWait.Round(time.Millisecond), fig.readyAfter.Round(time.Millisecond), fig.firstApprovalAfterKill.Round(time.Millisecond), fig.intentsRecovered)
	}
	time.Sleep(loadPerRun)
	drv.halt()
	loadEnd := time.Now()

	// Drain: the reversal queue empty, every record shipped.
	deadline := time.Now().Add(90 * time.Second)
	for {
		pending, dead, err := reversals(admin)
		m, merr := metrics(admin)
		if err == nil && merr == nil && len(pending) == 0 && m.sum("railswitch_journal_unshipped_bytes", "") == 0 &&
			m.sum("railswitch_journal_shipper_lag_records", "") == 0 {
			if len(dead) > 0 {
				t.Errorf("(c) %d reversals in the dead letters: %+v", len(dead), dead)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not drained within 90s: %d reversals pending (%+v), unshipped %v bytes, errors %v %v",
				len(pending), pending, m.sum("railswitch_journal_unshipped_bytes", ""), err, merr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	drained := time.Now()
	fig.fill(admin)
	runs = append(runs, fig)
	sw.stop(t)
	for _, r := range runs {
		t.Logf("run %d: %6.0f requests, %6.0f approvals, %4.0f other replies; reversals queued %4.0f, acknowledged %4.0f, dead %0.f; intents reversed at start %d; ready after %s, first approval after kill %s",
			r.run, r.requests, r.approvals, r.other, r.queued, r.acked, r.dead, r.intentsRecovered,
			r.readyAfter.Round(time.Millisecond), r.firstApprovalAfterKill.Round(time.Millisecond))
	}
	t.Logf("queue drained %s after the load stopped", drained.Sub(loadEnd).Round(time.Millisecond))

	if n := drv.signOns.Load(); n > 0 {
		t.Errorf("%d terminals were asked to sign on again after a restart: sessions did not survive the kill", n)
	}
	reconcile(t, dir, drv.snapshot(), banks, recovered, drv.revs.Load())
	t.Logf("whole test %s", time.Since(testStart).Round(time.Millisecond))
}

// fill reads the run's counters from the admin API (best effort: the figures are informative).
func (f *runFigures) fill(admin string) {
	m, err := metrics(admin)
	if err != nil {
		return
	}
	f.queued, f.acked = m.sum("railswitch_saf_enqueued_total", ""), m.sum("railswitch_saf_acknowledged_total", "")
	f.dead = m.sum("railswitch_saf_dead_lettered_total", "")
	f.requests = m.sum("railswitch_channel_requests_total", "")
	f.approvals = m.sum("railswitch_channel_responses_total", `code="00"`)
	f.other = m.sum("railswitch_channel_responses_total", "") - f.approvals
}

// firstApprovalAfter waits for a terminal to see the approval of a purchase begun after since, and returns how
// long after since the first such approval came.
func firstApprovalAfter(t *testing.T, d *driver, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var first time.Time
		d.mu.Lock()
		for i := len(d.log) - 1; i >= 0 && d.log[i].At.After(since); i-- {
			if a := d.log[i]; a.Approved && a.Start.After(since) && (first.IsZero() || a.At.Before(first)) {
				first = a.At
			}
		}
		d.mu.Unlock()
		if !first.IsZero() {
			return first.Sub(since)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no approval within %s of the restart", within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reconcile checks (a) to (d) and prints the counts.
func reconcile(t *testing.T, dir string, attempts []attempt, banks [2]*testBank, recovered []string, termReversals int64) {
	t.Helper()
	recs := readJournal(t, dir+"/journal")
	recoveredSet := map[string]bool{}
	for _, id := range recovered {
		recoveredSet[id] = true
	}

	// The terminals' view, by amount.
	byAmount := map[int64]attempt{}
	var sent, seenApproved, unanswered, declined, rejected int
	for _, a := range attempts {
		if _, dup := byAmount[a.Amount]; dup {
			t.Fatalf("amount %d used twice", a.Amount)
		}
		byAmount[a.Amount] = a
		switch {
		case !a.Sent:
		case a.Approved:
			sent++
			seenApproved++
		case a.RC == "":
			sent++
			unanswered++
		case a.RC == "00":
			sent++
			rejected++ // approved but failed the terminal's checks: it reverses it itself
		default:
			sent++
			declined++
		}
	}
	codes := map[string]int{}
	for _, a := range attempts {
		if a.Sent && a.RC != "" && a.RC != "00" {
			codes[a.RC]++
		}
	}
	t.Logf("terminals: %d attempts, %d sent, %d approvals seen, %d declined (by code: %v), %d unanswered, %d approvals rejected by the terminal, %d stored reversals acknowledged",
		len(attempts), sent, seenApproved, declined, codes, unanswered, rejected, termReversals)
	if codes["A0"] > 0 {
		t.Errorf("%d purchases answered A0 (MAC failed or not signed on): terminal sessions or keys did not survive a restart", codes["A0"])
	}

	// The journal.
	journalKeys := map[string]int{}
	approvedJ := map[int64]journal.Record{} // purchases journaled approved, by amount
	var jAuth, jRev, jOther int
	for _, r := range recs {
		journalKeys[r.IdempotencyKey()]++
		switch {
		case r.Kind == journal.KindAuthorization:
			jAuth++
			if r.ResponseCode == "00" {
				if _, dup := approvedJ[r.Amount]; dup {
					t.Errorf("journal: two approvals of amount %d", r.Amount)
				}
				approvedJ[r.Amount] = r
			}
		case r.Kind == journal.KindReversal:
			jRev++
		default:
			jOther++
		}
	}
	for k, n := range journalKeys {
		if n > 1 {
			t.Errorf("journal: idempotency key %s journaled %d times", k, n)
		}
	}
	t.Logf("journal: %d records (%d purchases, %d of them approved; %d terminal reversals; %d other)", len(recs), jAuth, len(approvedJ), jRev, jOther)

	// (a) every approval a terminal received is journaled, as an approval of that terminal and trace.
	checkApprovalsJournaled(t, attempts, approvedJ, seenApproved)

	// (b) journal = sink, by idempotency key.
	sinkKeys := sink.keys(t, dir)
	checkSinkKeys(t, journalKeys, sinkKeys)

	// (c) and (d): the banks' view.
	var narrow, reversedUndelivered, reversedNeverAnswered, badReversed, notReversed, atBankApproved int
	for b, bk := range banks {
		var applied int64 // approved and not reversed at this bank
		var seen int64    // approved purchases on this bank's card that terminals received
		var narrowAmt int64
		for _, tx := range bk.srv.Ledger().Transactions() {
			if tx.Credit || tx.Code != "00" {
				continue
			}
			atBankApproved++
			a, known := byAmount[tx.Amount]
			if !known {
				t.Errorf("(c) %s approved amount %d that no terminal sent", bk.name, tx.Amount)
				continue
			}
			if a.Bank != b {
				t.Errorf("(c) amount %d of bank %d's card approved at %s", tx.Amount, a.Bank, bk.name)
			}
			r, journaled := approvedJ[tx.Amount]
			switch {
			case tx.Reversed && a.Approved && journaled && recoveredSet[r.TxnID]:
				narrow++ // journaled, delivered, then killed before its intent was removed
				narrowAmt += tx.Amount
			case tx.Reversed && a.Approved:
				badReversed++
				t.Errorf("(c) approval seen by %s trace %s amount %d was reversed at %s", a.Terminal, a.Trace, a.Amount, bk.name)
			case tx.Reversed && journaled:
				reversedUndelivered++ // journaled approval never delivered: reversed, as invariant 2 wants
			case tx.Reversed:
				reversedNeverAnswered++ // sent, approved at the bank, no outcome recorded: reversed
			case !a.Approved:
				notReversed++
				applied += tx.Amount
				t.Errorf("(c) %s approved amount %d (terminal %s trace %s saw rc %q err %q; journaled approval: %v) and it was never reversed",
					bk.name, tx.Amount, a.Terminal, a.Trace, a.RC, a.Err, journaled)
			default:
				applied += tx.Amount
			}
		}
		for _, a := range attempts {
			if a.Approved && a.Bank == b {
				seen += a.Amount
			}
		}
		balances := bk.srv.Ledger().Balances()
		moved := bk.initial - balances[bk.prefix]
		t.Logf("(d) %s: balance moved by %d; approved and not reversed at the bank %d; approvals seen by terminals %d (%d of them in the narrow window)",
			bk.name, moved, applied, seen, narrowAmt)
		if moved != applied {
			t.Errorf("(d) %s: balance moved by %d, but its approved-and-not-reversed purchases total %d", bk.name, moved, applied)
		}
		if moved != seen-narrowAmt {
			t.Errorf("(d) %s: balance moved by %d, but the terminals were told of %d in approvals (%d reversed in the narrow window)",
				bk.name, moved, seen, narrowAmt)
		}
	}
	t.Logf("(c) at the banks: %d purchases approved; reversed: %d journaled but undelivered, %d sent without a recorded outcome; %d approvals the terminal saw reversed in the journal-to-intent window; %d approvals seen then reversed outside it; %d undelivered approvals never reversed",
		atBankApproved, reversedUndelivered, reversedNeverAnswered, narrow, badReversed, notReversed)
	var inJournal int
	for _, r := range approvedJ {
		if recoveredSet[r.TxnID] {
			inJournal++
		}
	}
	t.Logf("(c) %d intents recovered at the restarts, %d of them approvals the journal holds", len(recoveredSet), inJournal)
}
