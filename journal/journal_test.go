package journal

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openTest opens a journal in dir, closed at the end of the test.
func openTest(t *testing.T, dir string, mod func(*Options)) *Journal {
	t.Helper()
	opts := Options{Dir: dir}
	if mod != nil {
		mod(&opts)
	}
	j, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// appendRange appends testRecord(i) for i in [from, to) and checks the sequence numbers it gets.
func appendRange(t *testing.T, j *Journal, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		seq, err := j.Append(testRecord(i))
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i)+1 {
			t.Fatalf("record %d got sequence %d, want %d", i, seq, i+1)
		}
	}
}

// readFrom returns every record from seq on, or the first error.
func readFrom(j *Journal, seq uint64) ([]Entry, error) {
	r, err := j.NewReader(seq)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []Entry
	for {
		e, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

// checkRecords asserts that entries hold testRecord(from), testRecord(from+1), ... in sequence order.
func checkRecords(t *testing.T, entries []Entry, from, count int) {
	t.Helper()
	if len(entries) != count {
		t.Fatalf("read %d records, want %d", len(entries), count)
	}
	for k, e := range entries {
		i := from + k
		if e.Seq != uint64(i)+1 || !reflect.DeepEqual(e.Record, *testRecord(i)) {
			t.Fatalf("entry %d: sequence %d, record %+v; want sequence %d, record %+v", k, e.Seq, e.Record, i+1, *testRecord(i))
		}
	}
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	idx, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range idx {
		out = append(out, filepath.Join(dir, segmentName(n)))
	}
	return out
}

// frameOffsets returns the file offset of every frame in a segment.
func frameOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Seek(segHeaderSize, io.SeekStart)
	fr := frameReader{r: f, off: segHeaderSize}
	var offs []int64
	for {
		off := fr.off
		if _, _, err := fr.next(); err != nil {
			return offs
		}
		offs = append(offs, off)
	}
}

func TestAppendedRecordsReadBackInOrderAcrossReopen(t *testing.T) {
	for _, tc := range []struct {
		name         string
		fsync        bool
		segmentBytes int64 // 0: the default, which 40 records do not fill
	}{
		{"fsync off, one segment", false, 0},
		{"fsync on, one segment", true, 0},
		{"small segments roll", false, 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := func(o *Options) { o.Fsync, o.SegmentBytes = tc.fsync, tc.segmentBytes }
			j := openTest(t, dir, opts)
			appendRange(t, j, 0, 30)
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j = openTest(t, dir, opts)
			appendRange(t, j, 30, 40) // the sequence continues after a reopen
			for _, from := range []int{0, 17, 39} {
				entries, err := readFrom(j, uint64(from)+1)
				if err != nil {
					t.Fatal(err)
				}
				checkRecords(t, entries, from, 40-from)
			}
			files := segmentFiles(t, dir)
			if (tc.segmentBytes == 0) != (len(files) == 1) {
				t.Errorf("%d segments with segment_bytes %d", len(files), tc.segmentBytes)
			}
			for _, f := range files {
				if st, _ := os.Stat(f); tc.segmentBytes > 0 && st.Size() > tc.segmentBytes {
					t.Errorf("segment %s has %d bytes, above %d", f, st.Size(), tc.segmentBytes)
				}
			}
		})
	}
}

func TestGroupCommitBatchesConcurrentAppendsIntoOneFsync(t *testing.T) {
	const appenders = 50
	var syncs atomic.Int32
	var gated atomic.Bool
	gate := make(chan struct{})
	j := openTest(t, t.TempDir(), func(o *Options) {
		o.Fsync = true
		o.Sync = func(*os.File) error {
			if syncs.Add(1) == 1 && gated.Load() {
				<-gate // hold the first commit in its fsync while the others queue up
			}
			return nil
		}
	})
	syncs.Store(0)
	gated.Store(true)

	var wg sync.WaitGroup
	seqs := make(chan uint64, appenders)
	add := func(i int) {
		defer wg.Done()
		seq, err := j.Append(testRecord(i))
		if err != nil {
			t.Error(err)
		}
		seqs <- seq
	}
	wg.Add(1)
	go add(0)
	waitFor(t, "first commit in fsync", func() bool { return syncs.Load() == 1 })
	for i := 1; i < appenders; i++ {
		wg.Add(1)
		go add(i)
	}
	waitFor(t, "appends queued", func() bool { return len(j.reqs) == appenders-1 })
	close(gate)
	wg.Wait()
	close(seqs)

	if got := syncs.Load(); got != 2 {
		t.Errorf("%d fsyncs for %d appends, want 2 (the first alone, then one batch)", got, appenders)
	}
	seen := map[uint64]bool{}
	for s := range seqs {
		seen[s] = true
	}
	if len(seen) != appenders || j.LastSeq() != appenders {
		t.Errorf("%d distinct sequence numbers, last %d; want %d", len(seen), j.LastSeq(), appenders)
	}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestOpenTruncatesTornTailAndContinuesTheSequence(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string, lastFrame int64, size int64)
		kept   int // records left of 10
	}{
		{"cut inside the last frame header", func(t *testing.T, p string, last, _ int64) { truncate(t, p, last+5) }, 9},
		{"cut inside the last payload", func(t *testing.T, p string, last, size int64) { truncate(t, p, size-3) }, 9},
		{"CRC mismatch in the last frame", func(t *testing.T, p string, _, size int64) { flipByte(t, p, size-1) }, 9},
		{"zeroed blocks after the last frame", func(t *testing.T, p string, _, size int64) { appendBytes(t, p, make([]byte, 4096)) }, 10},
		{"clean end", func(*testing.T, string, int64, int64) {}, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			j := openTest(t, dir, nil)
			appendRange(t, j, 0, 10)
			j.Close()
			path := segmentFiles(t, dir)[0]
			offs := frameOffsets(t, path)
			st, _ := os.Stat(path)
			tc.damage(t, path, offs[len(offs)-1], st.Size())

			j = openTest(t, dir, nil)
			if got := j.LastSeq(); got != uint64(tc.kept) {
				t.Fatalf("last sequence %d after recovery, want %d", got, tc.kept)
			}
			appendRange(t, j, tc.kept, 12)
			entries, err := readFrom(j, 1)
			if err != nil {
				t.Fatal(err)
			}
			checkRecords(t, entries, 0, 12)
		})
	}
}

func TestCorruptionBeforeTheTailIsAnErrorNamingSegmentAndOffset(t *testing.T) {
	for _, tc := range []struct {
		name    string
		segment int // which segment file to damage
		frame   int // which frame in it
		length  bool
	}{
		{"CRC mismatch mid last segment", -1, 3, false},
		{"length out of range mid last segment", -1, 3, true},
		{"CRC mismatch in an older segment", 0, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			j := openTest(t, dir, func(o *Options) { o.SegmentBytes = 2048 })
			appendRange(t, j, 0, 40)
			j.Close()
			files := segmentFiles(t, dir)
			path := files[(tc.segment+len(files))%len(files)]
			off := frameOffsets(t, path)[tc.frame]
			if tc.length {
				flipByte(t, path, off+3) // the length's high byte
			} else {
				flipByte(t, path, off+frameHeaderSize+2)
			}

			j, err := Open(Options{Dir: dir, SegmentBytes: 2048})
			if err == nil {
				// Open scans only the last segment; a reader finds damage in older ones.
				defer j.Close()
				_, err = readFrom(j, 1)
			}
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want a *CorruptionError", err)
			}
			if ce.Segment != filepath.Base(path) || ce.Offset != off {
				t.Errorf("error names %s at %d, want %s at %d", ce.Segment, ce.Offset, filepath.Base(path), off)
			}
		})
	}
}

func TestOpenRemovesASegmentLeftWithoutHeaderByACrashedRoll(t *testing.T) {
	dir := t.TempDir()
	j := openTest(t, dir, nil)
	appendRange(t, j, 0, 5)
	j.Close()
	if err := os.WriteFile(filepath.Join(dir, segmentName(2)), []byte("RSJ"), 0o640); err != nil {
		t.Fatal(err)
	}
	j = openTest(t, dir, nil)
	appendRange(t, j, 5, 6)
	if files := segmentFiles(t, dir); len(files) != 1 {
		t.Errorf("segments %v, want the first one only", files)
	}
}

func TestRetentionDeletesOnlyOldSegmentsEverySinkShipped(t *testing.T) {
	later := time.Now().Add(8 * 24 * time.Hour)
	for _, tc := range []struct {
		name        string
		now         time.Time
		checkpoints map[string]uint64 // sink -> last shipped sequence
		wantFirst   uint64            // oldest readable sequence afterwards
	}{
		{"no sink: nothing is shipped", later, nil, 1},
		{"shipped but young", time.Now(), map[string]uint64{"a": 40}, 1},
		{"old and fully shipped up to the active segment", later, map[string]uint64{"a": 40}, 0},
		{"the slowest sink holds the rest", later, map[string]uint64{"a": 40, "b": 12}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mod := func(o *Options) { o.SegmentBytes, o.RetentionDays, o.Now = 1024, 7, func() time.Time { return tc.now } }
			j := openTest(t, dir, mod)
			appendRange(t, j, 0, 40)
			for sink, seq := range tc.checkpoints {
				e := entryAt(t, j, seq)
				if err := j.commitCheckpoint(sink, e.End); err != nil {
					t.Fatal(err)
				}
			}
			before := len(segmentFiles(t, dir))
			removed, err := j.Retain()
			if err != nil {
				t.Fatal(err)
			}
			if got := len(segmentFiles(t, dir)); got != before-removed {
				t.Fatalf("%d segments left, %d before, %d reported removed", got, before, removed)
			}
			minShipped := uint64(0)
			for _, seq := range tc.checkpoints {
				if minShipped == 0 || seq < minShipped {
					minShipped = seq
				}
			}
			first := j.firstAvailable().Seq + 1
			if tc.wantFirst == 1 && (first != 1 || removed != 0) {
				t.Fatalf("removed %d segments, first readable %d; want nothing removed", removed, first)
			}
			if tc.wantFirst == 0 && (removed == 0 || first > minShipped+1) {
				t.Fatalf("removed %d segments, first readable %d; want removals but every record after %d kept", removed, first, minShipped)
			}
			entries, err := readFrom(j, first)
			if err != nil {
				t.Fatal(err)
			}
			checkRecords(t, entries, int(first)-1, 41-int(first))
			// Reopening finds the same: the remaining segments still chain up.
			j.Close()
			j = openTest(t, dir, mod)
			if got := j.firstAvailable().Seq + 1; got != first || j.LastSeq() != 40 {
				t.Errorf("after reopen first %d last %d, want %d and 40", got, j.LastSeq(), first)
			}
		})
	}
}

// entryAt reads the record with sequence seq.
func entryAt(t *testing.T, j *Journal, seq uint64) Entry {
	t.Helper()
	r, err := j.NewReader(seq)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	e, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestUnshippedBytesRaiseAlarmThenHardLimitFailsAppend(t *testing.T) {
	var alarms []Alarm
	frame := int64(len(appendRecord(nil, testRecord(0))) + frameHeaderSize)
	j := openTest(t, t.TempDir(), func(o *Options) {
		o.MaxUnshippedBytes, o.HardLimitBytes = 5*frame, 8*frame
		o.OnAlarm = func(a Alarm) { alarms = append(alarms, a) }
	})
	appendRange(t, j, 0, 4)
	if len(alarms) != 0 {
		t.Fatalf("alarm %v under the threshold", alarms)
	}
	appendRange(t, j, 4, 8) // the switch keeps serving above the alarm threshold
	if len(alarms) != 1 || !alarms[0].Active || alarms[0].Threshold != 5*frame {
		t.Fatalf("alarms %+v, want one raised at %d bytes", alarms, 5*frame)
	}
	_, err := j.Append(testRecord(8))
	if !errors.Is(err, ErrFull) {
		t.Fatalf("append at the hard limit: %v, want ErrFull", err)
	}
	if err := j.commitCheckpoint("ledger", entryAt(t, j, 8).End); err != nil {
		t.Fatal(err)
	}
	if len(alarms) != 2 || alarms[1].Active || alarms[1].UnshippedBytes != 0 {
		t.Fatalf("alarms %+v, want it cleared once everything is shipped", alarms)
	}
	appendRange(t, j, 8, 9)
}

func TestOpenRefusesACheckpointBeyondTheJournalEnd(t *testing.T) {
	dir := t.TempDir()
	j := openTest(t, dir, nil)
	appendRange(t, j, 0, 3)
	if err := j.commitCheckpoint("ledger", Position{Seq: 9, Bytes: 9000}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	if j, err := Open(Options{Dir: dir}); err == nil {
		j.Close()
		t.Fatal("Open accepted a checkpoint at sequence 9 of a 3-record journal")
	}
}

func TestAppendValidatesAndFailsAfterClose(t *testing.T) {
	j := openTest(t, t.TempDir(), nil)
	if _, err := j.Append(&Record{Kind: KindAuthorization}); err == nil {
		t.Error("record without a transaction id accepted")
	}
	if _, err := j.Append(&Record{TxnID: "x", Kind: 99}); err == nil {
		t.Error("record of undefined kind accepted")
	}
	j.Close()
	if _, err := j.Append(testRecord(0)); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v, want ErrClosed", err)
	}
}

func TestWriteErrorStopsTheJournal(t *testing.T) {
	fail := errors.New("disk on fire")
	var broken atomic.Bool
	j := openTest(t, t.TempDir(), func(o *Options) {
		o.Fsync = true
		o.Sync = func(*os.File) error {
			if broken.Load() {
				return fail
			}
			return nil
		}
	})
	appendRange(t, j, 0, 2)
	broken.Store(true)
	if _, err := j.Append(testRecord(2)); !errors.Is(err, fail) {
		t.Fatalf("append with failing fsync: %v", err)
	}
	broken.Store(false)
	if _, err := j.Append(testRecord(2)); !errors.Is(err, fail) {
		t.Fatalf("append after a failed fsync: %v, want the journal stopped", err)
	}
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func FuzzRecoverSegment(f *testing.F) {
	var frames []byte
	for i := range 3 {
		frame := appendRecord(make([]byte, frameHeaderSize), testRecord(i))
		putFrameHeader(frame, uint64(i)+1)
		frames = append(frames, frame...)
	}
	f.Add(frames)
	f.Add(frames[:len(frames)-7])
	f.Add(append(append([]byte(nil), frames...), make([]byte, 100)...))
	f.Fuzz(func(t *testing.T, body []byte) {
		path := filepath.Join(t.TempDir(), segmentName(1))
		if err := os.WriteFile(path, append(encodeSegmentHeader(1, 0), body...), 0o640); err != nil {
			t.Fatal(err)
		}
		s := segment{index: 1, firstSeq: 1, path: path}
		last, size, err := recoverSegment(s, func(*os.File) error { return nil })
		if err != nil {
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *CorruptionError", err)
			}
			return
		}
		// What recovery kept scans cleanly to the end, and a second recovery changes nothing.
		last2, size2, err := recoverSegment(s, func(*os.File) error { return nil })
		if err != nil || last2 != last || size2 != size {
			t.Fatalf("second recovery: %d %d %v, first %d %d", last2, size2, err, last, size)
		}
		if st, _ := os.Stat(path); st.Size() != size {
			t.Fatalf("file has %d bytes, recovery reported %d", st.Size(), size)
		}
	})
}
