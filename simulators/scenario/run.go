package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/simulators/pos"
)

// Options control a run.
type Options struct {
	Target string    // host address, overriding the file's target
	Out    io.Writer // one line per step; nil for none
}

// StepResult is the outcome of one step.
type StepResult struct {
	Name    string
	Txn     string
	Passed  bool
	Failure string // why it failed
	Summary string // what happened: response code, trace, notes
	Elapsed time.Duration
}

// FileResult is the outcome of one scenario file. Err is set when the file could not run at all.
type FileResult struct {
	Name, Path string
	Steps      []StepResult
	Err        error
	Elapsed    time.Duration
}

// Failed counts the failed steps (a file that could not run counts as one).
func (r *FileResult) Failed() int {
	n := 0
	for _, s := range r.Steps {
		if !s.Passed {
			n++
		}
	}
	if r.Err != nil {
		n++
	}
	return n
}

// runner holds the devices of one file and the transactions of its steps.
type runner struct {
	term   *pos.Terminal
	kiosk  *pos.Kiosk
	traces map[string]string // step name -> trace of its approved transaction
}

// Run runs the steps of f in order, each once, and reports every one; a failed step does not stop the
// file, but a step that refers to a failed one fails too.
func Run(ctx context.Context, f *File, opts Options) *FileResult {
	start := time.Now()
	res := &FileResult{Name: f.Name, Path: f.Path}
	defer func() { res.Elapsed = time.Since(start) }()
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	target := opts.Target
	if target == "" {
		target = f.Target
	}
	if target == "" {
		res.Err = errors.New("no target: give --target or target: in the file")
		fmt.Fprintf(out, "ERROR %s: %v\n", f.Name, res.Err)
		return res
	}
	r := &runner{traces: map[string]string{}}
	var err error
	if f.Terminal != nil {
		if r.term, err = pos.New(*f.Terminal, target); err != nil {
			res.Err = fmt.Errorf("terminal: %w", err)
		} else {
			defer r.term.Close()
		}
	}
	if f.Kiosk != nil && res.Err == nil {
		if r.kiosk, err = pos.NewKiosk(*f.Kiosk, target, ""); err != nil {
			res.Err = fmt.Errorf("kiosk: %w", err)
		} else {
			defer r.kiosk.Close()
		}
	}
	if res.Err != nil {
		fmt.Fprintf(out, "ERROR %s: %v\n", f.Name, res.Err)
		return res
	}
	fmt.Fprintf(out, "== %s (%s, %d steps)\n", f.Name, target, len(f.Steps))
	for _, s := range f.Steps {
		sr := r.step(ctx, s)
		res.Steps = append(res.Steps, sr)
		status := "PASS"
		if !sr.Passed {
			status = "FAIL"
		}
		fmt.Fprintf(out, "%s  %-17s %s: %s (%s)\n", status, s.Txn, s.Name, sr.Summary, sr.Elapsed.Round(time.Millisecond))
		if !sr.Passed {
			fmt.Fprintf(out, "      %s\n", sr.Failure)
		}
	}
	fmt.Fprintf(out, "== %s: %d passed, %d failed\n", f.Name, len(res.Steps)-res.Failed(), res.Failed())
	return res
}

// step runs one step and judges it.
func (r *runner) step(ctx context.Context, s Step) StepResult {
	sr := StepResult{Name: s.Name, Txn: s.Txn}
	start := time.Now()
	defer func() { sr.Elapsed = time.Since(start) }()
	txn, _ := pos.ParseTxn(s.Txn) // checked by Parse
	fault, _ := pos.ParseFault(s.Fault)
	var orig string
	if s.Refer != "" {
		if orig = r.traces[s.Refer]; orig == "" {
			sr.Failure = fmt.Sprintf("refers to step %q, which has no approved transaction", s.Refer)
			return sr
		}
	}
	card := pos.Card{PAN: s.PAN, PIN: s.PIN, Entry: pos.Entry(s.Entry), Expiry: s.Expiry}
	var res *pos.Result
	var err error
	if kioskTxns[txn] {
		res, err = r.kiosk.Do(ctx, pos.KioskRequest{Txn: txn, Amount: s.Amount, Card: card, Order: s.Order, Orig: orig, Fault: fault})
	} else {
		res, err = r.term.Do(ctx, pos.Request{Txn: txn, Amount: s.Amount, Card: card, Orig: orig, Fault: fault})
	}
	sr.Summary = summary(res, err)
	if res != nil && res.Approved && res.Trace != "" {
		r.traces[s.Name] = res.Trace
	}
	sr.Failure = judge(s.Expect, res, err)
	sr.Passed = sr.Failure == ""
	return sr
}

// judge returns why the result does not meet the expectation, or "".
func judge(e Expect, res *pos.Result, err error) string {
	var why []string
	if e.NoReply {
		if !errors.Is(err, pos.ErrNoReply) {
			if err != nil {
				return fmt.Sprintf("expected no reply, got error: %v", err)
			}
			return fmt.Sprintf("expected no reply, got rc %q", res.RC)
		}
	} else {
		if err != nil {
			return err.Error()
		}
		if len(res.Problems) > 0 {
			why = append(why, "reply rejected by the terminal: "+pos.FormatProblems(res.Problems))
		}
		want := "00"
		if e.RC != nil {
			want = *e.RC
		}
		if res.RC != want {
			why = append(why, fmt.Sprintf("rc %q, want %q", res.RC, want))
		}
		nums := make([]int, 0, len(e.Fields))
		for n := range e.Fields {
			nums = append(nums, n)
		}
		sort.Ints(nums)
		for _, n := range nums {
			got, ok := "", false
			if res.Reply != nil {
				got, ok = res.Reply.DisplayValue(n, codec.DumpOptions{})
			}
			if !ok {
				why = append(why, fmt.Sprintf("field %d absent, want %q", n, e.Fields[n]))
			} else if got != e.Fields[n] {
				why = append(why, fmt.Sprintf("field %d = %q, want %q", n, got, e.Fields[n]))
			}
		}
	}
	if e.Reversal != nil && res != nil {
		sent := res.Reversal != nil && res.Reversal.Approved
		if sent != *e.Reversal {
			why = append(why, fmt.Sprintf("reversal sent and acknowledged: %v, want %v", sent, *e.Reversal))
		}
	}
	if e.Upload != nil && res != nil && (len(res.Upload) > 0) != *e.Upload {
		why = append(why, fmt.Sprintf("batch uploaded: %v, want %v", len(res.Upload) > 0, *e.Upload))
	}
	return strings.Join(why, "; ")
}

// summary is one readable line about a result.
func summary(res *pos.Result, err error) string {
	var parts []string
	if res != nil {
		if res.Reversal != nil {
			parts = append(parts, fmt.Sprintf("[reversal rc=%s]", res.Reversal.RC))
		}
		if res.Reply != nil {
			parts = append(parts, "rc="+res.RC)
		}
		if res.Trace != "" {
			parts = append(parts, "trace="+res.Trace)
		}
		if len(res.Upload) > 0 {
			parts = append(parts, fmt.Sprintf("upload=%d msgs", len(res.Upload)))
		}
	}
	if errors.Is(err, pos.ErrNoReply) {
		parts = append(parts, "no reply")
	} else if err != nil {
		parts = append(parts, "error")
	}
	return strings.Join(parts, " ")
}
