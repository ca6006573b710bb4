package flow

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/specs"
)

// value reads a counter, gauge or histogram (its sample count) child.
func value(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	t.Fatalf("unexpected metric %v", &m)
	return 0
}

// bankResponse is an acquirer response with response code rc (empty: no field 39).
func bankResponse(t testing.TB, rc string) *codec.Message {
	t.Helper()
	s, err := specs.Get("iso87-ascii")
	if err != nil {
		t.Fatal(err)
	}
	m := codec.NewMessage(s)
	_ = m.SetMTI("0210")
	if rc != "" {
		if err := m.SetString(39, rc); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func TestMetricsRecordChannelRequestsAndAcquirerCallsUnderTheirLabels(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	acqs := map[string]*Acquirer{"bank-a": {Name: "bank-a"}, "bank-b": {Name: "bank-b"}}
	pos, rail := m.forFlow("pos", acqs), m.forFlow("rail", acqs)
	if pos.acquirers["bank-a"] != rail.acquirers["bank-a"] {
		t.Fatal("flows of two channels must share an acquirer's series")
	}

	start := pos.begin()
	if got := value(t, m.chInFlight.WithLabelValues("pos")); got != 1 {
		t.Fatalf("in flight during a request = %v, want 1", got)
	}
	call := pos.bank("bank-a")
	call.answered(bankResponse(t, "00"))
	rail.bank("bank-a").answered(bankResponse(t, "51"))
	rail.bank("bank-b").timedOut()
	rail.bank("bank-b").answered(bankResponse(t, "")) // no field 39
	rail.bankMACFailed("bank-b")
	pos.bank("not-configured").answered(bankResponse(t, "00")) // not counted anywhere
	pos.reply("00")
	pos.end(start)
	rail.reply("A0")

	tests := []struct {
		name   string
		metric prometheus.Metric
		want   float64
	}{
		{"pos in flight after the request", m.chInFlight.WithLabelValues("pos"), 0},
		{"pos latency samples", m.chLatency.WithLabelValues("pos").(prometheus.Metric), 1},
		{"rail latency samples (never begun)", m.chLatency.WithLabelValues("rail").(prometheus.Metric), 0},
		{"pos replies 00", m.chReplies.WithLabelValues("pos", "00"), 1},
		{"rail replies A0", m.chReplies.WithLabelValues("rail", "A0"), 1},
		{"rail replies 00", m.chReplies.WithLabelValues("rail", "00"), 0},
		{"bank-a requests, both channels", m.acqRequests.WithLabelValues("bank-a"), 2},
		{"bank-a responses 00", m.acqResponses.WithLabelValues("bank-a", "00"), 1},
		{"bank-a responses 51", m.acqResponses.WithLabelValues("bank-a", "51"), 1},
		{"bank-a latency samples", m.acqLatency.WithLabelValues("bank-a").(prometheus.Metric), 2},
		{"bank-b requests, timeout included", m.acqRequests.WithLabelValues("bank-b"), 2},
		{"bank-b timeouts", m.acqTimeouts.WithLabelValues("bank-b"), 1},
		{"bank-b responses without a code", m.acqResponses.WithLabelValues("bank-b", ""), 1},
		{"bank-b latency samples, timeout excluded", m.acqLatency.WithLabelValues("bank-b").(prometheus.Metric), 1},
		{"bank-b MAC failures", m.acqMACFailures.WithLabelValues("bank-b"), 1},
	}
	for _, tc := range tests {
		if got := value(t, tc.metric); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, got, tc.want)
		}
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("registry does not gather: %v", err)
	}
}

func TestNewMetricsRefusesASecondSetOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Fatal("a second set of flow metrics on the same registry must fail")
	}
}

func TestCodeCountersFoldCodesBeyondTheLimitIntoOther(t *testing.T) {
	m, _ := NewMetrics(nil)
	c := &codeCounters{vec: m.acqResponses, label: "bank-a"}
	for i := range maxCodes + 10 {
		c.getBytes(fmt.Appendf(nil, "%03d", i)).Inc()
	}
	if n := len(*c.codes.Load()); n != maxCodes+1 {
		t.Fatalf("%d codes kept apart, want %d and other", n, maxCodes)
	}
	if got := value(t, m.acqResponses.WithLabelValues("bank-a", "other")); got != 10 {
		t.Fatalf("other = %v, want 10", got)
	}
	if got := value(t, c.get("000")); got != 1 {
		t.Fatalf("a code seen before the limit keeps its own counter: %v", got)
	}
}

func TestNilMetricsStillRecord(t *testing.T) {
	var m *Metrics
	cm := m.forFlow("pos", map[string]*Acquirer{"bank-a": {}})
	cm.end(cm.begin())
	cm.reply("00")
	cm.bank("bank-a").answered(bankResponse(t, "00"))
	if got := value(t, cm.replies.get("00")); got != 1 {
		t.Fatalf("replies 00 = %v, want 1", got)
	}
}

// recordRequest is the metrics' work for one purchase: a request in flight, one bank call answered 00 and the
// reply 00.
func recordRequest(cm *channelMetrics, resp *codec.Message) {
	start := cm.begin()
	cm.bank("bank-a").answered(resp)
	cm.reply(RCApproved)
	cm.end(start)
}

func TestRecordingARequestDoesNotAllocate(t *testing.T) {
	m, _ := NewMetrics(prometheus.NewRegistry())
	cm := m.forFlow("pos", map[string]*Acquirer{"bank-a": {}})
	resp := bankResponse(t, "00")
	recordRequest(cm, resp) // first use of a code builds its counter
	if n := testing.AllocsPerRun(1000, func() { recordRequest(cm, resp) }); n != 0 {
		t.Fatalf("%v allocations per request, want 0", n)
	}
}

func BenchmarkMetricsPerRequest(b *testing.B) {
	m, _ := NewMetrics(prometheus.NewRegistry())
	cm := m.forFlow("pos", map[string]*Acquirer{"bank-a": {}})
	resp := bankResponse(b, "00")
	recordRequest(cm, resp)
	b.ReportAllocs()
	for b.Loop() {
		recordRequest(cm, resp)
	}
}

// BenchmarkMetricsPerRequestParallel records from every core at once, as the flows' goroutines do.
func BenchmarkMetricsPerRequestParallel(b *testing.B) {
	m, _ := NewMetrics(prometheus.NewRegistry())
	cm := m.forFlow("pos", map[string]*Acquirer{"bank-a": {}})
	resp := bankResponse(b, "00")
	recordRequest(cm, resp)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			recordRequest(cm, resp)
		}
	})
}
