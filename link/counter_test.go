package link

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestLocalCounterHandsOutUniqueSTANsAcrossGoroutines(t *testing.T) {
	c, err := NewLocalCounter(CounterConfig{Node: 7})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 500
	var mu sync.Mutex
	seen := map[string]bool{}
	rrns := map[string]bool{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				stan, rrn, err := c.Next(context.Background(), "bankA")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[stan] || rrns[rrn] {
					t.Errorf("STAN %s or RRN %s handed out twice", stan, rrn)
				}
				seen[stan], rrns[rrn] = true, true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != workers*each || !seen["000001"] || !seen["004000"] {
		t.Errorf("%d STANs, want 000001-004000", len(seen))
	}
}

func TestLocalCounterRestartsAtLocalMidnightPerAcquirer(t *testing.T) {
	loc := time.FixedZone("CST", 8*3600)
	now := time.Date(2026, 12, 31, 23, 59, 59, 0, loc)
	c, err := NewLocalCounter(CounterConfig{Node: 3, Location: loc, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at       time.Time
		acquirer string
		stan     string
		rrn      string
	}{
		{now, "bankA", "000001", "365030000001"},
		{now, "bankA", "000002", "365030000002"},
		{now, "bankB", "000001", "365030000001"}, // each acquirer has its own sequence
		{time.Date(2027, 1, 1, 0, 0, 0, 0, loc), "bankA", "000001", "001030000001"},
		{time.Date(2027, 1, 1, 0, 0, 1, 0, loc), "bankA", "000002", "001030000002"},
		// 2026-12-31 16:00 UTC is already 2027-01-01 in the counter's zone: the same day.
		{time.Date(2026, 12, 31, 16, 0, 2, 0, time.UTC), "bankA", "000003", "001030000003"},
		{time.Date(2027, 1, 2, 9, 0, 0, 0, loc), "bankB", "000001", "002030000001"},
	} {
		now = tc.at
		stan, rrn, err := c.Next(context.Background(), tc.acquirer)
		if err != nil || stan != tc.stan || rrn != tc.rrn {
			t.Errorf("%s at %s: %s %s %v, want %s %s", tc.acquirer, tc.at, stan, rrn, err, tc.stan, tc.rrn)
		}
	}
}

// TestLocalCounterWrapsTheSTANButNeverTheRRN uses tiny STAN ranges: past the range the STAN starts again at
// First, the RRN keeps counting (so it stays unique), the wrap is logged once per acquirer and day, and the
// next day both start again.
func TestLocalCounterWrapsTheSTANButNeverTheRRN(t *testing.T) {
	tests := []struct {
		name        string
		first, last int
		calls       int
		stans       []string // the STANs of the calls, in order
	}{
		{"range of three wraps twice", 500000, 500002, 7,
			[]string{"500000", "500001", "500002", "500000", "500001", "500002", "500000"}},
		{"range of one repeats its only STAN", 999999, 999999, 3, []string{"999999", "999999", "999999"}},
		{"range from 1 wraps to 000001", 1, 2, 4, []string{"000001", "000002", "000001", "000002"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			day := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC) // day 331
			now := day
			core, logs := observer.New(zap.InfoLevel)
			c, err := NewLocalCounter(CounterConfig{Node: 5, First: tc.first, Last: tc.last, Location: time.UTC,
				Now: func() time.Time { return now }, Log: zap.New(core)})
			if err != nil {
				t.Fatal(err)
			}
			rrns := map[string]bool{}
			for i := range tc.calls {
				stan, rrn, err := c.Next(context.Background(), "bankA")
				if err != nil {
					t.Fatalf("call %d: %v", i+1, err)
				}
				if want := fmt.Sprintf("33105%07d", i+1); stan != tc.stans[i] || rrn != want {
					t.Errorf("call %d: STAN %s RRN %s, want %s %s", i+1, stan, rrn, tc.stans[i], want)
				}
				if rrns[rrn] {
					t.Errorf("RRN %s handed out twice", rrn)
				}
				rrns[rrn] = true
			}
			if n := logs.FilterMessageSnippet("wrapping").Len(); n != 1 {
				t.Errorf("%d wrap log lines, want 1 per acquirer and day", n)
			}
			// Another acquirer keeps its own sequence; the next day both restart and may log their wrap again.
			if stan, rrn, err := c.Next(context.Background(), "bankB"); err != nil || stan != tc.stans[0] || rrn != "331050000001" {
				t.Errorf("bankB: %s %s %v", stan, rrn, err)
			}
			now = day.Add(24 * time.Hour)
			if stan, rrn, err := c.Next(context.Background(), "bankA"); err != nil || stan != tc.stans[0] || rrn != "332050000001" {
				t.Errorf("next day: %s %s %v, want %s 332050000001", stan, rrn, err, tc.stans[0])
			}
			for range tc.last - tc.first + 1 {
				if _, _, err := c.Next(context.Background(), "bankA"); err != nil {
					t.Fatal(err)
				}
			}
			if n := logs.FilterMessageSnippet("wrapping").Len(); n != 2 {
				t.Errorf("%d wrap log lines after the next day's wrap, want 2", n)
			}
		})
	}
}

// TestLocalCounterRefusesPastTheDaysRRNSequence lowers the 10-million limit to 4: the fifth call of the day
// is refused with ErrSTANExhausted (again on retry), other acquirers and the next day are not.
func TestLocalCounterRefusesPastTheDaysRRNSequence(t *testing.T) {
	defer func(v int) { rrnSeqLimit = v }(rrnSeqLimit)
	rrnSeqLimit = 4
	day := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	now := day
	c, err := NewLocalCounter(CounterConfig{First: 1, Last: 3, Location: time.UTC, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at       time.Time
		acquirer string
		stan     string
		rrn      string
		refused  bool
	}{
		{day, "bankA", "000001", "331000000001", false},
		{day, "bankA", "000002", "331000000002", false},
		{day, "bankA", "000003", "331000000003", false},
		{day, "bankA", "000001", "331000000004", false},
		{day, "bankA", "", "", true},
		{day, "bankA", "", "", true},
		{day, "bankB", "000001", "331000000001", false},
		{day.Add(24 * time.Hour), "bankA", "000001", "332000000001", false},
	} {
		now = tc.at
		stan, rrn, err := c.Next(context.Background(), tc.acquirer)
		if tc.refused != errors.Is(err, ErrSTANExhausted) || stan != tc.stan || rrn != tc.rrn {
			t.Errorf("%s at %s: %q %q %v, want %q %q refused=%v", tc.acquirer, tc.at, stan, rrn, err, tc.stan, tc.rrn, tc.refused)
		}
	}
}

func TestNewLocalCounterRefusesBadConfig(t *testing.T) {
	for _, cfg := range []CounterConfig{{Node: 100}, {Node: -1}, {First: 10, Last: 5}, {Last: 1000000}} {
		if _, err := NewLocalCounter(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
