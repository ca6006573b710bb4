package payshield_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"

	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/hsm/payshield"
)

// A client against the simulator: generate a MAC key, MAC a message and verify the MAC.
func ExampleClient() {
	lmk, _, _ := hsm.GenerateLMK(rand.Reader)
	srv := &payshield.Server{Module: hsm.NewSoftware(lmk, nil)}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	defer srv.Close()

	cl, err := payshield.NewClient(payshield.Config{Addr: ln.Addr().String()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	ctx := context.Background()
	g, err := cl.GenerateKey(ctx, hsm.GenerateKeyRequest{Name: "acq/b/zak", Spec: hsm.Spec{Type: hsm.KeyZAK, Algorithm: hsm.AlgTDES, Length: 16}})
	if err != nil {
		fmt.Println(err)
		return
	}
	msg := []byte("0200 to the bank")
	mac, _ := cl.GenerateMAC(ctx, g.Key, hsm.MACX919, msg)
	fmt.Println(len(mac), cl.VerifyMAC(ctx, g.Key, hsm.MACX919, msg, mac))
	// Output: 8 <nil>
}
