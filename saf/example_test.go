package saf_test

import (
	"context"
	"fmt"
	"os"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/saf"
	"github.com/railswitch/railswitch/specs"
)

// A reversal queued for a bank that acknowledges it at the first send.
func Example() {
	dir, _ := os.MkdirTemp("", "saf-example")
	defer os.RemoveAll(dir)
	store, err := saf.OpenFileStore(dir, saf.FileStoreOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	key := make([]byte, 32) // the switch derives it from a data-encryption key in the security module
	sealer, _ := saf.NewAESGCM(key)
	acks := make(chan string, 1)
	bank := saf.SenderFunc(func(_ context.Context, acquirer, link string, msg []byte) (string, error) {
		acks <- fmt.Sprintf("%s got %s on %s", acquirer, msg[:4], link)
		return "00", nil
	})
	ctx := context.Background()
	q, err := saf.Open(ctx, saf.Config{Store: store, Sealer: sealer, Sender: bank})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer q.Close()

	spec, _ := specs.Get("iso87-ascii")
	rev := codec.NewMessage(spec)
	_ = rev.SetMTI("0420")
	_ = rev.SetString(11, "000123")
	_ = rev.SetString(39, "98") // reason: no answer in time
	msg, _ := rev.Pack(nil)
	if err := q.Enqueue(ctx, "bankA", "bankA/primary/0", "txn-1", msg); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-acks)
	// Output: bankA got 0420 on bankA/primary/0
}
