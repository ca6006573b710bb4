package link

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// MaxRRNSequence is the last 7-digit RRN sequence number of an acquirer's day on one node: past it Next
// refuses with ErrSTANExhausted (10 million messages a day per node per acquirer).
const MaxRRNSequence = 9999999

// rrnSeqLimit is MaxRRNSequence; tests lower it to reach the refusal quickly.
var rrnSeqLimit = MaxRRNSequence

// Counter hands out the STAN (field 11) and RRN (field 37) of each message the switch sends to an acquirer.
// Both come from one sequence number n per acquirer and local day (1, 2, ...; restarting at local midnight).
// The STAN is n mapped onto the STAN range (000001-999999 by default): when the day's range is used up it
// wraps around to the first STAN of the range, so a STAN is unique per acquirer among the last range-size
// messages (999,999 by default) and, with the transmission date and time (field 7), still identifies a
// message. The RRN is DDDNNSSSSSSS: the day of the year (001-366), the node id (2 digits) and n (7 digits),
// so it is unique per acquirer within a year whether or not the STAN wrapped. Past n = 9,999,999 (10 million
// messages a day per node per acquirer) Next refuses with ErrSTANExhausted. One Counter serves every link of
// the process, so all links of an acquirer share its sequence.
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
	Log      *zap.Logger      // where the daily STAN wrap is reported (Info); nil logs nothing
}

// LocalCounter is the embedded Counter of one node. The STAN runs through First-Last and wraps around to
// First when the day's range is used up (logged once per acquirer and day). The RRN is DDDNNSSSSSSS: the day
// of the year (001-366), the node id (2 digits) and the acquirer's 7-digit sequence number of the day, which
// does not wrap, so the RRN is unique per acquirer and node within a year. Past MaxRRNSequence messages of an
// acquirer's day Next refuses with ErrSTANExhausted. Nodes that share acquirers without a shared counter
// give each node its own STAN range (First, Last) and node id.
type LocalCounter struct {
	cfg CounterConfig
	mu  sync.Mutex
	seq map[string]*daySeq
}

// daySeq is one acquirer's sequence: the day it counts for is part of the state.
type daySeq struct {
	day     int  // yyyymmdd in the counter's location
	n       int  // last sequence number handed out that day (1 is the first)
	wrapped bool // the STAN wrap of that day was logged
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
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	return &LocalCounter{cfg: cfg, seq: map[string]*daySeq{}}, nil
}

// Next returns the acquirer's next STAN and its RRN. When the day's STAN range is used up the STAN wraps
// around to First; past MaxRRNSequence messages of the day it returns ErrSTANExhausted.
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
		s.day, s.n, s.wrapped = day, 0, false
	}
	if s.n >= rrnSeqLimit {
		c.mu.Unlock()
		return "", "", fmt.Errorf("%w: acquirer %s has %d messages today", ErrSTANExhausted, acquirer, s.n)
	}
	s.n++
	n := s.n
	size := c.cfg.Last - c.cfg.First + 1
	logWrap := n > size && !s.wrapped
	if logWrap {
		s.wrapped = true
	}
	c.mu.Unlock()

	if logWrap {
		c.cfg.Log.Info("STAN range used up, wrapping around to its first STAN", zap.String("acquirer", acquirer),
			zap.Int("day", day), zap.Int("first", c.cfg.First), zap.Int("last", c.cfg.Last))
	}
	stan, rrn := FormatSTANRRN(n, c.cfg.First, size, t.YearDay(), c.cfg.Node)
	return stan, rrn, nil
}

// FormatSTANRRN forms the STAN and RRN of sequence number n (1-9,999,999) of a day: the STAN is
// ((n-1) mod size) + first as 6 digits, the RRN is yearDay (3 digits), node (2) and n (7).
func FormatSTANRRN(n, first, size, yearDay, node int) (stan, rrn string) {
	var b [18]byte
	putDigits(b[:6], (n-1)%size+first)
	putDigits(b[6:9], yearDay)
	putDigits(b[9:11], node)
	putDigits(b[11:18], n)
	return string(b[:6]), string(b[6:18])
}

// putDigits writes v as len(b) decimal digits, zero-padded.
func putDigits(b []byte, v int) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}
