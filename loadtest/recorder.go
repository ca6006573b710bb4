package loadtest

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram ranges, in microseconds: 1 us to 1 hour, 3 significant digits overall and 2 per interval.
const (
	histMin, histMax = 1, int64(time.Hour / time.Microsecond)
)

// recorder collects results from every terminal. Terminals spread over shards, so a shard's lock is rarely
// contended and there is no histogram per terminal (10,000 of them would not fit).
type recorder struct {
	start    time.Time
	interval time.Duration // of the latency-over-time series
	shards   []shard
}

type shard struct {
	mu        sync.Mutex
	hist      *hdrhistogram.Histogram
	series    []*hdrhistogram.Histogram
	codes     map[string]*int64
	kinds     [numKinds]int64
	sent      int64
	timeouts  int64
	errors    int64
	unmatched int64
	invalid   int64
	// sign-ons of terminal specs, at the start and on reconnects
	signOns, signOnFailures int64
	_                       [64]byte // keep shards' locks on separate cache lines
}

func newRecorder(n int, start time.Time, interval time.Duration) *recorder {
	r := &recorder{start: start, interval: interval, shards: make([]shard, n)}
	for i := range r.shards {
		r.shards[i].hist = hdrhistogram.New(histMin, histMax, 3)
		r.shards[i].codes = map[string]*int64{}
	}
	return r
}

func (r *recorder) shard(terminal int) *shard { return &r.shards[terminal%len(r.shards)] }

// sent counts a request of kind k.
func (s *shard) sentOne(k Kind) {
	s.mu.Lock()
	s.sent++
	s.kinds[k]++
	s.mu.Unlock()
}

// answered records a reply with response code code, received at end for a request intended at intended.
func (r *recorder) answered(s *shard, code []byte, intended, end time.Time) {
	us := end.Sub(intended).Microseconds()
	us = max(histMin, min(us, histMax))
	slot := int(end.Sub(r.start) / r.interval)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hist.RecordValue(us)
	for len(s.series) <= slot {
		s.series = append(s.series, nil)
	}
	if s.series[slot] == nil {
		s.series[slot] = hdrhistogram.New(histMin, histMax, 2)
	}
	s.series[slot].RecordValue(us)
	if p, ok := s.codes[string(code)]; ok { // a lookup by string(bytes) does not allocate
		*p++
	} else {
		one := int64(1)
		s.codes[string(code)] = &one
	}
}

func (s *shard) add(p *int64) {
	s.mu.Lock()
	*p++
	s.mu.Unlock()
}

// totals merges the shards.
type totals struct {
	hist                              *hdrhistogram.Histogram
	series                            []*hdrhistogram.Histogram
	codes                             map[string]int64
	kinds                             [numKinds]int64
	sent, timeouts, errors, unmatched int64
	invalid, signOns, signOnFailures  int64
}

func (r *recorder) totals() totals {
	t := totals{hist: hdrhistogram.New(histMin, histMax, 3), codes: map[string]int64{}}
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		t.hist.Merge(s.hist)
		for j, h := range s.series {
			for len(t.series) <= j {
				t.series = append(t.series, nil)
			}
			if h == nil {
				continue
			}
			if t.series[j] == nil {
				t.series[j] = hdrhistogram.New(histMin, histMax, 2)
			}
			t.series[j].Merge(h)
		}
		for c, n := range s.codes {
			t.codes[c] += *n
		}
		for k, n := range s.kinds {
			t.kinds[k] += n
		}
		t.sent += s.sent
		t.timeouts += s.timeouts
		t.errors += s.errors
		t.unmatched += s.unmatched
		t.invalid += s.invalid
		t.signOns += s.signOns
		t.signOnFailures += s.signOnFailures
		s.mu.Unlock()
	}
	return t
}
