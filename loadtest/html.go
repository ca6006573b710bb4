package loadtest

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

// WriteHTML writes a self-contained page (inline SVG, no scripts) with the summary, the latency over time
// and the latency histogram.
func (r *Report) WriteHTML(w io.Writer) error {
	return pageTmpl.Execute(w, struct {
		R         *Report
		OverTime  template.HTML
		Histogram template.HTML
	}{r, overTimeChart(r.Series), histogramChart(r.histBins())})
}

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Load test {{.R.Target}}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:980px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}svg{background:#fafafa;border:1px solid #ddd}
text{font-size:11px}</style></head><body>
<h1>Load test of {{.R.Target}} ({{.R.Spec}})</h1>
<p>{{.R.Mode}} loop, {{.R.Terminals}} terminals{{if .R.TargetRate}}, {{printf "%.0f" .R.TargetRate}}/s asked{{end}},
{{printf "%.2f" .R.DurationS}} s: <b>{{printf "%.0f" .R.TPS}} replies/s</b>.</p>
<table><tr><th>sent</th><th>answered</th><th>timeouts</th><th>errors</th><th>unmatched</th><th>invalid</th><th>sign-on failures</th>
<th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>target CPU us/txn</th><th>load generator CPU us/txn</th></tr>
<tr><td>{{.R.Sent}}</td><td>{{.R.Completed}}</td><td>{{.R.Timeouts}}</td><td>{{.R.Errors}}</td><td>{{.R.Unmatched}}</td><td>{{.R.Invalid}}</td>
<td>{{.R.SignOnFailures}}</td><td>{{printf "%.3f" .R.Latency.P50}}</td><td>{{printf "%.3f" .R.Latency.P90}}</td><td>{{printf "%.3f" .R.Latency.P99}}</td>
<td>{{printf "%.3f" .R.Latency.P999}}</td><td>{{printf "%.3f" .R.Latency.Max}}</td>
<td>{{with .R.CPUPerTxn}}{{printf "%.1f" .}}{{else}}-{{end}}</td><td>{{printf "%.1f" .R.LoadgenCPUPerTxn}}</td></tr></table>
<h2>Responses</h2><table><tr>{{range $c, $n := .R.Responses}}<th>{{$c}}</th>{{end}}</tr>
<tr>{{range $c, $n := .R.Responses}}<td>{{$n}}</td>{{end}}</tr></table>
<h2>Latency over time</h2>{{.OverTime}}
<h2>Latency histogram</h2>{{.Histogram}}
</body></html>
`))

// chart geometry
const (
	chartW, chartH         = 900, 320
	padL, padR, padT, padB = 60, 20, 20, 40
)

// overTimeChart draws p50, p99 and max per interval as lines.
func overTimeChart(series []Point) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">`, chartW, chartH)
	if len(series) == 0 {
		b.WriteString(`<text x="20" y="40">no replies</text></svg>`)
		return template.HTML(b.String())
	}
	tMax, yMax := series[len(series)-1].T, 0.0
	for _, p := range series {
		yMax = math.Max(yMax, p.Max)
	}
	yMax = niceCeil(yMax)
	x := func(t float64) float64 { return padL + t/tMax*(chartW-padL-padR) }
	y := func(v float64) float64 { return chartH - padB - v/yMax*(chartH-padT-padB) }
	axes(&b, func(i int) (float64, string) { v := yMax * float64(i) / 4; return y(v), fmt.Sprintf("%.3g ms", v) },
		func(i int) (float64, string) { t := tMax * float64(i) / 5; return x(t), fmt.Sprintf("%.0f s", t) })
	for _, l := range []struct {
		name, color string
		v           func(Point) float64
	}{{"max", "#d62728", func(p Point) float64 { return p.Max }}, {"p99", "#ff7f0e", func(p Point) float64 { return p.P99 }},
		{"p50", "#1f77b4", func(p Point) float64 { return p.P50 }}} {
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="`, l.color)
		for _, p := range series {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(p.T), y(l.v(p)))
		}
		b.WriteString(`"/>`)
	}
	fmt.Fprintf(&b, `<text x="%d" y="14" fill="#1f77b4">p50</text><text x="%d" y="14" fill="#ff7f0e">p99</text><text x="%d" y="14" fill="#d62728">max</text></svg>`,
		padL+10, padL+50, padL+90)
	return template.HTML(b.String())
}

// bin is one bar of the histogram: replies with latency in [From, To) ms.
type bin struct {
	From, To float64
	Count    int64
}

// histBins groups the recorded latencies into up to 40 logarithmic bins between the fastest and slowest.
func (r *Report) histBins() []bin {
	h := r.hist
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	lo, hi := math.Max(1, float64(h.Min())), float64(h.Max())+1
	n := 40
	step := math.Pow(hi/lo, 1/float64(n))
	if step <= 1 {
		step, n = 2, 1
	}
	bins := make([]bin, n)
	for i := range bins {
		bins[i].From, bins[i].To = lo*math.Pow(step, float64(i))/1000, lo*math.Pow(step, float64(i+1))/1000
	}
	for _, bar := range h.Distribution() {
		if bar.Count == 0 {
			continue
		}
		i := int(math.Log(math.Max(1, float64(bar.From))/lo) / math.Log(step))
		bins[max(0, min(i, n-1))].Count += bar.Count
	}
	return bins
}

// histogramChart draws the bins as bars on a logarithmic latency axis.
func histogramChart(bins []bin) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">`, chartW, chartH)
	if len(bins) == 0 {
		b.WriteString(`<text x="20" y="40">no replies</text></svg>`)
		return template.HTML(b.String())
	}
	var top int64
	for _, bn := range bins {
		top = max(top, bn.Count)
	}
	yMax := niceCeil(float64(top))
	barW := float64(chartW-padL-padR) / float64(len(bins))
	y := func(v float64) float64 { return chartH - padB - v/yMax*(chartH-padT-padB) }
	axes(&b, func(i int) (float64, string) { v := yMax * float64(i) / 4; return y(v), fmt.Sprintf("%.0f", v) },
		func(i int) (float64, string) {
			j := min(len(bins)-1, i*len(bins)/5)
			return padL + float64(j)*barW, fmt.Sprintf("%.3g ms", bins[j].From)
		})
	for i, bn := range bins {
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#1f77b4"><title>%.3g-%.3g ms: %d</title></rect>`,
			padL+float64(i)*barW, y(float64(bn.Count)), math.Max(1, barW-1), chartH-padB-y(float64(bn.Count)), bn.From, bn.To, bn.Count)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// axes draws the frame with 5 labelled horizontal grid lines (yTick) and 6 labels along the bottom (xTick).
func axes(b *strings.Builder, yTick, xTick func(i int) (float64, string)) {
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, padL, chartH-padB, chartW-padR, chartH-padB)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, padL, padT, padL, chartH-padB)
	for i := 0; i <= 4; i++ {
		yy, label := yTick(i)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`,
			padL, yy, chartW-padR, yy, padL-4, yy+4, template.HTMLEscapeString(label))
	}
	for i := 0; i <= 5; i++ {
		xx, label := xTick(i)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, xx, chartH-padB+16, template.HTMLEscapeString(label))
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}
