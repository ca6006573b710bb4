package ledger

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/railswitch/railswitch/internal/faultproxy"
	"github.com/railswitch/railswitch/journal"
)

func deliver(t *testing.T, s journal.Sink, recs []journal.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Deliver(ctx, recs); err != nil {
		t.Fatalf("deliver %d records: %v", len(recs), err)
	}
}

// Every sink stores a batch, and a redelivered batch, a batch overlapping an earlier one and a batch holding the
// same key twice add nothing: entries = unique keys. The stored record keeps its fields and a masked PAN.
func TestSinkAppliesEachIdempotencyKeyOnce(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := b.open(t, b.upstream)
			steps := []struct {
				what string
				recs []journal.Record
				want int
			}{
				{"first batch 0-99", testRecords(0, 100), 100},
				{"same batch again", testRecords(0, 100), 100},
				{"overlapping batch 50-149", testRecords(50, 100), 150},
				{"batch with a key twice", append(testRecords(149, 2), testRecords(150, 2)...), 152},
				{"empty batch", nil, 152},
			}
			for _, st := range steps {
				deliver(t, s, st.recs)
				if got := b.count(t); got != st.want {
					t.Fatalf("after %s: %d entries, want %d", st.what, got, st.want)
				}
			}
			want := testRecords(19, 1)[0] // a reversal: original_txn_id set, no auth code, no answer
			got, ok := b.stored(t, want.IdempotencyKey())
			if !ok {
				t.Fatalf("%s not stored", want.IdempotencyKey())
			}
			if got.TxnID != want.TxnID || got.Kind != journal.KindReversal || got.OriginalTxnID != "T-000018" ||
				got.Amount != want.Amount || got.Bureau != want.Bureau || got.AuthCode != "" || !got.AnsweredAt.IsZero() ||
				!got.ReceivedAt.Equal(want.ReceivedAt) || got.PAN.String() != "411111******1111" {
				t.Fatalf("stored %+v\nwant %+v", got, want)
			}
		})
	}
}

// A sink given a cancelled context returns an error wrapping context.Canceled and stores nothing.
func TestSinkDeliverWithCancelledContextFails(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := b.open(t, b.upstream)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err := s.Deliver(ctx, testRecords(0, 10))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("deliver with cancelled ctx: %v, want context.Canceled", err)
			}
			if got := b.count(t); got != 0 {
				t.Fatalf("%d entries stored by a cancelled delivery", got)
			}
		})
	}
}

// A sink whose server is cut off returns errors (within the context's deadline), and after the server is back
// delivers, with the records of the failed batches stored once.
func TestSinkFailsWhileServerCutAndDeliversAfterRestore(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			requireService(t, b.name, b.upstream)
			p := faultproxy.Start(t, b.upstream)
			s := b.open(t, p.Addr())
			deliver(t, s, testRecords(0, 20))

			p.Cut()
			for i := range 3 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				start := time.Now()
				err := s.Deliver(ctx, testRecords(10, 20))
				cancel()
				if err == nil {
					t.Fatalf("delivery %d while cut succeeded", i)
				}
				if el := time.Since(start); el > 10*time.Second {
					t.Fatalf("delivery %d while cut took %v, beyond its 5s deadline", i, el)
				}
			}
			p.Restore()
			deadline := time.Now().Add(60 * time.Second)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := s.Deliver(ctx, testRecords(10, 20))
				cancel()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no delivery within 60s of the restore: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			if got := b.count(t); got != 30 {
				t.Fatalf("%d entries after restore, want 30", got)
			}
		})
	}
}

// A record with bytes a server may refuse (NUL, invalid UTF-8, CR LF) is stored, once, rather than failing its
// batch on every retry and stopping the sink.
func TestSinkStoresRecordWithHostileBytesOnce(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := b.open(t, b.upstream)
			recs := testRecords(0, 3)
			recs[1].TxnID = "T-\x00\xff\r\nX"
			recs[1].Merchant = "M\x00\xfe"
			recs[2].Station = "北京南"
			deliver(t, s, recs)
			deliver(t, s, recs)
			if got := b.count(t); got != 3 {
				t.Fatalf("%d entries, want 3", got)
			}
		})
	}
}
