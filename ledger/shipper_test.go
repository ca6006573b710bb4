package ledger

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/railswitch/railswitch/internal/faultproxy"
	"github.com/railswitch/railswitch/journal"
)

// lostAck wraps a sink: every third successful Deliver reports an error anyway, as a delivery whose answer was
// lost (a timeout after the commit), so the shipper sends the batch again.
type lostAck struct {
	journal.Sink
	calls atomic.Int64
	lost  atomic.Int64
}

func (l *lostAck) Deliver(ctx context.Context, recs []journal.Record) error {
	if err := l.Sink.Deliver(ctx, recs); err != nil {
		return err
	}
	if l.calls.Add(1)%3 == 0 {
		l.lost.Add(1)
		return errors.New("test: answer lost after the batch was stored")
	}
	return nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A real journal and shipper feeding each sink: records appended while the sink's server is cut off wait in
// the journal, the shipper fails and retries, and after the restore every record is stored exactly once, even
// though some batches were delivered twice (lost answers).
func TestShipperStoresEachRecordOnceAfterSinkOutage(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			requireService(t, b.name, b.upstream)
			p := faultproxy.Start(t, b.upstream)
			sink := &lostAck{Sink: b.open(t, p.Addr())}
			j, err := journal.Open(journal.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			sh, err := journal.NewShipper(j, sink, journal.ShipperOptions{
				BatchSize: 16, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
				DeliverTimeout: 3 * time.Second, Interval: 50 * time.Millisecond, RetryHorizon: testHorizon,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- sh.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; !errors.Is(err, context.Canceled) {
					t.Errorf("shipper ended with %v", err)
				}
			}()
			appendRecs := func(from, n int) {
				for _, r := range testRecords(from, n) {
					if _, err := j.Append(&r); err != nil {
						t.Fatal(err)
					}
				}
			}
			appendRecs(0, 100)
			waitFor(t, "the first 100 records shipped", 60*time.Second, func() bool { return sh.Status().LagRecords == 0 })
			if got := b.count(t); got != 100 {
				t.Fatalf("%d entries after the first 100 records, want 100", got)
			}

			p.Cut()
			failures := sh.Status().Failures
			appendRecs(100, 100)
			waitFor(t, "failed deliveries while cut", 60*time.Second, func() bool { return sh.Status().Failures >= failures+2 })
			if lag := sh.Status().LagRecords; lag == 0 {
				t.Fatal("records shipped while the sink was cut off")
			}
			p.Restore()
			waitFor(t, "all 200 records shipped after the restore", 90*time.Second, func() bool { return sh.Status().LagRecords == 0 })
			if got := b.count(t); got != 200 {
				t.Fatalf("%d entries, want 200 (one per record)", got)
			}
			if sink.lost.Load() == 0 {
				t.Fatal("no batch was redelivered: the test did not exercise duplicates")
			}
			t.Logf("%d batches redelivered after a lost answer; %d failures", sink.lost.Load(), sh.Status().Failures)
		})
	}
}
