package saf

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the queue's Prometheus metrics: counters, and gauges computed from the queue at scrape time.
type metrics struct {
	reg                             prometheus.Registerer
	enqueued, attempts, acked       *prometheus.CounterVec
	dead                            *prometheus.CounterVec
	depth, deadNow, oldest, overAge *prometheus.Desc
	q                               *Queue
}

func newMetrics(q *Queue, reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	gauge := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"acquirer"}, nil)
	}
	m := &metrics{
		reg: reg, q: q,
		enqueued: counter("railswitch_saf_enqueued_total", "Entries queued, by kind.", "acquirer", "kind"),
		attempts: counter("railswitch_saf_attempts_total", "Sends of queued entries.", "acquirer"),
		acked:    counter("railswitch_saf_acknowledged_total", "Entries the acquirer acknowledged.", "acquirer"),
		dead:     counter("railswitch_saf_dead_lettered_total", "Entries moved to the dead letters.", "acquirer"),
		depth:    gauge("railswitch_saf_depth", "Entries waiting to be sent."),
		deadNow:  gauge("railswitch_saf_dead_letters", "Entries in the dead letters, awaiting an operator."),
		oldest:   gauge("railswitch_saf_oldest_age_seconds", "Age of the oldest entry waiting to be sent."),
		overAge: gauge("railswitch_saf_over_max_age",
			"Entries waiting longer than the acquirer's max age (the alarm: above 0 needs an operator)."),
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.enqueued, m.attempts, m.acked, m.dead, m}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("saf: metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range []prometheus.Collector{m.enqueued, m.attempts, m.acked, m.dead, m} {
		m.reg.Unregister(c)
	}
}

// Describe implements prometheus.Collector for the gauges.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.depth, m.deadNow, m.oldest, m.overAge} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the gauges, per acquirer, as the queue is now.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, s := range m.q.Stats() {
		for d, v := range map[*prometheus.Desc]float64{
			m.depth: float64(s.Depth), m.deadNow: float64(s.Dead), m.oldest: s.OldestAge.Seconds(),
			m.overAge: float64(s.OverMaxAge),
		} {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, s.Acquirer)
		}
	}
}
