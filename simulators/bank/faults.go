package bank

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Faults are the link faults the simulator injects. Shares are fractions of requests, 0 to 1; the zero value
// injects nothing. It travels as JSON on the control endpoint.
type Faults struct {
	// LatencyMS is a fixed delay before each reply, plus a uniform delay in [0, JitterMS).
	LatencyMS float64 `json:"latency_ms"`
	JitterMS  float64 `json:"jitter_ms"`
	// NormalMeanMS and NormalStddevMS, when either is set, replace the fixed delay and jitter with a normal
	// distribution (negative draws count as 0).
	NormalMeanMS   float64 `json:"normal_mean_ms"`
	NormalStddevMS float64 `json:"normal_stddev_ms"`
	// NoReply is the share of requests processed but never answered.
	NoReply float64 `json:"no_reply"`
	// Late is the share of requests answered after LateMS instead of the latency above (set LateMS beyond
	// the peer's timeout).
	Late   float64 `json:"late"`
	LateMS float64 `json:"late_ms"`
	// DisconnectAfter, when > 0, closes each connection as its Nth request arrives, leaving it unanswered.
	DisconnectAfter int `json:"disconnect_after"`
	// Garbage is the share of replies replaced by a well-framed frame of random bytes.
	Garbage float64 `json:"garbage"`
	// WrongMAC is the share of replies sent with a corrupted MAC (only replies that carry a MAC, see Keys).
	WrongMAC float64 `json:"wrong_mac"`
	// Duplicate is the share of replies sent twice.
	Duplicate float64 `json:"duplicate"`
	// Stall stops reading from every connection until it is cleared: requests queue in the kernel and then
	// in the peer.
	Stall bool `json:"stall"`
}

// Validate checks that shares are within 0-1 and times and counts are not negative.
func (f Faults) Validate() error {
	for _, s := range []struct {
		name string
		v    float64
	}{{"no_reply", f.NoReply}, {"late", f.Late}, {"garbage", f.Garbage}, {"wrong_mac", f.WrongMAC}, {"duplicate", f.Duplicate}} {
		if s.v < 0 || s.v > 1 || math.IsNaN(s.v) {
			return fmt.Errorf("fault %s: share %v is not within 0-1", s.name, s.v)
		}
	}
	for _, d := range []struct {
		name string
		v    float64
	}{{"latency_ms", f.LatencyMS}, {"jitter_ms", f.JitterMS}, {"normal_mean_ms", f.NormalMeanMS},
		{"normal_stddev_ms", f.NormalStddevMS}, {"late_ms", f.LateMS}} {
		if d.v < 0 || math.IsNaN(d.v) || math.IsInf(d.v, 0) {
			return fmt.Errorf("fault %s: %v must be >= 0", d.name, d.v)
		}
	}
	if f.DisconnectAfter < 0 {
		return fmt.Errorf("fault disconnect_after: %d must be >= 0", f.DisconnectAfter)
	}
	if f.Late > 0 && f.LateMS == 0 {
		return fmt.Errorf("fault late: a share of late replies needs late_ms")
	}
	return nil
}

// Rand is the source of the fault draws and of garbage frames' bytes; *math/rand/v2.Rand fits. Tests
// pass a seeded one so fault sequences repeat.
type Rand interface {
	Float64() float64
	NormFloat64() float64
	Uint64() uint64
}

// lockedRand makes a Rand safe for the connection goroutines.
type lockedRand struct {
	mu sync.Mutex
	r  Rand
}

func (l *lockedRand) float64() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Float64()
}

func (l *lockedRand) norm() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.NormFloat64()
}

func (l *lockedRand) fill(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range b {
		b[i] = byte(l.r.Uint64())
	}
}

// action is what the faults make of one reply.
type action struct {
	drop, garbage, wrongMAC, duplicate, late bool
	delay                                    time.Duration
}

// decide draws the faults of one reply. Only configured faults draw, so without faults the hot path takes
// no lock.
func (f *Faults) decide(r *lockedRand) action {
	var a action
	chance := func(p float64) bool { return p > 0 && r.float64() < p }
	if chance(f.NoReply) {
		a.drop = true
		return a
	}
	a.garbage = chance(f.Garbage)
	a.wrongMAC = chance(f.WrongMAC)
	a.duplicate = chance(f.Duplicate)
	ms := 0.0
	switch {
	case chance(f.Late):
		a.late, ms = true, f.LateMS
	case f.NormalMeanMS > 0 || f.NormalStddevMS > 0:
		ms = math.Max(0, f.NormalMeanMS+f.NormalStddevMS*r.norm())
	default:
		ms = f.LatencyMS
		if f.JitterMS > 0 {
			ms += f.JitterMS * r.float64()
		}
	}
	a.delay = time.Duration(ms * float64(time.Millisecond))
	return a
}
