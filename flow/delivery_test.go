package flow

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/journal"
	"github.com/railswitch/railswitch/specs"
)

// bankMessage unpacks a message queued for the bank (iso87-ascii).
func bankMessage(t testing.TB, msg []byte) *codec.Message {
	t.Helper()
	spec, _ := specs.Get("iso87-ascii")
	m := codec.NewMessage(spec)
	if err := m.Unpack(append([]byte(nil), msg...)); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestApprovalWhoseReplyCannotBeWrittenIsReversed: the terminal hangs up after the approval is journaled and
// before its reply is written. The approval stays the only journal record, its reversal (reason 06) is
// queued for the acquirer and link of the request, its intent ends (the queued reversal is its outcome), it
// leaves the batch totals, and the terminal's own reversal of it is then acknowledged without going to the
// bank a second time.
func TestApprovalWhoseReplyCannotBeWrittenIsReversed(t *testing.T) {
	p := newParts(t)
	n := newNode(t, p, NewMemoryDuplicates(0, nil, nil))
	tc := dialChannel(t, n.posCh, "cup-pos")
	n.journal.onAppend = func(*journal.Record) {
		_ = tc.c.Close()
		eventually(t, "the session closed", func() bool { return n.posCh.Stats().Open == 0 })
	}
	tc.send(n.posRequest("0200", "000000", "000701", "22", 1500, nil))
	eventually(t, "the reversal queued", func() bool { return len(n.queue.entries()) == 1 })
	n.journal.onAppend = nil
	eventually(t, "the intent ended", func() bool { return n.intents.pending() == 0 })

	q := n.queue.entries()[0]
	rev := bankMessage(t, q.Msg)
	if q.Acquirer != "bank-a" || q.Link != "bank-a/a1/0" || rev.MTI() != "0420" || rev.String(39) != ReasonUndelivered {
		t.Fatalf("queued %s %s %s reason %s, want bank-a bank-a/a1/0 0420 reason %s", q.Acquirer, q.Link,
			rev.MTI(), rev.String(39), ReasonUndelivered)
	}
	// The journal keeps the approval and nets it out with the switch's reversal of it, keyed once per txn.
	recs := n.journal.records()
	if len(recs) != 2 || recs[0].ResponseCode != RCApproved || recs[0].TxnID != q.TxnID ||
		recs[1].Kind != journal.KindReversal || recs[1].OriginalTxnID != q.TxnID || recs[1].Amount != 1500 ||
		recs[1].Terminal != posTID || recs[1].IdempotencyKey() != q.TxnID+"/reversal" {
		t.Fatalf("journal %+v, want the approval and the switch's reversal of it", recs)
	}
	if got := value(t, n.metrics.undelivered.WithLabelValues("pos")); got != 1 {
		t.Fatalf("undelivered approvals = %v, want 1", got)
	}
	txn, ok, _ := n.txns.Get(context.Background(), posTID, testBatch, "000701")
	if !ok || !txn.Reversed || txn.Counted {
		t.Fatalf("remembered %+v, want reversed and out of the totals", txn)
	}
	totals, _ := p.manager.Batches.Totals(context.Background(), posTID, testBatch)
	if totals.DebitCount != 0 || totals.DebitAmount != 0 {
		t.Fatalf("batch totals %+v, want the approval taken out", totals)
	}

	before := p.bank.requests("0420")
	again := dialChannel(t, n.posCh, "cup-pos")
	rev2 := n.posRequest("0400", "000000", "000701", "22", 1500, map[int]string{39: "98"})
	if rc := decode(t, "cup-pos", again.exchange(rev2)).String(39); rc != RCApproved {
		t.Fatalf("terminal reversal answered %q", rc)
	}
	if got := p.bank.requests("0420") - before; got != 0 {
		t.Fatalf("the terminal's reversal went to the bank %d times: the switch reversed it already", got)
	}
}

// TestApprovalEndsItsIntentOnlyAfterTheReplyIsWritten: the intent of an approved purchase is still recorded
// when the terminal has its reply in hand (a stop before the write reverses it at the next start), and it
// ends right after.
func TestApprovalEndsItsIntentOnlyAfterTheReplyIsWritten(t *testing.T) {
	p := newParts(t)
	n := newNode(t, p, nil)
	replyRead := make(chan struct{})
	var early atomic.Bool
	n.intents.onEnd = func(string) {
		select {
		case <-replyRead:
		case <-time.After(5 * time.Second):
			early.Store(true) // the reply was not out: the intent ended first
		}
	}
	tc := dialChannel(t, n.posCh, "cup-pos")
	tc.send(n.posRequest("0200", "000000", "000801", "22", 1500, nil))
	reply := tc.read()
	if n.intents.pending() != 1 {
		t.Fatalf("%d intents recorded when the reply arrived, want 1", n.intents.pending())
	}
	close(replyRead)
	if rc := decode(t, "cup-pos", reply).String(39); rc != RCApproved {
		t.Fatalf("purchase answered %q", rc)
	}
	eventually(t, "the intent ended", func() bool { return n.intents.pending() == 0 })
	if early.Load() {
		t.Fatal("the intent ended before the reply was written")
	}
	if len(n.queue.entries()) != 0 {
		t.Fatal("a delivered approval was reversed")
	}
}

// TestDeclineEndsItsIntentBeforeTheReply: a decline has nothing to reverse, so its intent ends as soon as it
// is journaled, as before.
func TestDeclineEndsItsIntentBeforeTheReply(t *testing.T) {
	p := newParts(t)
	n := newNode(t, p, nil)
	declined := "51"
	p.bank.code.Store(&declined)
	tc := dialChannel(t, n.posCh, "cup-pos")
	if rc := decode(t, "cup-pos", tc.exchange(n.posRequest("0200", "000000", "000901", "22", 1500, nil))).String(39); rc != "51" {
		t.Fatalf("answered %q", rc)
	}
	if n.intents.pending() != 0 {
		t.Fatal("a decline's intent outlived its reply")
	}
}

// TestTerminalReversalOfADeliveredApprovalReachesTheBank: the terminal's own reversal (0400, same trace)
// still finds its original and goes to the acquirer and link of it.
func TestTerminalReversalOfADeliveredApprovalReachesTheBank(t *testing.T) {
	p := newParts(t)
	n := newNode(t, p, nil)
	tc := dialChannel(t, n.posCh, "cup-pos")
	if rc := decode(t, "cup-pos", tc.exchange(n.posRequest("0200", "000000", "001001", "22", 1500, nil))).String(39); rc != RCApproved {
		t.Fatalf("purchase answered %q", rc)
	}
	rev := n.posRequest("0400", "000000", "001001", "22", 1500, map[int]string{39: "98"})
	if rc := decode(t, "cup-pos", tc.exchange(rev)).String(39); rc != RCApproved {
		t.Fatalf("reversal answered %q", rc)
	}
	if got := p.bank.requests("0420"); got != 1 {
		t.Fatalf("the bank saw %d reversals, want 1", got)
	}
	recs := n.journal.records()
	if len(recs) != 2 || recs[1].Kind != journal.KindReversal || recs[1].OriginalTxnID != recs[0].TxnID {
		t.Fatalf("journal %+v, want the purchase and its reversal", recs)
	}
}

// verifyPOSReplyMAC checks the UnionPay MAC of a cup-pos reply frame under the test terminal's MAK.
func verifyPOSReplyMAC(t testing.TB, h *harness, frame []byte) {
	t.Helper()
	pre := 2 + len(posTPDU) + len(posHeader)
	if err := h.module.VerifyMAC(context.Background(), h.mak, hsm.MACCupECB, frame[pre:len(frame)-8], frame[len(frame)-8:]); err != nil {
		t.Fatalf("reply MAC: %v", err)
	}
}
