package payshield

import (
	"context"
	"testing"
)

// FuzzServerHandle feeds arbitrary commands to the simulator: it must answer every one with an error code,
// never panic.
func FuzzServerHandle(f *testing.F) {
	fx := newFixture(f, Config{}, 0, nil)
	srv := &Server{Module: fx.sw}
	if err := srv.init(); err != nil {
		f.Fatal(err)
	}
	k := fx.tak.Cryptogram
	for _, seed := range []string{
		"NC", "B20003abc", "BU01" + "1" + k, "M6001110003" + k + "0004data", "M8001110003" + k + "0004data0011223344556677",
		"M00100003" + k + "00000000000000000000", "A00001U", "A61001" + fx.zmk.Cryptogram + "X0123456789ABCDEFFEDCBA9876543210U",
		"CA" + fx.tpk.Cryptogram + fx.zpkB.Cryptogram + "121B9C1845EB993A7A0101401234567890",
		"G0" + fx.bdk.Cryptogram + fx.zpkB.Cryptogram + "A05FFFF9876543210E000011B9C1845EB993A7A0101401234567890",
		"CCR0105", "M2", "ZZ",
	} {
		f.Add(seed[:2], []byte(seed[2:]))
	}
	f.Fuzz(func(t *testing.T, cmd string, body []byte) {
		_, code := srv.handle(context.Background(), cmd, body)
		if len(code) != 2 {
			t.Fatalf("error code %q", code)
		}
	})
}
