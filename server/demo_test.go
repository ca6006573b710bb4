package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// TestDemoNoFsyncJournalsWithoutFsyncAndWithoutIntents: --no-fsync writes fsync: false into the demo's
// config.yaml, so the switch keeps no intent records; either way a purchase is approved, journaled and shipped.
func TestDemoNoFsyncJournalsWithoutFsyncAndWithoutIntents(t *testing.T) {
	for _, tc := range []struct {
		name      string
		noFsync   bool
		wantFsync bool
	}{
		{"default fsyncs and keeps intents", false, true},
		{"no-fsync turns both off", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			d, err := StartDemo(context.Background(), dir, DemoAddrs{NoFsync: tc.noFsync}, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = d.Close(ctx)
			}()
			cfg, err := LoadConfig(filepath.Join(dir, "config.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Journal.Fsync != nil && *cfg.Journal.Fsync; got != tc.wantFsync {
				t.Fatalf("config.yaml journal fsync = %v, want %v", got, tc.wantFsync)
			}
			if hasIntents := d.intents != nil; hasIntents != tc.wantFsync {
				t.Fatalf("intent records kept: %v, want %v", hasIntents, tc.wantFsync)
			}
			waitFor(t, "bank links", 5*time.Second, func() bool { ok, _ := d.Ready(); return ok })
			tt := dialTerminal(t, d.Channels()[0].Addr(), "22003600", "104512541110001")
			tt.signOn()
			if rc := tt.purchase(cupCard, 100).String(39); rc != "00" {
				t.Fatalf("purchase answered %q, want 00", rc)
			}
			waitFor(t, "the posting shipped from the journal", 5*time.Second, func() bool {
				data, _ := os.ReadFile(filepath.Join(dir, "postings.jsonl"))
				return strings.Count(string(data), "\n") >= 1
			})
		})
	}
}

// TestDemoNoFsyncFailsWithoutTheJournalLine: a demo configuration whose journal line changed is an error, not a
// run that silently still fsyncs.
func TestDemoNoFsyncFailsWithoutTheJournalLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("journal: {dir: j, fsync: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := demoNoFsync(path)
	if err == nil || !strings.Contains(err.Error(), "fsync") {
		t.Fatalf("demoNoFsync = %v, want an error naming the missing line", err)
	}
}
