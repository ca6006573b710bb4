package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is the outcome of a load test; it is written as JSON with --json.
type Report struct {
	Target     string  `json:"target"`
	Spec       string  `json:"spec"`
	Mode       string  `json:"mode"` // "closed" (maximum throughput) or "open" (fixed arrival rate)
	Terminals  int     `json:"terminals"`
	TargetRate float64 `json:"target_rate,omitempty"` // open loop: requests a second asked for
	DurationS  float64 `json:"duration_s"`            // from the first request to the last reply
	TPS        float64 `json:"tps"`                   // replies a second
	Sent       int64   `json:"sent"`
	Completed  int64   `json:"completed"` // replies matched to their request
	// Latency is in milliseconds, from the intended send time in an open loop.
	Latency   Latency          `json:"latency_ms"`
	Responses map[string]int64 `json:"responses"` // replies by response code (field 39; "" when absent)
	Kinds     map[string]int64 `json:"kinds"`     // requests sent by kind
	Timeouts  int64            `json:"timeouts"`  // requests with no reply within the timeout
	// Errors counts failed connections and writes, dropped connections and undecodable frames.
	Errors    int64 `json:"errors"`
	Unmatched int64 `json:"unmatched"` // replies to an earlier request (late or duplicated) that were skipped
	// Invalid counts matched replies that fail the terminal's checks (MTI, MAC or processing code of an
	// approval); they are not in Completed.
	Invalid int64 `json:"invalid"`
	// SignOns and SignOnFailures count terminal-spec sign-ons (at the start and after reconnects); their
	// time is not in the latency.
	SignOns        int64 `json:"sign_ons"`
	SignOnFailures int64 `json:"sign_on_failures"`
	// CPUPerTxn is the target's CPU microseconds per reply, from its process_cpu_seconds_total (null
	// without --metrics).
	CPUPerTxn *float64 `json:"cpu_us_per_txn"`
	// LoadgenCPUPerTxn is the load generator's own CPU microseconds per reply.
	LoadgenCPUPerTxn float64 `json:"loadgen_cpu_us_per_txn"`
	// Series is the latency over time, one point per interval.
	Series []Point `json:"series"`

	hist *hdrhistogram.Histogram
}

// Latency holds latency percentiles in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Point is one interval of the latency-over-time series.
type Point struct {
	T     float64 `json:"t_s"` // end of the interval, seconds from the start
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func newReport(cfg *Config, rec *recorder, elapsed time.Duration) *Report {
	t := rec.totals()
	r := &Report{
		Target: cfg.Target, Spec: cfg.Spec.Name(), Mode: "closed", Terminals: cfg.Terminals,
		DurationS: elapsed.Seconds(), Sent: t.sent, Completed: t.hist.TotalCount(),
		Latency: latencyOf(t.hist), Responses: t.codes, Kinds: map[string]int64{},
		Timeouts: t.timeouts, Errors: t.errors, Unmatched: t.unmatched, Invalid: t.invalid, SignOns: t.signOns,
		SignOnFailures: t.signOnFailures, hist: t.hist,
	}
	if cfg.Rate > 0 {
		r.Mode, r.TargetRate = "open", cfg.Rate
	}
	if elapsed > 0 {
		r.TPS = float64(r.Completed) / elapsed.Seconds()
	}
	for k, n := range t.kinds {
		if n > 0 {
			r.Kinds[Kind(k).String()] = n
		}
	}
	for i, h := range t.series {
		p := Point{T: float64(i+1) * rec.interval.Seconds()}
		if h != nil {
			p.Count, p.P50, p.P99, p.Max = h.TotalCount(), ms(h.ValueAtQuantile(50)), ms(h.ValueAtQuantile(99)), ms(h.Max())
		}
		r.Series = append(r.Series, p)
	}
	return r
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Mean: h.Mean() / 1000,
	}
}

func ms(us int64) float64 { return float64(us) / 1000 }

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes a short human summary.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "target %s (%s), %s loop, %d terminals", r.Target, r.Spec, r.Mode, r.Terminals)
	if r.Mode == "open" {
		fmt.Fprintf(&b, ", %.0f/s asked", r.TargetRate)
	}
	fmt.Fprintf(&b, "\n%.0f replies/s over %.2fs: %d sent, %d answered, %d timeouts, %d errors, %d unmatched, %d invalid\n",
		r.TPS, r.DurationS, r.Sent, r.Completed, r.Timeouts, r.Errors, r.Unmatched, r.Invalid)
	if r.SignOns+r.SignOnFailures > 0 {
		fmt.Fprintf(&b, "sign-ons: %d, failed %d (not in the latency)\n", r.SignOns, r.SignOnFailures)
	}
	l := r.Latency
	fmt.Fprintf(&b, "latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	codes := make([]string, 0, len(r.Responses))
	for c := range r.Responses {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	b.WriteString("responses:")
	for _, c := range codes {
		fmt.Fprintf(&b, " %s=%d", c, r.Responses[c])
	}
	b.WriteString("\n")
	if r.CPUPerTxn != nil {
		fmt.Fprintf(&b, "target CPU %.1f us/txn\n", *r.CPUPerTxn)
	}
	fmt.Fprintf(&b, "load generator CPU %.1f us/txn\n", r.LoadgenCPUPerTxn)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteFile writes to path with write (JSON or HTML).
func WriteFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// scrapeCPU reads process_cpu_seconds_total from a Prometheus text endpoint (0 when url is empty).
func scrapeCPU(ctx context.Context, url string) (float64, error) {
	if url == "" {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics %s: %s", url, resp.Status)
	}
	return parseCPU(resp.Body)
}

// parseCPU finds process_cpu_seconds_total in Prometheus text format.
func parseCPU(r io.Reader) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "process_cpu_seconds_total")
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(fields) == 0 {
			continue
		}
		return strconv.ParseFloat(fields[0], 64)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("metrics: no process_cpu_seconds_total")
}
