package server

import (
	"context"
	"testing"

	"github.com/railswitch/railswitch/simulators/pos"
)

// TestKioskPurchaseAndRefundMoveMoneyThroughTheSwitch: the demo kiosk (static keys, X9.19 MACs) buys a ticket
// with a PIN that the switch translates from the kiosk's PIK (a wrong PIN is declined by the bank), then
// refunds it: the switch finds the original by the RRN it gave, and the bank gives the money back.
func TestKioskPurchaseAndRefundMoveMoneyThroughTheSwitch(t *testing.T) {
	d := startTestDemo(t)
	k, err := pos.NewKiosk(pos.KioskConfig{TerminalID: "20000001", MerchantID: "898110000000004", MAK: demoKioskMAK,
		PIK: demoKioskPIK, Railway: pos.Railway{Bureau: "10", Station: "SHH", Business: "1", Window: "KIOSK07"}},
		d.Channels()[2].Addr(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx := context.Background()
	before := balance(d.BankA)
	do := func(req pos.KioskRequest, want string) {
		t.Helper()
		res, err := k.Do(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if res.RC != want || len(res.Problems) > 0 {
			t.Fatalf("%s answered %q (problems %v), want %q", req.Txn, res.RC, res.Problems, want)
		}
	}
	do(pos.KioskRequest{Txn: pos.KioskPurchase, Amount: 15350, Card: pos.Card{PAN: cupCard, PIN: "000000"}}, "55")
	do(pos.KioskRequest{Txn: pos.KioskPurchase, Amount: 15350, Card: pos.Card{PAN: cupCard, PIN: "123456"}}, "00")
	if got := balance(d.BankA); got != before-15350 {
		t.Fatalf("after the ticket: balance %d, want %d", got, before-15350)
	}
	do(pos.KioskRequest{Txn: pos.KioskRefund, Card: pos.Card{PAN: cupCard}}, "00")
	if got := balance(d.BankA); got != before {
		t.Fatalf("after the refund: balance %d, want %d", got, before)
	}
}
