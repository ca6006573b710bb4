package link

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Counter hands out the STAN (field 11) and RRN (field 37) of each message the switch sends to an acquirer.
// A STAN is unique per acquirer per day (000001-999999, restarting at local midnight); an RRN is unique per
// acquirer. One Counter serves every link of the process, so all links of an acquirer share its sequence.
//
// A cluster implementation backs the sequence with Redis: INCR on a key per acquirer and day
// ("stan:{acquirer}:{yyyymmdd}", expiring after two days), or INCRBY of a block that a node hands out
// locally; the RRN then carries the node id so two nodes never form the same one.
type Counter interface {
	Next(ctx context.Context, acquirer string) (stan, rrn string, err error)
}

// CounterConfig configures a LocalCounter.
type CounterConfig struct {
	Node     int              // node id, 0-99, written into every RRN
	First    int              // first STAN of the day; default 1
	Last     int              // last STAN of the day; default 999999
	Location *time.Location   // where midnight is; default time.Local
	Now      func() time.Time // default time.Now
}

// LocalCounter is the embedded Counter of one node. Its RRN is YDDDNNSSSSSS: the last digit of the year, the
// day of the year (001-366), the node id (2 digits) and the STAN. The STAN is unique per acquirer and day, so
// the RRN is unique per acquirer and node for ten years. Nodes that share acquirers without a shared counter
// give each node its own STAN range (First, Last).
type LocalCounter struct {
	cfg CounterConfig
	mu  sync.Mutex
	seq map[string]*daySeq
}

// daySeq is one acquirer's sequence: the day it counts for is part of the state.
type daySeq struct {
	day  int // yyyymmdd in the counter's location
	last int // last STAN handed out that day
}

// NewLocalCounter returns a counter with cfg's defaults filled in.
func NewLocalCounter(cfg CounterConfig) (*LocalCounter, error) {
	if cfg.First == 0 {
		cfg.First = 1
	}
	if cfg.Last == 0 {
		cfg.Last = 999999
	}
	if cfg.Node < 0 || cfg.Node > 99 {
		return nil, fmt.Errorf("link: counter node %d outside 0-99", cfg.Node)
	}
	if cfg.First < 1 || cfg.Last > 999999 || cfg.First > cfg.Last {
		return nil, fmt.Errorf("link: STAN range %d-%d outside 1-999999", cfg.First, cfg.Last)
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &LocalCounter{cfg: cfg, seq: map[string]*daySeq{}}, nil
}

// Next returns the acquirer's next STAN and its RRN. When the day's range is used up it returns
// ErrSTANExhausted rather than reuse a STAN.
func (c *LocalCounter) Next(_ context.Context, acquirer string) (string, string, error) {
	t := c.cfg.Now().In(c.cfg.Location)
	y, m, d := t.Date()
	day := y*10000 + int(m)*100 + d
	c.mu.Lock()
	s := c.seq[acquirer]
	if s == nil {
		s = &daySeq{}
		c.seq[acquirer] = s
	}
	if s.day != day {
		s.day, s.last = day, c.cfg.First-1
	}
	if s.last >= c.cfg.Last {
		c.mu.Unlock()
		return "", "", fmt.Errorf("%w: acquirer %s", ErrSTANExhausted, acquirer)
	}
	s.last++
	n := s.last
	c.mu.Unlock()

	var rrn [12]byte
	rrn[0] = byte('0' + y%10)
	putDigits(rrn[1:4], t.YearDay())
	putDigits(rrn[4:6], c.cfg.Node)
	putDigits(rrn[6:12], n)
	s6 := string(rrn[6:12])
	return s6, string(rrn[:]), nil
}

// putDigits writes v as len(b) decimal digits, zero-padded.
func putDigits(b []byte, v int) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}
