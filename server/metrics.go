package server

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/railswitch/railswitch/channel"
	"github.com/railswitch/railswitch/flow"
	"github.com/railswitch/railswitch/link"
)

// registerMetrics makes the flows' metrics (s.metrics, for flow.Config) and registers them with the
// collectors that read the channels' and links' own counters at scrape time. The collectors read s.channels,
// s.flows and s.pool when scraped, so they may be registered before those are built.
func (s *Switch) registerMetrics() error {
	m, err := flow.NewMetrics(s.reg)
	if err != nil {
		return err
	}
	s.metrics = m
	links := func() []link.Status {
		if s.pool == nil {
			return nil
		}
		return s.pool.Status()
	}
	leaseLost := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "railswitch_node_lease_lost",
		Help: "1 when this node lost its lease on the shared state: another node may own its reversal queue."},
		func() float64 {
			if s.leaseLost.Load() {
				return 1
			}
			return 0
		})
	s.takenOver = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "railswitch_node_taken_over_entries_total",
		Help: "Reversal entries and intents of dead nodes that this node took into its own queue."}, []string{"node", "set"})
	cs := []prometheus.Collector{newChannelCollector(s.channelCounts), newLinkCollector(links), leaseLost, s.takenOver}
	for i, c := range cs {
		if err := s.reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				s.reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}

// channelCounts are the counters of one channel and its flow at one moment.
type channelCounts struct {
	Name    string
	Channel channel.Stats
	// Requests, Malformed, MACFailures and Unknown come from the channel's flow (flow.Stats).
	Requests, Malformed, MACFailures, Unknown uint64
}

// channelCounts reads the counters of every channel; s.channels and s.flows are built in step.
func (s *Switch) channelCounts() []channelCounts {
	out := make([]channelCounts, len(s.channels))
	for i, ch := range s.channels {
		st := s.flows[i].Stats()
		out[i] = channelCounts{Name: ch.Name(), Channel: ch.Stats(), Requests: st.Requests.Load(),
			Malformed: st.Malformed.Load(), MACFailures: st.MACFailures.Load(), Unknown: st.Unknown.Load()}
	}
	return out
}

// channelCollector reports channel and flow counters, which those packages keep as plain atomics, as
// Prometheus series labelled by channel.
type channelCollector struct {
	counts                                          func() []channelCounts
	requests, malformed, macFailures, unknown       *prometheus.Desc
	open, accepted, refused, idleClosed, overloaded *prometheus.Desc
}

func newChannelCollector(counts func() []channelCounts) *channelCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"channel"}, nil)
	}
	return &channelCollector{counts: counts,
		requests: desc("railswitch_channel_requests_total", "Terminal requests received (frames handed to the flow)."),
		malformed: desc("railswitch_channel_malformed_frames_total",
			"Frames that could not be framed (session closed) or decoded (answered 30 or session closed)."),
		macFailures: desc("railswitch_channel_mac_failures_total", "Terminal requests whose MAC did not verify (answered A0)."),
		unknown:     desc("railswitch_channel_unknown_terminals_total", "Requests from terminals not registered on the channel (answered 97)."),
		open:        desc("railswitch_channel_sessions_open", "Terminal connections open now."),
		accepted:    desc("railswitch_channel_sessions_accepted_total", "Terminal connections accepted."),
		refused: desc("railswitch_channel_sessions_refused_total",
			"Terminal connections refused (source not allowed, or the channel at its connection limit)."),
		idleClosed: desc("railswitch_channel_sessions_idle_closed_total",
			"Terminal connections closed for sending nothing within the idle timeout."),
		overloaded: desc("railswitch_channel_overloaded_frames_total",
			"Frames received while the channel had more than its maximum of requests in flight."),
	}
}

// Describe implements prometheus.Collector.
func (c *channelCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.requests, c.malformed, c.macFailures, c.unknown, c.open, c.accepted,
		c.refused, c.idleClosed, c.overloaded} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *channelCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, name string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), name)
	}
	for _, n := range c.counts() {
		counter(c.requests, n.Requests, n.Name)
		counter(c.malformed, n.Malformed+n.Channel.Malformed, n.Name)
		counter(c.macFailures, n.MACFailures, n.Name)
		counter(c.unknown, n.Unknown, n.Name)
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(n.Channel.Open), n.Name)
		counter(c.accepted, n.Channel.Accepted, n.Name)
		counter(c.refused, n.Channel.Refused, n.Name)
		counter(c.idleClosed, n.Channel.IdleClosed, n.Name)
		counter(c.overloaded, n.Channel.Overloaded, n.Name)
	}
}

// linkCollector reports the state and requests in flight of every bank link.
type linkCollector struct {
	status          func() []link.Status
	state, inFlight *prometheus.Desc
}

func newLinkCollector(status func() []link.Status) *linkCollector {
	labels := []string{"acquirer", "endpoint", "conn"}
	return &linkCollector{status: status,
		state: prometheus.NewDesc("railswitch_link_state",
			"State of a bank link: 0 down, 1 connecting, 2 signing-on, 3 ready (signed on, carries requests), 4 draining.",
			labels, nil),
		inFlight: prometheus.NewDesc("railswitch_link_in_flight", "Requests on a bank link awaiting their response.",
			labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *linkCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.inFlight
}

// Collect implements prometheus.Collector.
func (c *linkCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.status() {
		conn := strconv.Itoa(st.ID.Conn)
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, float64(st.State), st.ID.Acquirer, st.ID.Endpoint, conn)
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(st.InFlight), st.ID.Acquirer, st.ID.Endpoint, conn)
	}
}
