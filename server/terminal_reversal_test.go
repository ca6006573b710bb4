package server

import (
	"runtime"
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/simulators/bank"
)

// reversalOf lays out the terminal's 0400 of a purchase it sent (same trace, batch, amount; reason 98).
func (tt *testTerminal) reversalOf(orig *codec.Message) *codec.Message {
	m := codec.NewMessage(tt.spec)
	_ = m.SetMTI("0400")
	_ = m.SetTPDU([]byte{0x60, 0x00, 0x03, 0x00, 0x00})
	_ = m.SetHeader([]byte{0x60, 0x31, 0x00, 0x31, 0x07, 0x30})
	for _, n := range []int{2, 3, 4, 11, 22, 25, 41, 42, 49, 60} {
		_ = m.CopyField(n, orig)
	}
	_ = m.SetString(39, "98")
	return m
}

// TestTerminalReversalOfUnknownOriginalIsAcknowledgedLocally: a 0400 whose original the switch never approved
// (nothing to undo) gets 0410 with 00 and no bank sees it.
func TestTerminalReversalOfUnknownOriginalIsAcknowledgedLocally(t *testing.T) {
	d := startTestDemo(t)
	tt := dialTerminal(t, d.Channels()[0].Addr(), "22003600", "104512541110001")
	tt.signOn()
	before := balance(d.BankA)
	_ = d.BankA.SetFaults(bank.Faults{NoReply: 1})          // a bank asked would leave the terminal waiting
	defer func() { _ = d.BankA.SetFaults(bank.Faults{}) }() // for the sign-off at the end
	rep := tt.exchange(tt.reversalOf(tt.purchaseMessage(cupCard, 900)), true)
	if rep.MTI() != "0410" || rep.String(39) != "00" {
		t.Fatalf("reversal of an unknown original answered %s %q, want 0410 00", rep.MTI(), rep.String(39))
	}
	if balance(d.BankA) != before {
		t.Fatal("the bank's balance changed")
	}
}

// TestTerminalReversalWaitsForItsOriginalAtTheBank: a terminal that gave up on a slow purchase sends its
// reversal (on a new connection) while the purchase is still at the bank; the switch answers the reversal only
// once the purchase's answer is in, and reverses the approval at the bank instead of acknowledging an unknown
// original.
func TestTerminalReversalWaitsForItsOriginalAtTheBank(t *testing.T) {
	d := startTestDemo(t)
	addr := d.Channels()[0].Addr()
	tt := dialTerminal(t, addr, "22003600", "104512541110001")
	tt.signOn()
	again := dialTerminal(t, addr, "22003600", "104512541110001")
	again.pik, again.mak, again.batch = tt.pik, tt.mak, tt.batch
	before := balance(d.BankA)
	if err := d.BankA.SetFaults(bank.Faults{LatencyMS: 500}); err != nil {
		t.Fatal(err)
	}
	purchase := tt.purchaseMessage(cupCard, 900)
	tt.fatalf = func(format string, args ...any) { t.Errorf(format, args...); runtime.Goexit() }
	answered := make(chan string, 1)
	go func() { answered <- tt.exchange(purchase, true).String(39) }()
	time.Sleep(150 * time.Millisecond) // the purchase is at the bank
	rep := again.exchange(again.reversalOf(purchase), true)
	if rc := rep.String(39); rc != "00" {
		t.Fatalf("reversal answered %q", rc)
	}
	if rc := <-answered; rc != "00" {
		t.Fatalf("the purchase answered %q", rc)
	}
	if after := balance(d.BankA); after != before {
		t.Fatalf("balance %d after the purchase and its reversal, want %d", after, before)
	}
}
