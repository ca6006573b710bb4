package link

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
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
		{now, "bankA", "000001", "636503000001"},
		{now, "bankA", "000002", "636503000002"},
		{now, "bankB", "000001", "636503000001"}, // each acquirer has its own sequence
		{time.Date(2027, 1, 1, 0, 0, 0, 0, loc), "bankA", "000001", "700103000001"},
		{time.Date(2027, 1, 1, 0, 0, 1, 0, loc), "bankA", "000002", "700103000002"},
		// 2026-12-31 16:00 UTC is already 2027-01-01 in the counter's zone: the same day.
		{time.Date(2026, 12, 31, 16, 0, 2, 0, time.UTC), "bankA", "000003", "700103000003"},
		{time.Date(2027, 1, 2, 9, 0, 0, 0, loc), "bankB", "000001", "700203000001"},
	} {
		now = tc.at
		stan, rrn, err := c.Next(context.Background(), tc.acquirer)
		if err != nil || stan != tc.stan || rrn != tc.rrn {
			t.Errorf("%s at %s: %s %s %v, want %s %s", tc.acquirer, tc.at, stan, rrn, err, tc.stan, tc.rrn)
		}
	}
}

func TestLocalCounterRangeIsNeverReusedWithinTheDay(t *testing.T) {
	day := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	now := day
	c, err := NewLocalCounter(CounterConfig{First: 500000, Last: 500002, Location: time.UTC, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 3 {
		stan, _, err := c.Next(context.Background(), "bankA")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, stan)
	}
	if got[0] != "500000" || got[2] != "500002" {
		t.Errorf("STANs %v, want 500000-500002", got)
	}
	if _, _, err := c.Next(context.Background(), "bankA"); !errors.Is(err, ErrSTANExhausted) {
		t.Errorf("past the range: %v, want ErrSTANExhausted", err)
	}
	now = day.Add(24 * time.Hour)
	if stan, _, err := c.Next(context.Background(), "bankA"); err != nil || stan != "500000" {
		t.Errorf("next day: %s %v, want 500000", stan, err)
	}
}

func TestNewLocalCounterRefusesBadConfig(t *testing.T) {
	for _, cfg := range []CounterConfig{{Node: 100}, {Node: -1}, {First: 10, Last: 5}, {Last: 1000000}} {
		if _, err := NewLocalCounter(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
