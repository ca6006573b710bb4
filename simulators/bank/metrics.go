package bank

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the simulator's Prometheus metrics, in a registry of its own with the process collector, so
// a load test can read process_cpu_seconds_total.
type metrics struct {
	reg       *prometheus.Registry
	requests  counterSet
	responses counterSet
	faults    counterSet
	conns     prometheus.Gauge
}

// counterSet is a counter vector with one label whose counters are resolved once: WithLabelValues hashes
// on every call, and the simulator counts every request.
type counterSet struct {
	vec      *prometheus.CounterVec
	resolved sync.Map // label value -> prometheus.Counter
}

func (s *counterSet) inc(label string) {
	if c, ok := s.resolved.Load(label); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := s.vec.WithLabelValues(label)
	s.resolved.Store(label, c)
	c.Inc()
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: counterSet{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bank_sim_requests_total", Help: "Requests received, by MTI (bad: undecodable).",
		}, []string{"mti"})},
		responses: counterSet{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bank_sim_responses_total", Help: "Responses built, by response code (field 39).",
		}, []string{"code"})},
		faults: counterSet{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bank_sim_faults_total", Help: "Faults injected, by kind.",
		}, []string{"kind"})},
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bank_sim_connections", Help: "Open connections.",
		}),
	}
	m.reg.MustRegister(m.requests.vec, m.responses.vec, m.faults.vec, m.conns,
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	return m
}
