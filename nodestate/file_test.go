package nodestate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/railswitch/railswitch/flow"
	"github.com/railswitch/railswitch/terminal"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)} }

func txnOf(i int) flow.Txn {
	return flow.Txn{ID: fmt.Sprintf("n1-%d", i), Acquirer: "bankA", Link: "bankA/primary/0", Amount: int64(100 + i),
		RRN: fmt.Sprintf("633101%06d", i), AuthCode: "A1B2C3", AcqSTAN: fmt.Sprintf("%06d", i), Counted: true, Debit: true}
}

func TestFileTxnsKeepTheirDataAcrossAReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "txns.log")
	clock := newClock()
	opts := FileOptions{Now: clock.Now}
	s, err := OpenFileTxns(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 1; i <= 50; i++ {
		if err := s.Put(ctx, "T1", "000001", fmt.Sprintf("%06d", i), txnOf(i)); err != nil {
			t.Fatal(err)
		}
	}
	over := txnOf(7)
	over.Amount = 7777 // the same trace stored again: the latest wins
	if err := s.Put(ctx, "T1", "000001", "000007", over); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "T1", "000001", "000099", txnOf(99)); err == nil {
		t.Fatal("put after close accepted")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("log mode %v, %v; want 0600", fi.Mode(), err)
	}
	s, err = OpenFileTxns(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		name string
		get  func() (flow.Txn, bool, error)
		want flow.Txn
		ok   bool
	}{
		{"by trace", func() (flow.Txn, bool, error) { return s.Get(ctx, "T1", "000001", "000031") }, txnOf(31), true},
		{"by RRN", func() (flow.Txn, bool, error) { return s.GetByRRN(ctx, "T1", "633101000031") }, txnOf(31), true},
		{"overwritten", func() (flow.Txn, bool, error) { return s.Get(ctx, "T1", "000001", "000007") }, over, true},
		{"other batch", func() (flow.Txn, bool, error) { return s.Get(ctx, "T1", "000002", "000031") }, flow.Txn{}, false},
		{"other terminal", func() (flow.Txn, bool, error) { return s.GetByRRN(ctx, "T2", "633101000031") }, flow.Txn{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := tc.get()
			if err != nil || ok != tc.ok || got != tc.want {
				t.Fatalf("got %+v %v %v, want %+v %v", got, ok, err, tc.want, tc.ok)
			}
		})
	}
}

func TestFileBatchesKeepTheirTotalsAcrossAReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "batches.log")
	s, err := OpenFileBatches(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	adds := []struct {
		tid, batch    string
		debit         bool
		amount, count int64
	}{
		{"T1", "000001", true, 1000, 1},
		{"T1", "000001", true, 250, 1},
		{"T1", "000001", false, 300, 1},
		{"T1", "000001", true, -250, -1}, // a void
		{"T1", "000002", true, 5, 1},
		{"T2", "000001", false, 7, 1},
	}
	for _, a := range adds {
		if err := s.Add(ctx, a.tid, a.batch, a.debit, a.amount, a.count); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	for round := range 2 { // reopened once as written, once after the open's compaction
		s, err = OpenFileBatches(path, FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := map[[2]string]terminal.Totals{
			{"T1", "000001"}: {DebitAmount: 1000, DebitCount: 1, CreditAmount: 300, CreditCount: 1},
			{"T1", "000002"}: {DebitAmount: 5, DebitCount: 1},
			{"T2", "000001"}: {CreditAmount: 7, CreditCount: 1},
			{"T3", "000001"}: {},
		}
		for k, w := range want {
			if got, err := s.Totals(ctx, k[0], k[1]); err != nil || got != w {
				t.Errorf("round %d: %v: %+v %v, want %+v", round, k, got, err, w)
			}
		}
		s.Close()
	}
}

// TestFileStoresIgnoreATornLastRecord cuts the log in the middle of its last record (a crash during the
// write) and checks the records before it are kept and the store takes new ones.
func TestFileStoresIgnoreATornLastRecord(t *testing.T) {
	for _, cut := range []int{1, 5, 9, 30} { // bytes cut off the end: inside the payload, or the header
		t.Run(fmt.Sprintf("cut %d bytes", cut), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "txns.log")
			s, err := OpenFileTxns(path, FileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for i := 1; i <= 3; i++ {
				if err := s.Put(ctx, "T1", "1", fmt.Sprint(i), txnOf(i)); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()-int64(cut)); err != nil {
				t.Fatal(err)
			}
			s, err = OpenFileTxns(path, FileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for i := 1; i <= 2; i++ {
				if got, ok, _ := s.Get(ctx, "T1", "1", fmt.Sprint(i)); !ok || got != txnOf(i) {
					t.Fatalf("record %d lost", i)
				}
			}
			if _, ok, _ := s.Get(ctx, "T1", "1", "3"); ok {
				t.Fatal("the torn record was replayed")
			}
			if err := s.Put(ctx, "T1", "1", "4", txnOf(4)); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s, _ = OpenFileTxns(path, FileOptions{})
			if _, ok, _ := s.Get(ctx, "T1", "1", "4"); !ok {
				t.Fatal("a record written after the torn one was lost")
			}
		})
	}
}

func TestFileStoreIgnoresADamagedRecordAndWhatFollows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "batches.log")
	s, _ := OpenFileBatches(path, FileOptions{})
	ctx := context.Background()
	for i := range 3 {
		if err := s.Add(ctx, "T1", fmt.Sprint(i), true, 10, 1); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	data, _ := os.ReadFile(path)
	_, good := readRecords(data)
	// flip a byte in the second record's payload: its CRC fails
	payloads, _ := readRecords(data)
	second := recHeader + len(payloads[0]) + recHeader + 2
	data[second] ^= 0xFF
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if good != len(data) {
		t.Fatalf("good %d of %d", good, len(data))
	}
	s, _ = OpenFileBatches(path, FileOptions{})
	defer s.Close()
	for i, want := range []int64{10, 0, 0} {
		if got, _ := s.Totals(ctx, "T1", fmt.Sprint(i)); got.DebitAmount != want {
			t.Errorf("batch %d: %d, want %d", i, got.DebitAmount, want)
		}
	}
}

// TestFileTxnsGroupCommitConcurrentPuts counts fsyncs through an injected hook that takes a millisecond, as
// a disk does: 64 concurrent callers share far fewer fsyncs than Puts.
func TestFileTxnsGroupCommitConcurrentPuts(t *testing.T) {
	var syncs atomic.Int64
	opts := FileOptions{sync: func(f *os.File) error {
		syncs.Add(1)
		time.Sleep(time.Millisecond)
		return nil
	}}
	s, err := OpenFileTxns(filepath.Join(t.TempDir(), "txns.log"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := syncs.Load()
	const callers, each = 64, 20
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := s.Put(context.Background(), "T1", fmt.Sprint(c), fmt.Sprint(i), txnOf(c*each+i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	n := syncs.Load() - start
	t.Logf("%d Puts, %d fsyncs", callers*each, n)
	if n <= 0 || n > callers*each/4 {
		t.Fatalf("%d fsyncs for %d concurrent Puts: not group-committed", n, callers*each)
	}
	if s.Syncs() != n {
		t.Fatalf("Syncs() %d, hook counted %d", s.Syncs(), n)
	}
	for c := range callers {
		if _, ok, _ := s.Get(context.Background(), "T1", fmt.Sprint(c), fmt.Sprint(each-1)); !ok {
			t.Fatalf("caller %d's last Put missing", c)
		}
	}
}

// TestFileStoresCompactionKeepsLiveDataAndDropsExpired writes past the compaction threshold with an
// injected clock: the log shrinks, live data stays (also after a reopen), expired data goes.
func TestFileStoresCompactionKeepsLiveDataAndDropsExpired(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	opts := FileOptions{Now: clock.Now, Retention: 48 * time.Hour, CompactAfter: 200}
	txns, err := OpenFileTxns(filepath.Join(dir, "txns.log"), opts)
	if err != nil {
		t.Fatal(err)
	}
	batches, err := OpenFileBatches(filepath.Join(dir, "batches.log"), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Day 1: 100 originals (expire), day 3: 300 more (live). Batches: 1000 Adds to 4 batches.
	for i := range 100 {
		if err := txns.Put(ctx, "T1", "old", fmt.Sprint(i), txnOf(i)); err != nil {
			t.Fatal(err)
		}
	}
	clock.Add(60 * time.Hour)
	for i := range 300 {
		if err := txns.Put(ctx, "T1", "new", fmt.Sprint(i), txnOf(1000+i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 1000 {
		if err := batches.Add(ctx, "T1", fmt.Sprint(i%4), i%3 != 0, int64(i), 1); err != nil {
			t.Fatal(err)
		}
	}
	if txns.w.records >= 400 {
		t.Fatalf("txn log holds %d records: not compacted", txns.w.records)
	}
	if batches.w.records >= 200 {
		t.Fatalf("batch log holds %d records: not compacted", batches.w.records)
	}
	check := func(when string, txns *FileTxns, batches *FileBatches) {
		t.Helper()
		if _, ok, _ := txns.Get(ctx, "T1", "old", "5"); ok {
			t.Errorf("%s: expired original still found", when)
		}
		for _, i := range []int{0, 150, 299} {
			if got, ok, _ := txns.Get(ctx, "T1", "new", fmt.Sprint(i)); !ok || got != txnOf(1000+i) {
				t.Errorf("%s: original %d lost", when, i)
			}
			if _, ok, _ := txns.GetByRRN(ctx, "T1", txnOf(1000+i).RRN); !ok {
				t.Errorf("%s: original %d lost by RRN", when, i)
			}
		}
		for b := range 4 {
			var want terminal.Totals
			for i := b; i < 1000; i += 4 {
				if i%3 != 0 {
					want.DebitAmount += int64(i)
					want.DebitCount++
				} else {
					want.CreditAmount += int64(i)
					want.CreditCount++
				}
			}
			if got, _ := batches.Totals(ctx, "T1", fmt.Sprint(b)); got != want {
				t.Errorf("%s: batch %d totals %+v, want %+v", when, b, got, want)
			}
		}
	}
	check("after compaction", txns, batches)
	txns.Close()
	batches.Close()
	txns, _ = OpenFileTxns(filepath.Join(dir, "txns.log"), opts)
	batches, _ = OpenFileBatches(filepath.Join(dir, "batches.log"), opts)
	defer txns.Close()
	defer batches.Close()
	check("after a reopen", txns, batches)
	if txns.w.records != 300 || batches.w.records != 4 {
		t.Fatalf("reopened logs hold %d and %d records, want 300 and 4", txns.w.records, batches.w.records)
	}
	// Later still everything expires; an explicit Compact empties the logs.
	clock.Add(49 * time.Hour)
	if err := txns.Compact(); err != nil {
		t.Fatal(err)
	}
	if err := batches.Compact(); err != nil {
		t.Fatal(err)
	}
	if txns.w.records != 0 || batches.w.records != 0 {
		t.Fatalf("logs hold %d and %d records after everything expired", txns.w.records, batches.w.records)
	}
	if got, _ := batches.Totals(ctx, "T1", "0"); got != (terminal.Totals{}) {
		t.Fatalf("expired batch totals %+v", got)
	}
}

func TestFileTxnsRefuseACancelledContext(t *testing.T) {
	s, _ := OpenFileTxns(filepath.Join(t.TempDir(), "txns.log"), FileOptions{})
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(ctx, "T1", "1", "1", txnOf(1)); err == nil {
		t.Fatal("put with a cancelled context accepted")
	}
}

// FuzzReadRecords feeds arbitrary bytes to the log decoder: it never panics, returns only records whose
// CRC matches, and re-framing them gives back exactly the good prefix.
func FuzzReadRecords(f *testing.F) {
	var seed []byte
	for _, p := range [][]byte{[]byte(`{"tid":"T1","b":"1","at":1,"da":5}`), []byte(`{}`), nil} {
		seed = appendRecord(seed, p)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)-3])
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		payloads, good := readRecords(data)
		if good < 0 || good > len(data) {
			t.Fatalf("good %d of %d", good, len(data))
		}
		var again []byte
		for _, p := range payloads {
			again = appendRecord(again, p)
		}
		if string(again) != string(data[:good]) {
			t.Fatal("records do not re-frame to the good prefix")
		}
	})
}

// TestFileTxnsForgetTheOldestBeyondMaxEntries: memory stays bounded whatever the traffic: past MaxEntries the
// oldest originals are forgotten first, by both keys, also after a reopen; a replaced key keeps its newest.
func TestFileTxnsForgetTheOldestBeyondMaxEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "txns.log")
	clock := newClock()
	opts := FileOptions{Now: clock.Now, MaxEntries: 4, NoSync: true}
	s, err := OpenFileTxns(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 1; i <= 10; i++ {
		if err := s.Put(ctx, "T1", "000001", fmt.Sprintf("%06d", i), txnOf(i)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string, s *FileTxns) {
		t.Helper()
		for i := 1; i <= 10; i++ {
			_, ok, err := s.Get(ctx, "T1", "000001", fmt.Sprintf("%06d", i))
			if err != nil {
				t.Fatal(err)
			}
			_, byRRN, _ := s.GetByRRN(ctx, "T1", txnOf(i).RRN)
			if want := i > 6; ok != want || byRRN != want {
				t.Errorf("%s: original %d found %v (by RRN %v), want %v", when, i, ok, byRRN, want)
			}
		}
	}
	check("after the puts", s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenFileTxns(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check("after a reopen", s)
}

// TestFileTxnsCompactInTheBackgroundWithoutStoppingPuts: the rewrite of the live originals runs while Puts
// go on (at 10,000 approvals a second a million-record rewrite under the lock stalled purchases for seconds);
// the Puts made meanwhile are in the new log, and a reopen finds them.
func TestFileTxnsCompactInTheBackgroundWithoutStoppingPuts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "txns.log")
	release := make(chan struct{})
	var armed, blocked atomic.Bool      // armed after the first Put, which names the log's file
	var logFile atomic.Pointer[os.File] // the file commits go to (named .tmp too: the open compacts)
	opts := FileOptions{Now: newClock().Now, MaxEntries: 50, CompactAfter: 8,
		sync: func(f *os.File) error {
			if !armed.Load() {
				logFile.Store(f)
				return nil
			}
			if f != logFile.Load() && !blocked.Swap(true) {
				<-release // the compaction's write is slow
			}
			return nil
		}}
	s, err := OpenFileTxns(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, "T0", "000001", "000001", txnOf(0)); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	compacting := func() bool { s.w.mu.Lock(); defer s.w.mu.Unlock(); return s.w.compacting }
	i := 0
	for !compacting() {
		i++
		if i > 1000 {
			t.Fatal("no compaction started")
		}
		if err := s.Put(ctx, "T1", "000001", fmt.Sprintf("%06d", i), txnOf(i)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		for j := 1; j <= 30; j++ {
			if err := s.Put(ctx, "T1", "000001", fmt.Sprintf("%06d", i+j), txnOf(i+j)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Puts waited for the compaction")
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for compacting() {
		if time.Now().After(deadline) {
			t.Fatal("the compaction did not finish")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenFileTxns(path, FileOptions{Now: newClock().Now, MaxEntries: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for j := i + 1; j <= i+30; j++ { // made during the compaction
		if _, ok, _ := s.Get(ctx, "T1", "000001", fmt.Sprintf("%06d", j)); !ok {
			t.Fatalf("original %d, put while the log was compacted, is missing after a reopen", j)
		}
	}
}
