package pos

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"testing"
	"time"

	"github.com/railswitch/railswitch/simulators/pos/postest"
)

// testKioskMAK is the X9.19 vector key of unionpay-pos.md section 5; the PIK is test vector B's TMK.
const testKioskMAK = "5775204D69616F6A756E404726444311"

func startKiosk(t *testing.T, statePath string) (*Kiosk, *postest.Host) {
	t.Helper()
	mak, _ := hex.DecodeString(testKioskMAK)
	h := &postest.Host{Spec: "kiosk", KioskMAK: mak, KioskPIK: tmkBytes(t), PIN: testPIN, Limit: 50000}
	addr := h.Start(t)
	k, err := NewKiosk(kioskConfig(), addr, statePath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k, h
}

func TestKioskTicketPurchaseAndRefund(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kiosk.json")
	k, h := startKiosk(t, path)
	ctx := context.Background()
	tests := []struct {
		name string
		req  KioskRequest
		rc   string
	}{
		{"purchase with PIN", KioskRequest{Txn: KioskPurchase, Amount: 15350, Card: Card{PAN: panCUP, PIN: testPIN}, Order: "E820000123"}, "00"},
		{"purchase keyed", KioskRequest{Txn: KioskPurchase, Amount: 5000, Card: Card{PAN: panVisa, Entry: Manual}}, "00"},
		{"wrong PIN", KioskRequest{Txn: KioskPurchase, Amount: 100, Card: Card{PAN: panCUP, PIN: "111111"}}, "55"},
		{"over the limit", KioskRequest{Txn: KioskPurchase, Amount: 50001, Card: Card{PAN: panCUP}}, "51"},
		{"bad MAC", KioskRequest{Txn: KioskPurchase, Amount: 100, Card: Card{PAN: panCUP}, Fault: BadMAC}, "A0"},
		{"refund of the first purchase", KioskRequest{Txn: KioskRefund, Card: Card{PAN: panCUP}, Orig: "000001"}, "00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := k.Do(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.RC != tc.rc || len(res.Problems) > 0 {
				t.Fatalf("rc %q want %q, problems %v", res.RC, tc.rc, res.Problems)
			}
		})
	}
	first := k.State().Sales[0]
	if first.Railway != "10SHH  1E820000123          KIOSK07 " || !first.Refunded {
		t.Errorf("first sale %+v", first)
	}
	refund := h.Last("0200")
	if refund.String(3) != "200000" || refund.String(37) != first.RRN || refund.String(57) != first.Railway ||
		refund.String(90)[:10] != "0200000001" || !refund.Has(128) || refund.Has(64) {
		t.Errorf("refund 3=%s 37=%s 90=%s 64 %v 128 %v", refund.String(3), refund.String(37), refund.String(90), refund.Has(64), refund.Has(128))
	}
	again, err := NewKiosk(kioskConfig(), "127.0.0.1:1", path)
	if err != nil {
		t.Fatal(err)
	}
	if st := again.State(); st.Trace != 6 || len(st.Sales) != 2 {
		t.Errorf("reloaded kiosk state: trace %d, %d sales", st.Trace, len(st.Sales))
	}
}

func kioskConfig() KioskConfig {
	return KioskConfig{TerminalID: "K0000001", MerchantID: "898110000000002", MAK: testKioskMAK, PIK: testTMK,
		Railway: Railway{Bureau: "10", Station: "SHH", Business: "1", Window: "KIOSK07"}, Timeout: 2 * time.Second}
}
