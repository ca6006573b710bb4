package server

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

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
