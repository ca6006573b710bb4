package hsm_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/railswitch/railswitch/hsm"
)

// The software module enforces key usage: a PIN key cannot compute a MAC.
func ExampleSoftware() {
	lmk, _, _ := hsm.GenerateLMK(rand.Reader)
	sw := hsm.NewSoftware(lmk, nil)
	ctx := context.Background()
	zpk, _ := sw.GenerateKey(ctx, hsm.GenerateKeyRequest{Name: "acq/ccb/zpk", Spec: hsm.Spec{Type: hsm.KeyZPK, Algorithm: hsm.AlgTDES, Length: 16}})
	_, err := sw.GenerateMAC(ctx, zpk.Key, hsm.MACX919, []byte("data"))
	fmt.Println(errors.Is(err, hsm.ErrKeyUsage))
	fmt.Println(err)
	// Output:
	// true
	// hsm: key "acq/ccb/zpk" of type ZPK cannot be used for MAC
}
