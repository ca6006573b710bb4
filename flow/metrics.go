package flow

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/railswitch/railswitch/codec"
)

// LatencyBuckets are the histogram buckets, in seconds, of the flow's latencies: half a millisecond (a local
// answer) to 30 seconds (beyond any acquirer's timeout).
var LatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Metrics are the Prometheus series the flows of a switch record on the request path: replies by code,
// latency and requests in flight per channel; requests, responses by code, latency, timeouts and MAC failures
// per acquirer. One Metrics serves every flow of a registry (Config.Metrics). Labelled children are resolved
// once per channel, acquirer and response code, so recording a request allocates nothing.
type Metrics struct {
	chReplies, acqResponses                  *prometheus.CounterVec
	chLatency, acqLatency                    *prometheus.HistogramVec
	chInFlight                               *prometheus.GaugeVec
	acqRequests, acqTimeouts, acqMACFailures *prometheus.CounterVec
	duplicates, undelivered                  *prometheus.CounterVec

	mu        sync.Mutex
	acquirers map[string]*acquirerMetrics
}

// NewMetrics makes the flow metrics and registers them on reg (nil: not registered, as in tests).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	histogram := func(name, help, label string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: LatencyBuckets},
			[]string{label})
	}
	m := &Metrics{
		chReplies: counter("railswitch_channel_responses_total",
			"Replies sent to terminals, by channel and response code (field 39).", "channel", "code"),
		chLatency: histogram("railswitch_channel_latency_seconds",
			"Time from a frame handed to the flow to its reply written (or its session closed), by channel.", "channel"),
		chInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "railswitch_channel_in_flight",
			Help: "Terminal requests being handled, by channel."}, []string{"channel"}),
		acqRequests: counter("railswitch_acquirer_requests_total",
			"Requests written to an acquirer's link (answered or timed out).", "acquirer"),
		acqResponses: counter("railswitch_acquirer_responses_total",
			"Acquirer responses matched to their request, by acquirer and the bank's response code (field 39).",
			"acquirer", "code"),
		acqLatency: histogram("railswitch_acquirer_latency_seconds",
			"Time from a request handed to the acquirer's link to its response matched, by acquirer.", "acquirer"),
		acqTimeouts: counter("railswitch_acquirer_timeouts_total",
			"Requests the acquirer did not answer in time (each one queues a reversal).", "acquirer"),
		acqMACFailures: counter("railswitch_acquirer_mac_failures_total",
			"Acquirer responses whose MAC did not verify (answered 96; approvals are reversed).", "acquirer"),
		duplicates: counter("railswitch_duplicates_total",
			"Terminal retransmissions answered by the duplicate check, by channel and outcome: replayed (the stored "+
				"reply sent again) or in_flight (answered 94 while the original was being handled).", "channel", "outcome"),
		undelivered: counter("railswitch_channel_undelivered_approvals_total",
			"Approvals whose reply could not be written to the terminal; each one queues a reversal.", "channel"),
		acquirers: map[string]*acquirerMetrics{},
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.chReplies, m.chLatency, m.chInFlight, m.acqRequests, m.acqResponses,
		m.acqLatency, m.acqTimeouts, m.acqMACFailures, m.duplicates, m.undelivered}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return nil, err
		}
	}
	return m, nil
}

// channelMetrics are one flow's resolved series: its channel's, and those of the acquirers it may send to.
type channelMetrics struct {
	replies   codeCounters
	latency   prometheus.Observer
	inFlight  prometheus.Gauge
	acquirers map[string]*acquirerMetrics // fixed at New: acquirers are not added without a restart
	// dups are the duplicate outcomes (dupReplayed, dupInFlight); undelivered counts approvals not delivered.
	dups        [2]prometheus.Counter
	undelivered prometheus.Counter
}

// Outcomes of the duplicate check, as railswitch_duplicates_total labels them.
const (
	dupReplayed = iota
	dupInFlight
)

// acquirerMetrics are one acquirer's resolved series, shared by the flows of every channel.
type acquirerMetrics struct {
	requests, timeouts, macFailures prometheus.Counter
	responses                       codeCounters
	latency                         prometheus.Observer
}

// forFlow resolves the series of a flow; a nil m makes unregistered ones, so the flow never checks for nil.
func (m *Metrics) forFlow(channel string, acquirers map[string]*Acquirer) *channelMetrics {
	if m == nil {
		m, _ = NewMetrics(nil)
	}
	cm := &channelMetrics{replies: codeCounters{vec: m.chReplies, label: channel},
		latency: m.chLatency.WithLabelValues(channel), inFlight: m.chInFlight.WithLabelValues(channel),
		acquirers: make(map[string]*acquirerMetrics, len(acquirers)),
		dups: [2]prometheus.Counter{m.duplicates.WithLabelValues(channel, "replayed"),
			m.duplicates.WithLabelValues(channel, "in_flight")},
		undelivered: m.undelivered.WithLabelValues(channel)}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range acquirers {
		am := m.acquirers[name]
		if am == nil {
			am = &acquirerMetrics{requests: m.acqRequests.WithLabelValues(name),
				timeouts: m.acqTimeouts.WithLabelValues(name), macFailures: m.acqMACFailures.WithLabelValues(name),
				responses: codeCounters{vec: m.acqResponses, label: name}, latency: m.acqLatency.WithLabelValues(name)}
			m.acquirers[name] = am
		}
		cm.acquirers[name] = am
	}
	return cm
}

// begin counts a request in flight and returns when it started, for end.
func (c *channelMetrics) begin() time.Time {
	c.inFlight.Inc()
	return time.Now()
}

// end records a request handled since start.
func (c *channelMetrics) end(start time.Time) {
	c.latency.Observe(time.Since(start).Seconds())
	c.inFlight.Dec()
}

// duplicate counts a retransmission answered by the duplicate check (dupReplayed or dupInFlight).
func (c *channelMetrics) duplicate(outcome int) { c.dups[outcome].Inc() }

// undeliveredReply counts an approval whose reply could not be written to the terminal.
func (c *channelMetrics) undeliveredReply() { c.undelivered.Inc() }

// reply counts a reply with response code rc.
func (c *channelMetrics) reply(rc string) { c.replies.get(rc).Inc() }

// bankCall is one request to an acquirer, from the moment it is handed to the link.
type bankCall struct {
	m     *acquirerMetrics // nil for an acquirer the flow was not built with (not counted)
	start time.Time
}

// bank starts timing a request to acquirer.
func (c *channelMetrics) bank(acquirer string) bankCall {
	return bankCall{m: c.acquirers[acquirer], start: time.Now()}
}

// answered records resp, counted by the bank's response code (field 39 as received; may be empty).
func (b bankCall) answered(resp *codec.Message) {
	if b.m == nil {
		return
	}
	rc, _ := resp.Value(39)
	b.m.requests.Inc()
	b.m.latency.Observe(time.Since(b.start).Seconds())
	b.m.responses.getBytes(rc).Inc()
}

// timedOut records a request written to the link and not answered in time.
func (b bankCall) timedOut() {
	if b.m == nil {
		return
	}
	b.m.requests.Inc()
	b.m.timeouts.Inc()
}

// bankMACFailed counts a response from acquirer whose MAC did not verify.
func (c *channelMetrics) bankMACFailed(acquirer string) {
	if am := c.acquirers[acquirer]; am != nil {
		am.macFailures.Inc()
	}
}

// maxCodes bounds the codes counted apart for one channel or acquirer (a bank sending garbage in field 39
// must not grow the series without end); further codes count as "other".
const maxCodes = 64

// codeCounters are the counters of one channel or acquirer by response code. Codes are few, so the map is
// copied on a new code and read without a lock; a lookup by string(b) of a []byte does not allocate.
type codeCounters struct {
	vec   *prometheus.CounterVec
	label string // the channel or acquirer
	mu    sync.Mutex
	codes atomic.Pointer[map[string]prometheus.Counter]
}

func (c *codeCounters) get(code string) prometheus.Counter {
	if p := c.codes.Load(); p != nil {
		if ctr, ok := (*p)[code]; ok {
			return ctr
		}
	}
	return c.add(code)
}

func (c *codeCounters) getBytes(code []byte) prometheus.Counter {
	if p := c.codes.Load(); p != nil {
		if ctr, ok := (*p)[string(code)]; ok {
			return ctr
		}
	}
	return c.add(string(code))
}

func (c *codeCounters) add(code string) prometheus.Counter {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := map[string]prometheus.Counter{}
	if p := c.codes.Load(); p != nil {
		old = *p
	}
	if ctr, ok := old[code]; ok {
		return ctr
	}
	if len(old) >= maxCodes {
		code = "other"
		if ctr, ok := old[code]; ok {
			return ctr
		}
	}
	next := make(map[string]prometheus.Counter, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[code] = c.vec.WithLabelValues(c.label, code)
	c.codes.Store(&next)
	return next[code]
}
