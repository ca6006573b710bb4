package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/railswitch/railswitch/saf"

	"github.com/railswitch/railswitch/simulators/bank"
	"go.uber.org/zap/zaptest"
)

// copyDir copies the files of src into dst (a crash leaves on disk what was durable at that moment).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if de.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (s *Switch) pendingIntents(t *testing.T) int {
	t.Helper()
	left, err := s.intents.store.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(left)
}

// TestRequestCutOffByACrashIsReversedAtTheNextStart: a purchase is at a bank that debited the card but has not
// answered (and the switch's timeout is far off) when the node "crashes": its files are put back as they were
// at that moment, with the intent durable and neither an outcome nor a reversal. At the next start the intent's reversal is queued and the bank gives the money
// back; requests with an outcome leave no intent behind.
func TestRequestCutOffByACrashIsReversedAtTheNextStart(t *testing.T) {
	log := zaptest.NewLogger(t)
	dir := t.TempDir()
	d, err := StartDemo(context.Background(), dir, DemoAddrs{Timeout: 20 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.BankA.Close(); _ = d.BankB.Close() }()
	waitFor(t, "bank links", 5*time.Second, func() bool { ok, _ := d.Ready(); return ok })
	before := balance(d.BankA)
	tt := dialTerminal(t, d.Channels()[0].Addr(), "22003600", "104512541110001")
	tt.signOn()
	if rc := tt.purchase(cupCard, 100).String(39); rc != "00" {
		t.Fatalf("purchase answered %q", rc)
	}
	// The intent ends once the reply is handed to the terminal's socket, which may be just after it arrives.
	waitFor(t, "the answered purchase's intent to end", 5*time.Second, func() bool { return d.pendingIntents(t) == 0 })
	before -= 100

	_ = d.BankA.SetFaults(bank.Faults{NoReply: 1})
	answered := make(chan struct{})
	tt.fatalf = func(string, ...any) { close(answered); runtime.Goexit() } // the crash cuts the connection
	go func() { tt.purchase(cupCard, 2500); t.Error("the purchase was answered") }()
	waitFor(t, "the purchase at the bank", 5*time.Second, func() bool {
		return balance(d.BankA) == before-2500 && d.pendingIntents(t) == 1
	})
	crash := t.TempDir()
	for _, sub := range []string{"reversals", "journal"} {
		copyDir(t, filepath.Join(dir, sub), filepath.Join(crash, sub))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = d.Switch.Stop(ctx) // the request is cut off; the files are then put back as they were at the crash
	<-answered
	for _, sub := range []string{"reversals", "journal"} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			t.Fatal(err)
		}
		copyDir(t, filepath.Join(crash, sub), filepath.Join(dir, sub))
	}
	_ = d.BankA.SetFaults(bank.Faults{})

	sw := startFromDir(t, dir, log)
	waitFor(t, "the recovered reversal to be acknowledged", 15*time.Second, func() bool {
		return balance(d.BankA) == before && len(sw.queue.Pending()) == 0
	})
	if n := sw.pendingIntents(t); n != 0 {
		t.Fatalf("%d intents left after recovery", n)
	}
}

// openTestIntentLog opens an intent log in dir and closes it when the test ends.
func openTestIntentLog(t *testing.T, dir string) *intentLog {
	t.Helper()
	l, err := openIntentLog(dir, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func testIntent(i int) *saf.Entry {
	q := time.Date(2026, 11, 27, 9, 0, 0, i, time.UTC)
	return &saf.Entry{ID: fmt.Sprintf("node-1-%d", i), Acquirer: "bank-a", Link: "bank-a/main/1",
		TxnID: fmt.Sprintf("T%04d", i), Kind: saf.KindReversal, Queued: q, Since: q, Sealed: []byte{1, 2, byte(i)}}
}

// loadIDs returns the ids of the open intents of l, in order.
func loadIDs(t *testing.T, l *intentLog) []string {
	t.Helper()
	es, err := l.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	return ids
}

func TestIntentLogKeepsOpenIntentsInOrderAcrossACrashAndAReopen(t *testing.T) {
	cases := []struct {
		name  string
		begin []int
		end   []int
		want  []string
	}{
		{"nothing begun", nil, nil, []string{}},
		{"all open", []int{3, 1, 2}, nil, []string{"node-1-3", "node-1-1", "node-1-2"}},
		{"some ended", []int{1, 2, 3, 4}, []int{2, 4}, []string{"node-1-1", "node-1-3"}},
		{"all ended, and an unknown end", []int{1, 2}, []int{1, 2, 9}, []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openTestIntentLog(t, dir)
			ctx := context.Background()
			for _, i := range tc.begin {
				if err := l.Put(ctx, testIntent(i)); err != nil {
					t.Fatal(err)
				}
			}
			for _, i := range tc.end {
				if err := l.Remove(ctx, "bank-a", fmt.Sprintf("node-1-%d", i)); err != nil {
					t.Fatal(err)
				}
			}
			if got := loadIDs(t, l); !slices.Equal(got, tc.want) {
				t.Fatalf("open intents %v, want %v", got, tc.want)
			}
			// A crash: the files as they are now, without Close.
			crash := t.TempDir()
			copyDir(t, dir, crash)
			for name, d := range map[string]string{"after a crash": crash, "after Close": dir} {
				if name == "after Close" {
					if err := l.Close(); err != nil {
						t.Fatal(err)
					}
				}
				re := openTestIntentLog(t, d)
				if got := loadIDs(t, re); !slices.Equal(got, tc.want) {
					t.Fatalf("%s: open intents %v, want %v", name, got, tc.want)
				}
				es, _ := re.Load(ctx)
				for _, e := range es {
					want := testIntent(0)
					if e.Acquirer != want.Acquirer || e.Link != want.Link || e.Kind != want.Kind || len(e.Sealed) != 3 ||
						e.Queued.IsZero() || !e.Since.Equal(e.Queued) || e.TxnID == "" {
						t.Fatalf("%s: intent read back as %+v", name, e)
					}
				}
			}
		})
	}
}

func TestIntentLogConcurrentBeginsShareWritesAndEveryOneIsDurable(t *testing.T) {
	dir := t.TempDir()
	l := openTestIntentLog(t, dir)
	var batches atomic.Int64
	const workers, each = 32, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := testIntent(w*each + i)
				if err := l.Put(context.Background(), e); err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					if err := l.Remove(context.Background(), e.Acquirer, e.ID); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	batches.Store(int64(l.batches))
	crash := t.TempDir()
	copyDir(t, dir, crash)
	if n := len(loadIDs(t, openTestIntentLog(t, crash))); n != workers*each/2 {
		t.Fatalf("%d open intents after the crash, want %d", n, workers*each/2)
	}
	if b := batches.Load(); b >= workers*each*3/2 {
		t.Fatalf("%d writes for %d records: concurrent records were not grouped", b, workers*each*3/2)
	}
}

func TestIntentLogEndIsFsyncedLazily(t *testing.T) {
	l := openTestIntentLog(t, t.TempDir())
	ctx := context.Background()
	if err := l.Put(ctx, testIntent(1)); err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(ctx, "bank-a", "node-1-1"); err != nil {
		t.Fatal(err)
	}
	dirty := func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.dirty }
	waitFor(t, "the lazy fsync of the end", 5*time.Second, func() bool { return !dirty() })
}

func TestIntentLogDiscardsATornTailAndKeepsItsBytes(t *testing.T) {
	cases := []struct {
		name string
		tail []byte
	}{
		{"half a header", []byte{0, 0}},
		{"a length beyond the file", []byte{0, 0, 0, 200, 1, 2, 3, 4, 'B'}},
		{"a length beyond the maximum", []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}},
		{"a bad checksum", []byte{0, 0, 0, 2, 0, 0, 0, 0, 'E', 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openTestIntentLog(t, dir)
			for i := range 3 {
				if err := l.Put(context.Background(), testIntent(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(filepath.Join(dir, intentLogName), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tc.tail)
			f.Close()
			re := openTestIntentLog(t, dir)
			if got := loadIDs(t, re); len(got) != 3 {
				t.Fatalf("open intents %v, want the 3 before the torn tail", got)
			}
			kept, _ := filepath.Glob(filepath.Join(dir, intentLogName+".discarded-*"))
			if len(kept) != 1 {
				t.Fatalf("%d files keep the discarded tail, want 1", len(kept))
			}
			if b, _ := os.ReadFile(kept[0]); !slices.Equal(b, tc.tail) {
				t.Fatalf("kept %x, want %x", b, tc.tail)
			}
			if err := re.Put(context.Background(), testIntent(7)); err != nil { // appends after the cut
				t.Fatal(err)
			}
			if got := loadIDs(t, openTestIntentLog(t, copyOf(t, dir))); len(got) != 4 {
				t.Fatalf("after a new begin: open intents %v, want 4", got)
			}
		})
	}
}

// copyOf returns a copy of dir, as a crash would leave it.
func copyOf(t *testing.T, dir string) string {
	t.Helper()
	c := t.TempDir()
	copyDir(t, dir, c)
	return c
}

func TestIntentLogCompactsOnceMostIntentsEnded(t *testing.T) {
	dir := t.TempDir()
	l := openTestIntentLog(t, dir)
	l.compactAfter = 16
	ctx := context.Background()
	if err := l.Put(ctx, testIntent(1000)); err != nil { // stays open across the compactions
		t.Fatal(err)
	}
	for i := range 100 {
		e := testIntent(i)
		if err := l.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
		if err := l.Remove(ctx, e.Acquirer, e.ID); err != nil {
			t.Fatal(err)
		}
	}
	l.mu.Lock()
	records := l.records
	l.mu.Unlock()
	if records >= 16 {
		t.Fatalf("the log holds %d records, want fewer than the compaction threshold 16", records)
	}
	if got := loadIDs(t, openTestIntentLog(t, copyOf(t, dir))); !slices.Equal(got, []string{"node-1-1000"}) {
		t.Fatalf("after compactions and a crash: open intents %v", got)
	}
}

func TestIntentLogTakesOverTheIntentsOfTheFileStoreFormat(t *testing.T) {
	dir := t.TempDir()
	st, err := saf.OpenFileStore(dir, saf.FileStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := st.Put(context.Background(), testIntent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	l := openTestIntentLog(t, dir)
	if got := loadIDs(t, l); len(got) != 2 {
		t.Fatalf("open intents %v, want the 2 of the old store", got)
	}
	if old, _ := filepath.Glob(filepath.Join(dir, "*.saf")); len(old) != 0 {
		t.Fatalf("old store files left: %v", old)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := loadIDs(t, openTestIntentLog(t, dir)); len(got) != 2 {
		t.Fatalf("after a reopen: open intents %v, want 2", got)
	}
}

func TestIntentLogRefusesRecordsAfterCloseAndIntentsWithoutAMessage(t *testing.T) {
	l := openTestIntentLog(t, t.TempDir())
	e := testIntent(1)
	e.Sealed = nil
	if err := l.Put(context.Background(), e); err == nil {
		t.Fatal("an intent without a message was accepted")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Put(context.Background(), testIntent(2)); !errors.Is(err, errIntentLogClosed) {
		t.Fatalf("put after close: %v, want errIntentLogClosed", err)
	}
}

// reversalRecorder is a flow.Reversals that records what is queued.
type reversalRecorder struct {
	mu   sync.Mutex
	txns []string
	msgs [][]byte
}

func (r *reversalRecorder) Enqueue(_ context.Context, _, _, txnID string, msg []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.txns, r.msgs = append(r.txns, txnID), append(r.msgs, msg)
	return nil
}

func TestRecoverIntentsQueuesTheReversalOfEachOpenIntentOnceAndForgetsIt(t *testing.T) {
	key := make([]byte, 32)
	sealer, err := saf.NewAESGCM(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in := newIntents(openTestIntentLog(t, dir), sealer, nil, "node-1", zaptest.NewLogger(t))
	ctx := context.Background()
	var ids []string
	for i := range 3 {
		id, err := in.Begin(ctx, "bank-a", "bank-a/main/1", fmt.Sprintf("T%d", i), []byte(fmt.Sprintf("0400-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := in.End(ctx, "bank-a", ids[1]); err != nil { // answered: no reversal
		t.Fatal(err)
	}
	re := newIntents(openTestIntentLog(t, copyOf(t, dir)), sealer, nil, "node-1", zaptest.NewLogger(t)) // the next start, after a crash
	var q reversalRecorder
	if err := re.recoverIntents(ctx, &q, zaptest.NewLogger(t), nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(q.txns, []string{"T0", "T2"}) || string(q.msgs[0]) != "0400-0" || string(q.msgs[1]) != "0400-2" {
		t.Fatalf("queued %v %q, want T0 and T2 with their reversals", q.txns, q.msgs)
	}
	if left := loadIDs(t, re.store.(*intentLog)); len(left) != 0 {
		t.Fatalf("intents left after recovery: %v", left)
	}
}

func FuzzDecodeIntentRecord(f *testing.F) {
	f.Add(appendIntentRecord(nil, intentOp{begin: testIntent(1), id: "node-1-1"}))
	f.Add(appendIntentRecord(nil, intentOp{id: "node-1-1"}))
	f.Add([]byte{'B', 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{'X'})
	f.Fuzz(func(t *testing.T, p []byte) {
		op, err := decodeIntentRecord(p)
		if err != nil {
			return
		}
		// What decodes encodes to a record that decodes to the same intent (varints may be written shorter).
		again, err := decodeIntentRecord(appendIntentRecord(nil, op))
		if err != nil {
			t.Fatalf("%x decoded to %+v, whose encoding does not decode: %v", p, op, err)
		}
		if again.id != op.id || (again.begin == nil) != (op.begin == nil) {
			t.Fatalf("%x decoded to %+v, then to %+v", p, op, again)
		}
		if b, c := op.begin, again.begin; b != nil && (b.ID != c.ID || b.Acquirer != c.Acquirer || b.Link != c.Link ||
			b.TxnID != c.TxnID || b.Kind != c.Kind || !b.Queued.Equal(c.Queued) || !slices.Equal(b.Sealed, c.Sealed)) {
			t.Fatalf("%x decoded to %+v, then to %+v", p, b, c)
		}
	})
}

// BenchmarkIntentStoreBeginEnd: a Begin (Put) and an End (Remove) from 32 concurrent callers, like the
// terminals of a closed-loop load test, on the intent log and on the saf.FileStore it replaces.
func BenchmarkIntentStoreBeginEnd(b *testing.B) {
	stores := []struct {
		name string
		open func(dir string) (saf.Store, error)
	}{
		{"intentlog", func(dir string) (saf.Store, error) { return openIntentLog(dir, nil) }},
		{"saf.FileStore", func(dir string) (saf.Store, error) { return saf.OpenFileStore(dir, saf.FileStoreOptions{}) }},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			l, err := st.open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			ctx := context.Background()
			var n atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(16) // 16 x GOMAXPROCS callers
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					e := testIntent(int(n.Add(1)))
					if err := l.Put(ctx, e); err != nil {
						b.Error(err)
						return
					}
					if err := l.Remove(ctx, e.Acquirer, e.ID); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// flakyStore is an intent store that can be switched down, like shared state whose Redis is cut off.
type flakyStore struct {
	saf.Store
	down atomic.Bool
	late atomic.Bool // a Put fails for the caller but lands all the same (a hung Redis answering late)
}

func (f *flakyStore) Put(ctx context.Context, e *saf.Entry) error {
	if f.late.Load() {
		_ = f.Store.Put(ctx, e)
		return errors.New("store timed out")
	}
	if f.down.Load() {
		return errors.New("store down")
	}
	return f.Store.Put(ctx, e)
}

func (f *flakyStore) Remove(ctx context.Context, acquirer, id string) error {
	if f.down.Load() {
		return errors.New("store down")
	}
	return f.Store.Remove(ctx, acquirer, id)
}

// flakyQueue is a reversal queue that can be switched down.
type flakyQueue struct {
	reversalRecorder
	down atomic.Bool
}

func (f *flakyQueue) Enqueue(ctx context.Context, acquirer, link, txnID string, msg []byte) error {
	if f.down.Load() {
		return errors.New("queue down")
	}
	return f.reversalRecorder.Enqueue(ctx, acquirer, link, txnID, bytes.Clone(msg))
}

// TestReversalRefusedByItsStoreIsHeldAndItsIntentKeptUntilQueued: while the store of the queue and intents
// is down (Redis of shared state cut off), a reversal is held in memory and retried, and the request's intent
// stays until the reversal is queued, so a stop meanwhile still reverses it; an intent whose removal failed
// although its request was answered is removed once the store is back, so it cannot reverse a delivered
// approval at the next start; and an intent written late by a store that timed out is removed.
func TestReversalRefusedByItsStoreIsHeldAndItsIntentKeptUntilQueued(t *testing.T) {
	sealer, err := saf.NewAESGCM(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	store := &flakyStore{Store: openTestIntentLog(t, t.TempDir())}
	q := &flakyQueue{}
	in := newIntents(store, sealer, q, "node-1", zaptest.NewLogger(t))
	ctx := context.Background()
	timedOut, err := in.Begin(ctx, "bank-a", "bank-a/main/1", "T1", []byte("0420-T1"))
	if err != nil {
		t.Fatal(err)
	}
	answered, err := in.Begin(ctx, "bank-a", "bank-a/main/1", "T2", []byte("0420-T2"))
	if err != nil {
		t.Fatal(err)
	}

	store.down.Store(true)
	q.down.Store(true)
	if err := in.Enqueue(ctx, "bank-a", "bank-a/main/1", "T1", []byte("0420-T1")); err != nil {
		t.Fatalf("a reversal the queue refused was not held: %v", err)
	}
	if err := in.End(ctx, "bank-a", timedOut); err != nil {
		t.Fatalf("End of an intent waiting for its held reversal: %v", err)
	}
	if err := in.End(ctx, "bank-a", answered); err == nil {
		t.Fatal("End with the store down reported success")
	}
	if held, unremoved := in.Held(); held != 1 || unremoved != 1 {
		t.Fatalf("held %d reversals and %d unremoved intents, want 1 and 1", held, unremoved)
	}
	in.retryOnce(ctx) // still down: nothing changes, nothing is lost
	if ids := loadIDs(t, store.Store.(*intentLog)); len(ids) != 2 {
		t.Fatalf("intents while down: %v, want both kept", ids)
	}

	store.down.Store(false)
	q.down.Store(false)
	in.retryOnce(ctx)
	if !slices.Equal(q.txns, []string{"T1"}) || string(q.msgs[0]) != "0420-T1" {
		t.Fatalf("queued %v, want T1's reversal once", q.txns)
	}
	if ids := loadIDs(t, store.Store.(*intentLog)); len(ids) != 0 {
		t.Fatalf("intents left once the store is back: %v", ids)
	}
	if held, unremoved := in.Held(); held != 0 || unremoved != 0 {
		t.Fatalf("held %d and %d after the retry, want none", held, unremoved)
	}

	// A Begin that timed out but landed late: the request was not sent, so its intent goes.
	store.late.Store(true)
	if _, err := in.Begin(ctx, "bank-a", "bank-a/main/1", "T3", []byte("0420-T3")); err == nil {
		t.Fatal("a Begin whose write timed out reported success")
	}
	store.late.Store(false)
	in.retryOnce(ctx)
	if ids := loadIDs(t, store.Store.(*intentLog)); len(ids) != 0 {
		t.Fatalf("the intent of a request never sent is still there: %v", ids)
	}
}
