package server

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/railswitch/railswitch/channel"
	"github.com/railswitch/railswitch/link"
)

// scrape reads the admin /metrics endpoint into a map from series (name{labels} as exposed) to value.
func scrape(t *testing.T, adminAddr string) map[string]string {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics answered %s", resp.Status)
	}
	series := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.LastIndexByte(line, ' '); i > 0 && !strings.HasPrefix(line, "#") {
			series[line[:i]] = line[i+1:]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return series
}

// TestMetricsCountADemoPurchasePerChannelAcquirerAndLink signs on and buys once through the demo, then scrapes
// /metrics: the pos channel got two requests answered 00, bank-a answered one 00, both latency histograms
// counted them, and bank-a's links are ready (state 3).
func TestMetricsCountADemoPurchasePerChannelAcquirerAndLink(t *testing.T) {
	d := startTestDemo(t)
	tt := dialTerminal(t, d.Channels()[0].Addr(), "22003600", "104512541110001")
	tt.signOn()
	if rep := tt.purchase("6212341234567890", 12345); rep.String(39) != "00" { // UnionPay BIN: bank-a
		t.Fatalf("purchase answered %q", rep.String(39))
	}
	want := map[string]string{
		`railswitch_channel_requests_total{channel="pos"}`:                    "2",
		`railswitch_channel_responses_total{channel="pos",code="00"}`:         "2",
		`railswitch_channel_latency_seconds_count{channel="pos"}`:             "2",
		`railswitch_channel_in_flight{channel="pos"}`:                         "0",
		`railswitch_acquirer_requests_total{acquirer="bank-a"}`:               "1",
		`railswitch_acquirer_responses_total{acquirer="bank-a",code="00"}`:    "1",
		`railswitch_acquirer_latency_seconds_count{acquirer="bank-a"}`:        "1",
		`railswitch_acquirer_timeouts_total{acquirer="bank-a"}`:               "0",
		`railswitch_link_state{acquirer="bank-a",conn="0",endpoint="a1"}`:     "3",
		`railswitch_link_in_flight{acquirer="bank-a",conn="0",endpoint="a1"}`: "0",
		`railswitch_channel_sessions_open{channel="pos"}`:                     "1",
		`railswitch_channel_sessions_accepted_total{channel="pos"}`:           "1",
	}
	// The terminal may read its reply before the flow has recorded it: poll briefly.
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := scrape(t, d.AdminAddr())
		var wrong []string
		for k, v := range want {
			if got[k] != v {
				wrong = append(wrong, k+" = "+got[k]+", want "+v)
			}
		}
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics after a purchase:\n%s", strings.Join(wrong, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// collect registers c on a pedantic registry (which checks descriptors against metrics) and returns its
// series as name{label="value",...} (labels in name order) to value.
func collect(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"=\""+l.GetValue()+"\"")
			}
			key := f.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func TestChannelCollectorReportsChannelAndFlowCounters(t *testing.T) {
	tests := []struct {
		name   string
		counts []channelCounts
		want   map[string]float64
	}{
		{"no channels, no series", nil, map[string]float64{}},
		{"malformed adds framing and decoding failures", []channelCounts{
			{Name: "pos", Channel: channel.Stats{Open: 3, Accepted: 10, Refused: 2, Malformed: 1, IdleClosed: 4, Overloaded: 5},
				Requests: 100, Malformed: 6, MACFailures: 9, Unknown: 8},
		}, map[string]float64{
			`railswitch_channel_requests_total{channel="pos"}`:             100,
			`railswitch_channel_malformed_frames_total{channel="pos"}`:     7,
			`railswitch_channel_mac_failures_total{channel="pos"}`:         9,
			`railswitch_channel_unknown_terminals_total{channel="pos"}`:    8,
			`railswitch_channel_sessions_open{channel="pos"}`:              3,
			`railswitch_channel_sessions_accepted_total{channel="pos"}`:    10,
			`railswitch_channel_sessions_refused_total{channel="pos"}`:     2,
			`railswitch_channel_sessions_idle_closed_total{channel="pos"}`: 4,
			`railswitch_channel_overloaded_frames_total{channel="pos"}`:    5,
		}},
		{"each channel its own series", []channelCounts{
			{Name: "pos", Requests: 1, Channel: channel.Stats{Open: 1}},
			{Name: "kiosk", Requests: 2, Channel: channel.Stats{Open: 2}},
		}, map[string]float64{
			`railswitch_channel_requests_total{channel="pos"}`:   1,
			`railswitch_channel_requests_total{channel="kiosk"}`: 2,
			`railswitch_channel_sessions_open{channel="pos"}`:    1,
			`railswitch_channel_sessions_open{channel="kiosk"}`:  2,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := collect(t, newChannelCollector(func() []channelCounts { return tc.counts }))
			if want := 9 * len(tc.counts); len(got) != want {
				t.Errorf("%d series, want %d (9 per channel)", len(got), want)
			}
			for k, v := range tc.want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
				}
			}
		})
	}
}

func TestLinkCollectorReportsStateAndInFlightPerLink(t *testing.T) {
	status := []link.Status{
		{ID: link.LinkID{Acquirer: "bank-a", Endpoint: "a1", Conn: 0}, State: link.StateReady, InFlight: 2},
		{ID: link.LinkID{Acquirer: "bank-a", Endpoint: "a1", Conn: 1}, State: link.StateDraining},
		{ID: link.LinkID{Acquirer: "bank-b", Endpoint: "b1", Conn: 0}, State: link.StateDown},
	}
	want := map[string]float64{
		`railswitch_link_state{acquirer="bank-a",conn="0",endpoint="a1"}`:     3,
		`railswitch_link_state{acquirer="bank-a",conn="1",endpoint="a1"}`:     4,
		`railswitch_link_state{acquirer="bank-b",conn="0",endpoint="b1"}`:     0,
		`railswitch_link_in_flight{acquirer="bank-a",conn="0",endpoint="a1"}`: 2,
		`railswitch_link_in_flight{acquirer="bank-a",conn="1",endpoint="a1"}`: 0,
		`railswitch_link_in_flight{acquirer="bank-b",conn="0",endpoint="b1"}`: 0,
	}
	got := collect(t, newLinkCollector(func() []link.Status { return status }))
	if len(got) != len(want) {
		t.Errorf("%d series, want %d", len(got), len(want))
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}
