package pos

import (
	"context"
	"testing"

	"github.com/railswitch/railswitch/simulators/pos/postest"
)

// BenchmarkPurchaseRoundTrip measures one purchase with PIN and MAC, request built, sent over loopback TCP,
// answered by the test host and checked, without a state file: the terminal side's cost per transaction
// plus the test host's.
func BenchmarkPurchaseRoundTrip(b *testing.B) {
	h := &postest.Host{Spec: "cup-pos", TMK: tmkBytes(b), PIN: testPIN}
	term, err := New(testConfig("003"), h.Start(b))
	if err != nil {
		b.Fatal(err)
	}
	defer term.Close()
	ctx := context.Background()
	if res, err := term.Do(ctx, Request{Txn: SignOn}); err != nil || !res.Approved {
		b.Fatal(err)
	}
	req := Request{Txn: Purchase, Amount: 100, Card: Card{PAN: panCUP, PIN: testPIN}}
	b.ReportAllocs()
	for b.Loop() {
		res, err := term.Do(ctx, req)
		if err != nil || !res.Approved {
			b.Fatal(err)
		}
	}
}
