package server

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/railswitch/railswitch/simulators/bank"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startFromDir starts a switch on the configuration a demo wrote in dir (a restart: the demo's banks keep
// running) and stops it when the test ends.
func startFromDir(t *testing.T, dir string, log *zap.Logger) *Switch {
	t.Helper()
	cfg, err := LoadConfig(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sw, err := New(cfg, Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sw.Stop(context.Background()) })
	return sw
}

const cupCard = "6212341234567890" // bank A's test account

// TestUnansweredPurchaseIsReversedAcrossARestart: a bank that stops answering gets its purchase reversed. The
// terminal receives 98; the reversal waits in the durable queue while the bank is silent and while the switch
// restarts, and is acknowledged once the bank answers again, which gives the money back.
func TestUnansweredPurchaseIsReversedAcrossARestart(t *testing.T) {
	log := zaptest.NewLogger(t)
	dir := t.TempDir()
	d, err := StartDemo(context.Background(), dir, DemoAddrs{Timeout: 700 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.BankA.Close(); _ = d.BankB.Close() }()
	waitFor(t, "bank links", 5*time.Second, func() bool { ok, _ := d.Ready(); return ok })
	before, _ := d.BankA.Ledger().Balance(cupCard)

	tt := dialTerminal(t, d.Channels()[0].Addr(), "22003600", "104512541110001")
	tt.signOn()
	if err := d.BankA.SetFaults(bank.Faults{NoReply: 1}); err != nil {
		t.Fatal(err)
	}
	if rep := tt.purchase(cupCard, 2500); rep.String(39) != "98" {
		t.Fatalf("unanswered purchase answered %q, want 98", rep.String(39))
	}
	// The silent bank still applies what it receives: the purchase, and then each repeat of the reversal the
	// queue sends while it waits for an answer, so the balance in between depends on timing and is not checked;
	// what must hold is that the reversal stays queued until acknowledged, across the restart.
	waitFor(t, "the queued reversal", 2*time.Second, func() bool { return len(d.queue.Pending()) == 1 })

	// Restart while the bank is still silent: the reversal survives on disk.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Switch.Stop(ctx); err != nil {
		t.Logf("stop: %v", err)
	}
	sw := startFromDir(t, dir, log)
	if n := len(sw.queue.Pending()); n != 1 {
		t.Fatalf("after the restart %d reversals are queued, want 1", n)
	}
	if err := d.BankA.SetFaults(bank.Faults{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reversal to be acknowledged", 15*time.Second, func() bool { return len(sw.queue.Pending()) == 0 })
	if after, _ := d.BankA.Ledger().Balance(cupCard); after != before {
		t.Fatalf("balance after the reversal %d, want %d", after, before)
	}
	if n := len(sw.queue.DeadLetters()); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}
