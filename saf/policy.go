package saf

import (
	"slices"
	"time"
)

// Policy is how one acquirer's queue is drained. Zero fields take the defaults of DefaultPolicy. The yaml
// tags are its form in the switch's configuration (durations as "30s", "5m").
type Policy struct {
	// AckCodes are the response codes (field 39) that acknowledge an entry; any other code, or no answer,
	// means retry. Default: 00 plus the codes that say there is nothing (left) to reverse: 12 invalid
	// related transaction, 25 original not found, 94 duplicate (already reversed).
	AckCodes []string `yaml:"ack_codes"`
	// AdviceAckCodes are the codes that acknowledge an advice (0220/0221). Default: 00 accepted and 94
	// duplicate (the acquirer has it from an earlier send). An acquirer must accept an advice, so any other
	// code (12, 25 included: for an advice they are a refusal, not "nothing to do") is retried and ends in
	// the dead letters for an operator.
	AdviceAckCodes []string `yaml:"advice_ack_codes"`
	// NoRepeatMTI sends repeats with the MTI as queued. By default a repeat of a 0420 goes out as 0421 and
	// of a 0220 as 0221; 0400 has no repeat MTI and is always sent as 0400.
	NoRepeatMTI bool `yaml:"no_repeat_mti"`
	// MaxAttempts moves an entry to the dead letters after this many failed sends (default 100).
	MaxAttempts int `yaml:"max_attempts"`
	// MinBackoff is the wait after the first failed send; it doubles per failure up to MaxBackoff
	// (defaults 1s and 5m).
	MinBackoff time.Duration `yaml:"min_backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// MaxAge raises the alarm for an entry queued longer than this (default 10m).
	MaxAge time.Duration `yaml:"max_age"`
	// DeadOnMaxAge also moves entries older than MaxAge (counted from queuing or the last Retry) to the
	// dead letters.
	DeadOnMaxAge bool `yaml:"dead_on_max_age"`
	// PinAttempts is how many sends go to the original's link before any link of the acquirer may carry the
	// entry. 0 (the default) pins every send, as the router's BeginPinned does; an entry queued without a
	// link may go on any link.
	PinAttempts int `yaml:"pin_attempts"`
	// SendTimeout bounds one send (default 30s).
	SendTimeout time.Duration `yaml:"send_timeout"`
}

// DefaultPolicy returns the defaults.
func DefaultPolicy() Policy {
	return Policy{
		AckCodes:       []string{"00", "12", "25", "94"},
		AdviceAckCodes: []string{"00", "94"},
		MaxAttempts:    100,
		MinBackoff:     time.Second,
		MaxBackoff:     5 * time.Minute,
		MaxAge:         10 * time.Minute,
		SendTimeout:    30 * time.Second,
	}
}

func (p Policy) withDefaults() Policy {
	d := DefaultPolicy()
	if len(p.AckCodes) == 0 {
		p.AckCodes = d.AckCodes
	}
	if len(p.AdviceAckCodes) == 0 {
		p.AdviceAckCodes = d.AdviceAckCodes
	}
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.MinBackoff <= 0 {
		p.MinBackoff = d.MinBackoff
	}
	if p.MaxBackoff < p.MinBackoff {
		p.MaxBackoff = max(d.MaxBackoff, p.MinBackoff)
	}
	if p.MaxAge <= 0 {
		p.MaxAge = d.MaxAge
	}
	if p.SendTimeout <= 0 {
		p.SendTimeout = d.SendTimeout
	}
	return p
}

// acknowledges says whether a response code settles an entry of a kind.
func (p *Policy) acknowledges(kind Kind, rc string) bool {
	if kind == KindAdvice {
		return slices.Contains(p.AdviceAckCodes, rc)
	}
	return slices.Contains(p.AckCodes, rc)
}

// backoff is the wait after the n-th failed send: MinBackoff doubled n-1 times, at most MaxBackoff.
func (p *Policy) backoff(n int) time.Duration {
	d := p.MinBackoff
	for i := 1; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, p.MaxBackoff)
}
