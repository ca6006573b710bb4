package router

import (
	"sync"
	"sync/atomic"
	"time"
)

// BreakerState is the state of an endpoint's circuit breaker.
type BreakerState uint32

// The breaker states.
const (
	Closed   BreakerState = iota // requests flow; consecutive failures are counted
	Open                         // no requests until the cool-down has passed
	HalfOpen                     // a few probe requests decide between Closed and Open
)

// String names the state for logs and metrics.
func (s BreakerState) String() string { return [...]string{"closed", "open", "half-open"}[s] }

// breaker is a circuit breaker. The closed state, the common case, is read without the lock and without
// reading the clock.
type breaker struct {
	cfg      BreakerConfig
	now      func() time.Time
	state    atomic.Uint32
	fails    atomic.Int32 // consecutive failures while closed
	mu       sync.Mutex
	openedAt time.Time
	probes   int // probes let through and not yet reported, while half-open
	passed   int // probe successes while half-open
}

func newBreaker(cfg BreakerConfig, now func() time.Time) *breaker {
	return &breaker{cfg: cfg.withDefaults(), now: now}
}

// State gives the current state.
func (b *breaker) State() BreakerState { return BreakerState(b.state.Load()) }

// ready says whether acquire could let a request through now, without changing anything.
func (b *breaker) ready() bool {
	if b.State() == Closed {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.State() {
	case Open:
		return b.now().Sub(b.openedAt) >= b.cfg.Cooldown
	case HalfOpen:
		return b.probes < b.cfg.Probes
	}
	return true
}

// acquire lets a request through or not; probe says it is one of the half-open state's probes.
func (b *breaker) acquire() (ok, probe bool) {
	if b.State() == Closed {
		return true, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.State() {
	case Open:
		if b.now().Sub(b.openedAt) < b.cfg.Cooldown {
			return false, false
		}
		b.state.Store(uint32(HalfOpen))
		b.probes, b.passed = 0, 0
		fallthrough
	case HalfOpen:
		if b.probes >= b.cfg.Probes {
			return false, false
		}
		b.probes++
		return true, true
	}
	return true, false
}

// unused returns a probe that was never sent.
func (b *breaker) unused(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	if b.State() == HalfOpen && b.probes > 0 {
		b.probes--
	}
	b.mu.Unlock()
}

// record takes the outcome of a request that was sent. Outcomes of requests let through before the breaker
// opened are ignored once it is open or half-open: only probes decide.
func (b *breaker) record(ok, probe bool) {
	if b.State() == Closed && ok {
		if b.fails.Load() != 0 {
			b.fails.Store(0)
		}
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.State() {
	case Closed:
		if !ok && b.fails.Add(1) >= int32(b.cfg.Failures) {
			b.open()
		}
	case HalfOpen:
		if !probe {
			return
		}
		b.probes--
		if !ok {
			b.open()
			return
		}
		if b.passed++; b.passed >= b.cfg.Successes {
			b.fails.Store(0)
			b.state.Store(uint32(Closed))
		}
	}
}

func (b *breaker) open() {
	b.openedAt = b.now()
	b.state.Store(uint32(Open))
}
