package server

import (
	"testing"
	"time"
)

// TestRetransmittedPurchaseIsAnsweredOnceThroughTheDemo: the demo checks retransmissions (duplicates:); the
// same purchase sent twice gets the same approval and the bank debits the card once.
func TestRetransmittedPurchaseIsAnsweredOnceThroughTheDemo(t *testing.T) {
	d := startTestDemo(t)
	tt := dialTerminal(t, d.Channels()[0].Addr(), "22003600", "104512541110001")
	tt.signOn()
	before := balance(d.BankA)
	m := tt.purchaseMessage(cupCard, 100)
	first := tt.exchange(m, true)
	waitFor(t, "intent ended", 5*time.Second, func() bool { return d.pendingIntents(t) == 0 })
	again := tt.exchange(m, true)
	if first.String(39) != "00" || again.String(37) != first.String(37) || again.String(38) != first.String(38) {
		t.Fatalf("first %s/%s, again %s/%s", first.String(39), first.String(37), again.String(39), again.String(37))
	}
	if got := balance(d.BankA); got != before-100 {
		t.Fatalf("balance %d, want %d", got, before-100)
	}
}
