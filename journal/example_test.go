package journal_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/railswitch/railswitch/journal"
)

// A journal with one sink: Append returns once the record is durable, and the shipper delivers it to the sink
// with its idempotency key. The PAN is masked by the record type itself.
func Example() {
	dir, err := os.MkdirTemp("", "journal-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	j, err := journal.Open(journal.Options{Dir: dir, Fsync: true})
	if err != nil {
		panic(err)
	}
	defer j.Close()
	ledger := journal.NewMemorySink("ledger")
	shipper, err := journal.NewShipper(j, ledger, journal.ShipperOptions{})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- shipper.Run(ctx) }()

	seq, err := j.Append(&journal.Record{
		TxnID:        "BJ-20261127-000001",
		Kind:         journal.KindAuthorization,
		Amount:       1250,
		Currency:     "156",
		ResponseCode: "00",
		PAN:          journal.MaskPAN("4111111111111111"),
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("journaled as sequence", seq)

	for shipper.Status().LagRecords > 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	r := ledger.Records()[0]
	fmt.Println(r.IdempotencyKey(), r.PAN, r.Amount)
	// Output:
	// journaled as sequence 1
	// BJ-20261127-000001/authorization 411111******1111 1250
}
