package limits

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the limiter's Prometheus series. Counters that the hot path touches are resolved once here, so
// counting a decision is an atomic add without label lookups or allocations.
type metrics struct {
	allowed      prometheus.Counter
	refused      [numScopes][numKinds][numReasons]prometheus.Counter
	redisUp      prometheus.Gauge
	redisErrors  prometheus.Counter
	outageChecks [2]prometheus.Counter // by Policy
	collectors   []prometheus.Collector
}

func newMetrics(reg prometheus.Registerer, keys func() float64) (*metrics, error) {
	m := &metrics{}
	allowed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "railswitch_limits_allowed_total",
		Help: "Requests every applicable limit admitted.",
	})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "railswitch_limits_refused_total",
		Help: "Requests refused, by the scope and kind of the refusing limit and the reason (exceeded, redis_down).",
	}, []string{"scope", "kind", "reason"})
	m.redisUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "railswitch_limits_redis_up",
		Help: "1 while the cluster-wide limits reach Redis, 0 while the outage policy applies.",
	})
	m.redisErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "railswitch_limits_redis_errors_total",
		Help: "Redis calls of the limiter that failed (timeouts, refused connections, script errors).",
	})
	outage := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "railswitch_limits_outage_checks_total",
		Help: "Cluster-wide limit checks decided by the outage policy (local or refuse) because Redis was unreachable.",
	}, []string{"policy"})
	localKeys := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "railswitch_limits_local_keys",
		Help: "Keys (terminal, merchant, ...) with node-local limiter state; idle keys are dropped.",
	}, keys)
	m.allowed = allowed
	for s := range numScopes {
		for k := range numKinds {
			for r := range numReasons {
				m.refused[s][k][r] = refused.WithLabelValues(s.String(), k.String(), r.String())
			}
		}
	}
	for _, p := range []Policy{PolicyLocal, PolicyRefuse} {
		m.outageChecks[p] = outage.WithLabelValues(p.String())
	}
	m.redisUp.Set(1)
	m.collectors = []prometheus.Collector{allowed, refused, m.redisUp, m.redisErrors, outage, localKeys}
	if reg != nil {
		for i, c := range m.collectors {
			if err := reg.Register(c); err != nil {
				for _, done := range m.collectors[:i] {
					reg.Unregister(done)
				}
				return nil, err
			}
		}
	}
	return m, nil
}
