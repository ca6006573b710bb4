package flow

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/railswitch/railswitch/hsm"
)

// TestBankResponseMACVerifiesUnderTheCurrentOrThePreviousZAKOnly: after a key change a response MACed under
// the replaced ZAK still verifies (it answers a request sent before the change); after a second change that
// key is two back and no longer accepted.
func TestBankResponseMACVerifiesUnderTheCurrentOrThePreviousZAKOnly(t *testing.T) {
	lmk, _, err := hsm.GenerateLMK(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	module := hsm.NewSoftware(lmk, rand.Reader)
	var zaks [3]hsm.Key
	for i := range zaks {
		g, err := module.GenerateKey(context.Background(), hsm.GenerateKeyRequest{Name: "zak",
			Spec: hsm.Spec{Type: hsm.KeyZAK, Algorithm: hsm.AlgTDES, Length: 16}})
		if err != nil {
			t.Fatal(err)
		}
		zaks[i] = g.Key
	}
	f := New(Config{HSM: module})
	resp := message(t, "iso87-ascii", "0210", map[int]string{11: "000001", 39: "00", 41: "22003600"})
	acq := &Acquirer{Name: "bank-a", MAC: hsm.MACX919, MACBytes: 8}
	acq.SetZAK(&zaks[0])
	if err := SignForAcquirer(context.Background(), module, acq, resp); err != nil {
		t.Fatal(err)
	}
	packed, err := resp.Pack(nil) // as received: the MAC covers the bytes on the wire
	if err != nil {
		t.Fatal(err)
	}
	resp.Reset()
	if err := resp.Unpack(packed); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		install *hsm.Key
		want    bool
	}{
		{"under the ZAK in force", nil, true},
		{"after one key change: the previous ZAK", &zaks[1], true},
		{"after two key changes: two keys back", &zaks[2], false},
	}
	for _, tc := range tests {
		if tc.install != nil {
			acq.SetZAK(tc.install)
		}
		if got := f.verifyBank(context.Background(), acq, resp); got != tc.want {
			t.Fatalf("%s: verified %v, want %v", tc.name, got, tc.want)
		}
	}
	if acq.ZAK().KCV != zaks[2].KCV || acq.PreviousZAK().KCV != zaks[1].KCV {
		t.Fatal("the acquirer does not hold the last ZAK and the one it replaced")
	}
}
