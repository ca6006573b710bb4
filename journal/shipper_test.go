package journal

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// fastRetries keeps backoff short so tests do not wait.
var fastRetries = ShipperOptions{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Interval: 10 * time.Millisecond}

// runShipper runs s until the returned stop function is called; stop returns Run's error.
func runShipper(s *Shipper) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

func newShipper(t *testing.T, j *Journal, sink Sink, opts ShipperOptions) *Shipper {
	t.Helper()
	s, err := NewShipper(j, sink, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// crashDirEnv, when set, makes the crash test run as the child process that is killed, on that directory.
const crashDirEnv = "JOURNAL_TEST_CRASH_DIR"

func TestShipperRedeliversAfterKill9BetweenDeliverAndCheckpoint(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashBetweenDeliverAndCheckpoint(t, dir)
		return
	}
	dir := t.TempDir()
	sinkPath := filepath.Join(dir, "sink.jsonl")
	cmd := exec.Command(os.Args[0], "-test.run=^TestShipperRedeliversAfterKill9BetweenDeliverAndCheckpoint$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child process: %v, want killed by SIGKILL\n%s", err, out)
	}
	if n := len(readSinkFile(t, sinkPath)); n != 5 {
		t.Fatalf("sink file has %d lines after the crash, want the 5 delivered", n)
	}

	// Restart: the journal holds the 5 records without a Close, and the checkpoint never moved.
	j := openTest(t, dir, func(o *Options) { o.Fsync = true })
	if ckpt, _ := j.checkpoint("ledger"); j.LastSeq() != 5 || ckpt.Seq != 0 {
		t.Fatalf("after restart: last sequence %d, checkpoint %d; want 5 and 0", j.LastSeq(), ckpt.Seq)
	}
	appendRange(t, j, 5, 7)
	fs, err := NewFileSink("ledger", sinkPath, true)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	s := newShipper(t, j, fs, fastRetries)
	stop := runShipper(s)
	waitFor(t, "redelivery", func() bool { return s.Status().LagRecords == 0 })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}

	lines := readSinkFile(t, sinkPath)
	if len(lines) != 12 {
		t.Fatalf("sink file has %d lines, want 5 + 5 redelivered + 2 new", len(lines))
	}
	keys := map[string]int{}
	for i, l := range lines {
		keys[l.Key]++
		want := testRecord([]int{0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6}[i])
		if l.Key != want.IdempotencyKey() || !reflect.DeepEqual(l.Record, *want) {
			t.Errorf("line %d: key %q record %+v, want key %q record %+v", i+1, l.Key, l.Record, want.IdempotencyKey(), *want)
		}
	}
	if len(keys) != 7 {
		t.Errorf("%d distinct keys, want every one of the 7 records", len(keys))
	}
}

// crashBetweenDeliverAndCheckpoint runs in the child process: it journals 5 records and ships them to a file
// sink, and the process kills itself with SIGKILL after Deliver returned, before the checkpoint is written.
func crashBetweenDeliverAndCheckpoint(t *testing.T, dir string) {
	j, err := Open(Options{Dir: dir, Fsync: true})
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, j, 0, 5)
	fs, err := NewFileSink("ledger", filepath.Join(dir, "sink.jsonl"), true)
	if err != nil {
		t.Fatal(err)
	}
	s := newShipper(t, j, fs, fastRetries)
	s.afterDeliver = func() error {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	t.Fatalf("shipper returned without being killed: %v", s.Run(context.Background()))
}

// sinkLine is one line of a FileSink's file.
type sinkLine struct {
	Version int    `json:"version"`
	Key     string `json:"idempotency_key"`
	Record
}

func readSinkFile(t *testing.T, path string) []sinkLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []sinkLine
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var l sinkLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d: %v", len(lines)+1, err)
		}
		lines = append(lines, l)
	}
	return lines
}

func TestSinkDownGrowsLagRaisesAlarmThenCatchesUp(t *testing.T) {
	var mu sync.Mutex
	var alarms []bool
	frame := int64(len(appendRecord(nil, testRecord(0))) + frameHeaderSize)
	reg := prometheus.NewRegistry()
	j := openTest(t, t.TempDir(), func(o *Options) {
		o.MaxUnshippedBytes = 20 * frame
		o.Registerer = reg
		o.OnAlarm = func(a Alarm) { mu.Lock(); alarms = append(alarms, a.Active); mu.Unlock() }
	})
	alarmLog := func() []bool { mu.Lock(); defer mu.Unlock(); return append([]bool(nil), alarms...) }
	sink := NewMemorySink("ledger")
	sink.SetDown(true)
	opts := fastRetries
	opts.Registerer = reg
	s := newShipper(t, j, sink, opts)
	stop := runShipper(s)
	defer stop()

	appendRange(t, j, 0, 50) // appends go on while the sink is down
	waitFor(t, "failed deliveries", func() bool { return s.Status().Failures >= 3 })
	st := s.Status()
	if st.LagRecords != 50 || st.LagBytes != 50*frame || st.LastError != ErrSinkDown.Error() || st.RetryingSince.IsZero() {
		t.Fatalf("status while down: %+v", st)
	}
	if got := metricValue(t, reg, "railswitch_journal_shipper_lag_records"); got != 50 {
		t.Errorf("lag metric %v, want 50", got)
	}
	if got := metricValue(t, reg, "railswitch_journal_unshipped_alarm"); got != 1 {
		t.Errorf("alarm metric %v, want 1", got)
	}
	if got := alarmLog(); !reflect.DeepEqual(got, []bool{true}) {
		t.Fatalf("alarms %v, want raised once", got)
	}

	sink.SetDown(false)
	waitFor(t, "catch-up", func() bool { return s.Status().LagRecords == 0 })
	got := sink.Records()
	if len(got) != 50 {
		t.Fatalf("sink has %d records, want 50", len(got))
	}
	for i, r := range got {
		if r.TxnID != testRecord(i).TxnID {
			t.Fatalf("record %d is %s, want %s: order lost", i, r.TxnID, testRecord(i).TxnID)
		}
	}
	if got := alarmLog(); !reflect.DeepEqual(got, []bool{true, false}) {
		t.Errorf("alarms %v, want raised then cleared", got)
	}
	if st := s.Status(); st.Delivered != 50 || !st.RetryingSince.IsZero() {
		t.Errorf("status after catch-up: %+v", st)
	}
	if got := metricValue(t, reg, "railswitch_journal_shipper_delivered_records_total"); got != 50 {
		t.Errorf("delivered metric %v, want 50", got)
	}
}

// metricValue returns the value of the one series of a gauge or counter.
func metricValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestSinksProgressIndependentlyAndWakeOnAppend(t *testing.T) {
	j := openTest(t, t.TempDir(), nil)
	up, down := NewMemorySink("up"), NewMemorySink("down")
	down.SetDown(true)
	opts := fastRetries
	opts.Interval = time.Hour // only the append signal can wake the shippers
	sUp, sDown := newShipper(t, j, up, opts), newShipper(t, j, down, opts)
	stopUp, stopDown := runShipper(sUp), runShipper(sDown)
	defer stopDown()
	defer stopUp()

	appendRange(t, j, 0, 10)
	waitFor(t, "the healthy sink", func() bool { return len(up.Records()) == 10 })
	if st := sDown.Status(); st.LagRecords != 10 {
		t.Errorf("sink that is down: lag %d, want 10", st.LagRecords)
	}
	down.SetDown(false)
	waitFor(t, "the recovered sink", func() bool { return len(down.Records()) == 10 })
}

func TestNewShipperRejectsNamesUnfitForFilesAndLabels(t *testing.T) {
	j := openTest(t, t.TempDir(), nil)
	for _, name := range []string{"", "../etc", "a b", "ledger/1"} {
		if _, err := NewShipper(j, NewMemorySink(name), ShipperOptions{}); err == nil {
			t.Errorf("sink name %q accepted", name)
		}
	}
}

func TestFileSinkWritesOneJSONLinePerRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "postings.jsonl")
	fs, err := NewFileSink("file", path, true)
	if err != nil {
		t.Fatal(err)
	}
	recs := []Record{*testRecord(0), *testRecord(1)}
	for range 2 { // a redelivery shows up as a second copy: the file sink is not a ledger
		if err := fs.Deliver(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readSinkFile(t, path)
	for i, l := range lines {
		if want := recs[i%2]; l.Version != RecordVersion || l.Key != want.IdempotencyKey() || !reflect.DeepEqual(l.Record, want) {
			t.Errorf("line %d: version %d key %q record %+v, want %d %q %+v", i+1, l.Version, l.Key, l.Record, RecordVersion, want.IdempotencyKey(), want)
		}
	}
	if len(lines) != 4 {
		t.Errorf("%d lines, want 4", len(lines))
	}
}

func TestRetryPastTheHorizonLogsOnceAndLogsNoCardData(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(core)
	j := openTest(t, t.TempDir(), func(o *Options) { o.Logger = log; o.MaxUnshippedBytes = 1 })
	sink := NewMemorySink("ledger")
	sink.SetDown(true)
	opts := fastRetries
	opts.Logger, opts.RetryHorizon = log, 2*time.Millisecond
	s := newShipper(t, j, sink, opts)
	stop := runShipper(s)
	appendRange(t, j, 0, 3)
	waitFor(t, "retries past the horizon", func() bool {
		return s.Status().Failures >= 10 && time.Since(s.Status().RetryingSince) > 10*time.Millisecond
	})
	sink.SetDown(false)
	waitFor(t, "catch-up", func() bool { return s.Status().LagRecords == 0 })
	stop()

	if n := logs.FilterMessageSnippet("retry horizon exceeded").Len(); n != 1 {
		t.Errorf("%d horizon errors logged for one batch, want 1", n)
	}
	for _, e := range logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		for _, secret := range []string{testPAN16, "411111******1111", "******"} {
			if strings.Contains(line, secret) {
				t.Errorf("log line %q contains card data %q", line, secret)
			}
		}
	}
}

// countingSink counts Deliver calls of the sink it wraps.
type countingSink struct {
	*MemorySink
	mu    sync.Mutex
	calls int
}

func (c *countingSink) Deliver(ctx context.Context, recs []Record) error {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	return c.MemorySink.Deliver(ctx, recs)
}

func TestShipperLingerGathersRecordsAppendedOneByOneIntoOneDelivery(t *testing.T) {
	cases := []struct {
		name      string
		linger    time.Duration
		wantCalls int
	}{
		{"linger longer than the appends: one delivery", time.Second, 1},
		{"no linger: a delivery per append", -1, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := openTest(t, t.TempDir(), nil)
			sink := &countingSink{MemorySink: NewMemorySink("ledger")}
			opts := fastRetries
			opts.Linger = tc.linger
			s := newShipper(t, j, sink, opts)
			stop := runShipper(s)
			defer stop()
			for i := range 5 {
				appendRange(t, j, i, i+1)
				if tc.linger < 0 { // let each record ship before the next
					waitFor(t, "delivery", func() bool { return len(sink.Records()) == i+1 })
				}
			}
			waitFor(t, "delivery", func() bool { return len(sink.Records()) == 5 })
			sink.mu.Lock()
			defer sink.mu.Unlock()
			if sink.calls != tc.wantCalls {
				t.Fatalf("%d Deliver calls for 5 records, want %d", sink.calls, tc.wantCalls)
			}
		})
	}
}

// TestShipperWritesCheckpointsAtMostEveryCheckpointEveryAndWhenIdle: under a stream of small deliveries the
// checkpoint file is rewritten at most once per CheckpointEvery (the first delivery writes at once), an idle
// shipper writes the pending one when the time is up, and a negative CheckpointEvery writes after every batch.
func TestShipperWritesCheckpointsAtMostEveryCheckpointEveryAndWhenIdle(t *testing.T) {
	cases := []struct {
		name     string
		every    time.Duration
		wantSeq  uint64 // the durable checkpoint right after the 5 records were delivered (0: timing-dependent)
		idleSeqs uint64 // the durable checkpoint once the shipper was idle for longer than every
	}{
		{"long interval: only the first delivery is checkpointed", time.Hour, 1, 1},
		{"short interval: the idle shipper catches up", 300 * time.Millisecond, 0, 5},
		{"negative: a checkpoint per delivery", -1, 5, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := openTest(t, t.TempDir(), nil)
			sink := NewMemorySink("ledger")
			opts := fastRetries
			opts.Linger, opts.CheckpointEvery = -1, tc.every
			s := newShipper(t, j, sink, opts)
			stop := runShipper(s)
			defer stop()
			for i := range 5 {
				appendRange(t, j, i, i+1)
				waitFor(t, "delivery", func() bool { return len(sink.Records()) == i+1 })
			}
			durable := func() uint64 {
				ps, err := loadCheckpoints(j.opts.Dir)
				if err != nil {
					t.Fatal(err)
				}
				return ps["ledger"].Seq
			}
			if tc.every < 0 {
				waitFor(t, "the last checkpoint", func() bool { return durable() == 5 })
			}
			if got := durable(); tc.wantSeq != 0 && got != tc.wantSeq {
				t.Fatalf("checkpoint right after 5 deliveries: %d, want %d", got, tc.wantSeq)
			}
			if tc.idleSeqs != tc.wantSeq {
				waitFor(t, "the idle checkpoint", func() bool { return durable() == tc.idleSeqs })
			} else {
				time.Sleep(50 * time.Millisecond)
				if got := durable(); got != tc.idleSeqs {
					t.Fatalf("checkpoint after idling: %d, want %d", got, tc.idleSeqs)
				}
			}
		})
	}
}
