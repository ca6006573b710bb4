package flow

import (
	"bytes"
	"context"
	"testing"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"

	"github.com/railswitch/railswitch/journal"
)

func TestQueuedAdviceIsTheUnionPayAdvicesButNotTheRefund(t *testing.T) {
	tests := []struct {
		name, spec, mti string
		fields          map[int]string
		want            bool
	}{
		{"completion advice", "cup-pos", "0220", map[int]string{3: "000000", 60: "24000001000"}, true},
		{"offline sale", "cup-pos", "0220", map[int]string{3: "000000", 60: "30000001000"}, true},
		{"adjustment", "cup-pos", "0220", map[int]string{3: "000000", 60: "32000001000"}, true},
		{"tip", "cup-pos", "0220", map[int]string{3: "000000", 60: "34000001000"}, true},
		{"offline chip upload", "cup-pos", "0220", map[int]string{3: "000000", 60: "36000001000"}, true},
		{"refund: online", "cup-pos", "0220", map[int]string{3: "200000", 60: "25000001000"}, false},
		{"purchase", "cup-pos", "0200", map[int]string{3: "000000", 60: "22000001000"}, false},
		{"kiosk 0220 without 60", "kiosk", "0220", map[int]string{3: "000000"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := QueuedAdvice(message(t, tc.spec, tc.mti, tc.fields)); got != tc.want {
				t.Fatalf("queued %t, want %t", got, tc.want)
			}
		})
	}
}

// TestAdviceIsAnsweredAtOnceAndQueuedForTheAcquirer: a completion advice (0220, 60.1 24) is journaled,
// answered 0230 approved with the terminal's MAC while the bank is not answering at all, and queued for the
// acquirer as a 0220 in its spec; nothing is sent online. Its retransmission gets the same reply and queues
// nothing more.
func TestAdviceIsAnsweredAtOnceAndQueuedForTheAcquirer(t *testing.T) {
	p := newParts(t)
	n := newNode(t, p, NewMemoryDuplicates(0, nil, nil))
	hold := make(chan struct{}) // the bank answers nothing online during the test
	p.bank.hold.Store(&hold)
	defer close(hold)
	tc := dialChannel(t, n.posCh, "cup-pos")
	advice := n.posRequest("0220", "000000", "001101", "24", 4200, map[int]string{25: "06", 61: "0000010011001127"})
	reply := tc.exchange(advice)
	rsp := decode(t, "cup-pos", reply)
	if rsp.MTI() != "0230" || rsp.String(39) != RCApproved {
		t.Fatalf("answered %s %s, want 0230 00", rsp.MTI(), rsp.String(39))
	}
	verifyPOSReplyMAC(t, n.harness, reply)
	eventually(t, "the delivery settled", func() bool { return n.intents.pending() == 0 })

	q := n.queue.entries()
	if len(q) != 1 {
		t.Fatalf("%d messages queued, want the advice", len(q))
	}
	adv := bankMessage(t, q[0].Msg)
	if q[0].Acquirer != "bank-a" || adv.MTI() != "0220" || adv.String(4) != "000000004200" || adv.String(2) != testPAN {
		t.Fatalf("queued %s %s amount %s", q[0].Acquirer, adv.MTI(), adv.String(4))
	}
	if rsp.String(37) != adv.String(37) || adv.String(37) == "" {
		t.Fatalf("reply RRN %q, advice RRN %q: want the same", rsp.String(37), adv.String(37))
	}
	recs := n.journal.records()
	if len(recs) != 1 || recs[0].ResponseCode != RCApproved || recs[0].Kind != journal.KindCompletion || recs[0].TxnID != q[0].TxnID {
		t.Fatalf("journal %+v, want the approved completion advice", recs)
	}
	if p.bank.requests("0220") != 0 {
		t.Fatal("the advice went online")
	}
	if again := dialChannel(t, n.posCh, "cup-pos").exchange(advice); !bytes.Equal(again, reply) {
		t.Fatal("retransmitted advice not answered with the first reply")
	}
	if len(n.queue.entries()) != 1 {
		t.Fatal("a retransmitted advice was queued again")
	}
}

// TestUndeliveredAdviceReplyQueuesItsReversalBehindTheAdvice: when the 0230 cannot be written, the advice's
// reversal is queued after the advice (the queue is FIFO per acquirer), so the acquirer nets to nothing and
// the terminal's repeat of the advice is handled as new.
func TestUndeliveredAdviceReplyQueuesItsReversalBehindTheAdvice(t *testing.T) {
	p := newParts(t)
	n := newNode(t, p, NewMemoryDuplicates(0, nil, nil))
	tc := dialChannel(t, n.posCh, "cup-pos")
	n.journal.onAppend = func(*journal.Record) {
		_ = tc.c.Close()
		eventually(t, "the session closed", func() bool { return n.posCh.Stats().Open == 0 })
	}
	advice := n.posRequest("0220", "000000", "001201", "30", 900, nil)
	tc.send(advice)
	eventually(t, "advice and reversal queued", func() bool { return len(n.queue.entries()) == 2 })
	n.journal.onAppend = nil
	q := n.queue.entries()
	first, second := bankMessage(t, q[0].Msg), bankMessage(t, q[1].Msg)
	if first.MTI() != "0220" || second.MTI() != "0420" || second.String(39) != ReasonUndelivered ||
		q[0].TxnID != q[1].TxnID || second.String(11) != first.String(11) {
		t.Fatalf("queued %s then %s (reason %s), want the advice then its reversal", first.MTI(), second.MTI(), second.String(39))
	}
	eventually(t, "the intent ended", func() bool { return n.intents.pending() == 0 })
	rsp := decode(t, "cup-pos", dialChannel(t, n.posCh, "cup-pos").exchange(advice))
	if rsp.String(39) != RCApproved || len(n.queue.entries()) != 3 {
		t.Fatalf("repeat answered %s with %d queued, want a new advice", rsp.String(39), len(n.queue.entries()))
	}
}

// TestRepeatedAdviceIsSignedAgainOverItsNewMTI follows the switch's store-and-forward sender (server
// sendStored): the queue turns a queued 0220 into 0221 for a repeat; unpacked and signed again with
// SignForAcquirer, the repeat carries a MAC over its own bytes that the acquirer verifies, and the MAC of
// the first send no longer fits it.
func TestRepeatedAdviceIsSignedAgainOverItsNewMTI(t *testing.T) {
	p := newParts(t)
	ctx := context.Background()
	g, err := p.module.GenerateKey(ctx, hsm.GenerateKeyRequest{Name: "zak",
		Spec: hsm.Spec{Type: hsm.KeyZAK, Algorithm: hsm.AlgTDES, Length: 16}})
	if err != nil {
		t.Fatal(err)
	}
	acq := p.acquirer()
	acq.SetZAK(&g.Key)
	advice := message(t, "iso87-ascii", "0220", map[int]string{2: testPAN, 3: "000000", 4: "000000004200",
		11: "000042", 41: posTID})
	if err := SignForAcquirer(ctx, p.module, acq, advice); err != nil {
		t.Fatal(err)
	}
	queued, _ := advice.Pack(nil)
	firstMAC, _ := advice.Value(64)
	firstMAC = append([]byte(nil), firstMAC...)

	repeat := append([]byte(nil), queued...)
	copy(repeat, "0221") // what the queue does to a repeat (ASCII MTI)
	m := codec.NewMessage(acq.Spec)
	if err := m.Unpack(repeat); err != nil {
		t.Fatal(err)
	}
	if err := SignForAcquirer(ctx, p.module, acq, m); err != nil {
		t.Fatal(err)
	}
	wire, _ := m.Pack(nil)
	got := codec.NewMessage(acq.Spec)
	if err := got.Unpack(wire); err != nil {
		t.Fatal(err)
	}
	n := New(Config{HSM: p.module})
	if got.MTI() != "0221" || !n.verifyBank(ctx, acq, got) {
		t.Fatalf("repeat %s: MAC does not verify", got.MTI())
	}
	_ = got.Set(64, firstMAC)
	if n.verifyBank(ctx, acq, got) {
		t.Fatal("the first send's MAC verifies over the 0221: the MTI is not covered")
	}
}
