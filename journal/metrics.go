package journal

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// registerAll registers cs on reg (a nil reg registers nothing), undoing the part done when one fails.
func registerAll(reg prometheus.Registerer, what string, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("journal: metrics of %s: %w", what, err)
		}
	}
	return nil
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (j *Journal) registerMetrics() error {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	return registerAll(j.opts.Registerer, "the journal",
		j.batchSizes,
		gauge("railswitch_journal_last_sequence", "Sequence number of the last durable record.",
			func() float64 { return float64(j.LastSeq()) }),
		gauge("railswitch_journal_unshipped_bytes", "Bytes of records not yet shipped to every sink.",
			func() float64 { return float64(j.Unshipped()) }),
		gauge("railswitch_journal_unshipped_alarm", "1 while unshipped bytes are at or above max_unshipped_bytes.",
			func() float64 { j.mu.Lock(); defer j.mu.Unlock(); return boolGauge(j.alarmOn) }),
		gauge("railswitch_journal_segments", "Segment files on disk.",
			func() float64 { j.mu.Lock(); defer j.mu.Unlock(); return float64(len(j.segs)) }),
		gauge("railswitch_journal_failed", "1 after a write or fsync error stopped the journal.",
			func() float64 { return boolGauge(j.failedFlag.Load()) }),
	)
}

func (s *Shipper) registerMetrics() error {
	labels := prometheus.Labels{"sink": s.name}
	gauge := func(name, help string, f func(Status) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return f(s.Status()) })
	}
	counter := func(name, help string, f func(Status) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return f(s.Status()) })
	}
	return registerAll(s.opts.Registerer, "the shipper of "+s.name,
		gauge("railswitch_journal_shipper_lag_records", "Records journaled but not yet shipped to the sink.",
			func(st Status) float64 { return float64(st.LagRecords) }),
		gauge("railswitch_journal_shipper_lag_bytes", "Bytes journaled but not yet shipped to the sink.",
			func(st Status) float64 { return float64(st.LagBytes) }),
		counter("railswitch_journal_shipper_delivered_records_total", "Records delivered to the sink, redeliveries included.",
			func(st Status) float64 { return float64(st.Delivered) }),
		counter("railswitch_journal_shipper_failures_total", "Failed Deliver calls and checkpoint writes.",
			func(st Status) float64 { return float64(st.Failures) }),
		gauge("railswitch_journal_shipper_last_error_timestamp_seconds", "Unix time of the last failure, 0 if none.",
			func(st Status) float64 { return unixSeconds(st.LastErrorAt) }),
		gauge("railswitch_journal_shipper_retrying_seconds", "How long the current batch has been retried; compare with the retry horizon.",
			func(st Status) float64 {
				if st.RetryingSince.IsZero() {
					return 0
				}
				return s.opts.Now().Sub(st.RetryingSince).Seconds()
			}),
	)
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
