package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/simulators/pos"
	"github.com/railswitch/railswitch/simulators/scenario"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The POS and kiosk simulators and the scenario runner (docs/simulators.md). The constructors are added
// under `switch sim` by the file that owns that command.

// cardFlags are the card and transaction flags shared by sim pos and sim kiosk.
type cardFlags struct {
	amount             int64
	pan, pin, entry    string
	expiry, orig       string
	fault              string
	jsonOut, verbose   bool
	timeout            time.Duration
	bureau, station    string
	business, order    string
	window             string
	target, tid, mid   string
	state              string
	interactive        bool
	spec, tmk, layout  string
	tpdu, header       string
	bdk, ksn           string
	encryptTrack       bool
	mak, pik, operator string
}

func (c *cardFlags) addCard(fl *pflag.FlagSet, defaultTID string) {
	fl.Int64Var(&c.amount, "amount", 0, "amount in fen (minor units)")
	fl.StringVar(&c.pan, "pan", "", "card number (test PANs only)")
	fl.StringVar(&c.pin, "pin", "", "PIN, 4-12 digits (none: no PIN entered)")
	fl.StringVar(&c.entry, "entry", "swipe", "card entry: swipe, chip (POS only) or manual")
	fl.StringVar(&c.expiry, "expiry", "", "card expiry YYMM (default 3012)")
	fl.StringVar(&c.orig, "orig", "", "trace number of the original (default: the latest that fits)")
	fl.StringVar(&c.fault, "fault", "", "terminal-side fault: drop-reply, bad-mac, wrong-totals (settle)")
	fl.BoolVar(&c.jsonOut, "json", false, "print the result as JSON")
	fl.BoolVar(&c.verbose, "verbose", false, "also print the request")
	fl.DurationVar(&c.timeout, "timeout", pos.DefaultTimeout, "reply timeout")
	fl.StringVar(&c.target, "target", "127.0.0.1:9000", "host address (the switch's terminal listener)")
	fl.StringVar(&c.tid, "tid", defaultTID, "terminal id (field 41, 8 characters)")
	fl.StringVar(&c.mid, "mid", "898110000000001", "merchant id (field 42, 15 characters)")
	fl.StringVar(&c.state, "state", "", "state file (mode 0600) so runs chain; none: nothing is remembered")
	fl.StringVar(&c.bureau, "bureau", "", "railway data (field 57): bureau code 01-18")
	fl.StringVar(&c.station, "station", "", "railway data: station code")
	fl.StringVar(&c.business, "business", "1", "railway data: business type (1 passenger, 2 freight, 9 other)")
	fl.StringVar(&c.order, "order", "", "railway data: order or waybill number")
	fl.StringVar(&c.window, "window", "", "railway data: window or device id")
}

func (c *cardFlags) card() pos.Card {
	return pos.Card{PAN: c.pan, PIN: c.pin, Entry: pos.Entry(c.entry), Expiry: c.expiry}
}

func (c *cardFlags) railway() pos.Railway {
	return pos.Railway{Bureau: c.bureau, Station: c.station, Business: c.business, Order: c.order, Window: c.window}
}

// keyFlag returns a test key from its flag or, when the flag is empty, from the environment.
func keyFlag(v, env string) string {
	if v == "" {
		return os.Getenv(env)
	}
	return v
}

func newSimPOSCmd() *cobra.Command {
	var c cardFlags
	cmd := &cobra.Command{
		Use:   "pos [flags] TXN",
		Short: "Run one POS terminal transaction (cup-pos, rail-pos), or an interactive session",
		Long: `Run one transaction of a simulated UnionPay POS terminal against ADDR and print the reply.
TXN is one of: ` + txnList() + `.
Chain runs with --state FILE: sign on once, then purchase, void, settle... Test keys only: the TMK comes from
--tmk or SIM_POS_TMK (hex). Exit status: 0 approved, 2 declined, 1 no reply, a rejected reply or an error.
With --interactive it reads commands such as "purchase 100", "void", "settle", "state", "quit" from stdin.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if c.interactive {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := pos.Config{Spec: c.spec, TerminalID: c.tid, MerchantID: c.mid, TMK: keyFlag(c.tmk, "SIM_POS_TMK"),
				TPDU: c.tpdu, Header: c.header, KeyLayout: c.layout, EncryptTrack: c.encryptTrack, Operator: c.operator,
				Timeout: c.timeout}
			if c.bureau != "" {
				rw := c.railway()
				cfg.Railway = &rw
			}
			if c.bdk != "" || c.ksn != "" {
				cfg.DUKPT = &pos.DUKPT{BDK: keyFlag(c.bdk, "SIM_POS_BDK"), KSN: c.ksn}
			}
			var opts []pos.Option
			if c.state != "" {
				opts = append(opts, pos.WithStateFile(c.state))
			}
			term, err := pos.New(cfg, c.target, opts...)
			if err != nil {
				return err
			}
			defer term.Close()
			if c.interactive {
				return posSession(cmd.Context(), term, &c, cmd.InOrStdin(), cmd.OutOrStdout())
			}
			txn, err := pos.ParseTxn(args[0])
			if err != nil {
				return err
			}
			fault, err := pos.ParseFault(c.fault)
			if err != nil {
				return err
			}
			res, err := term.Do(cmd.Context(), pos.Request{Txn: txn, Amount: c.amount, Card: c.card(), Orig: c.orig, Fault: fault})
			return report(cmd.OutOrStdout(), &c, res, err)
		},
	}
	fl := cmd.Flags()
	c.addCard(fl, "10000001")
	fl.StringVar(&c.spec, "spec", "cup-pos", "terminal spec: cup-pos or rail-pos (rail-pos needs --bureau, --station, --order, --window)")
	fl.StringVar(&c.tmk, "tmk", "", "terminal master key, hex (test key; default $SIM_POS_TMK)")
	fl.StringVar(&c.layout, "key-layout", pos.DefaultKeyLayout, "sign-on 60.3: 001 single DES, 003 double-length, 004 with TDK")
	fl.BoolVar(&c.encryptTrack, "encrypt-track", false, "encrypt track 2 under the TDK (needs --key-layout 004)")
	fl.StringVar(&c.tpdu, "tpdu", pos.DefaultTPDU, "TPDU, 10 hex digits")
	fl.StringVar(&c.header, "header", pos.DefaultHeader, "message header, 12 hex digits")
	fl.StringVar(&c.operator, "operator", pos.DefaultOperator, "operator code (63.1 of sign-on and settlement)")
	fl.StringVar(&c.bdk, "bdk", "", "DUKPT: encrypt PINs under TDES DUKPT with this BDK, hex (default $SIM_POS_BDK when --ksn is set)")
	fl.StringVar(&c.ksn, "ksn", "", "DUKPT: the device's initial key serial number, 20 hex digits")
	fl.BoolVarP(&c.interactive, "interactive", "i", false, "read transactions from stdin")
	return cmd
}

func txnList() string {
	var s []string
	for _, t := range pos.Txns() {
		s = append(s, string(t))
	}
	return strings.Join(s, ", ")
}

// posSession is the interactive mode: one transaction per line, with the flags' card as the default.
func posSession(ctx context.Context, term *pos.Terminal, c *cardFlags, in io.Reader, out io.Writer) error {
	fmt.Fprintf(out, "POS terminal %s at %s. Type: TXN [AMOUNT] [pan=.. pin=.. entry=.. expiry=.. orig=.. fault=..],\n"+
		"state, help or quit. Transactions: %s.\n", c.tid, c.target, txnList())
	sc := bufio.NewScanner(in)
	for {
		fmt.Fprint(out, "pos> ")
		if !sc.Scan() {
			fmt.Fprintln(out)
			return sc.Err()
		}
		words := strings.Fields(sc.Text())
		if len(words) == 0 {
			continue
		}
		switch words[0] {
		case "quit", "exit":
			return nil
		case "help":
			fmt.Fprintf(out, "transactions: %s\nexamples: purchase 100 | purchase 2500 entry=chip pin=123456 | void | refund 50 orig=000012 | settle\n", txnList())
			continue
		case "state":
			printState(out, term)
			continue
		}
		req, err := parseLine(words, c)
		if err != nil {
			fmt.Fprintln(out, "error:", err)
			continue
		}
		res, err := term.Do(ctx, req)
		if rerr := report(out, c, res, err); rerr != nil {
			var ee *exitError
			if !errors.As(rerr, &ee) || ee.code != 2 {
				fmt.Fprintln(out, "error:", rerr)
			}
		}
	}
}

// parseLine reads "TXN [AMOUNT] [key=value...]".
func parseLine(words []string, c *cardFlags) (pos.Request, error) {
	txn, err := pos.ParseTxn(words[0])
	if err != nil {
		return pos.Request{}, err
	}
	req := pos.Request{Txn: txn, Card: c.card()}
	if txn == pos.Void || txn == pos.PreAuthVoid || txn == pos.CompletionVoid || txn == pos.Completion ||
		txn == pos.CompletionAdvice || txn == pos.Refund {
		req.Card = pos.Card{PIN: c.pin} // follow-ups use the original's card unless pan= is given
	}
	for _, w := range words[1:] {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			if req.Amount, err = strconv.ParseInt(w, 10, 64); err != nil {
				return req, fmt.Errorf("%q is neither an amount nor key=value", w)
			}
			continue
		}
		switch k {
		case "amount":
			if req.Amount, err = strconv.ParseInt(v, 10, 64); err != nil {
				return req, fmt.Errorf("amount %q", v)
			}
		case "pan":
			req.Card.PAN = v
		case "pin":
			req.Card.PIN = v
		case "entry":
			req.Card.Entry = pos.Entry(v)
		case "expiry":
			req.Card.Expiry = v
		case "orig":
			req.Orig = v
		case "fault":
			if req.Fault, err = pos.ParseFault(v); err != nil {
				return req, err
			}
		default:
			return req, fmt.Errorf("unknown key %q", k)
		}
	}
	return req, nil
}

func printState(out io.Writer, term *pos.Terminal) {
	st := term.State()
	tot := term.Totals()
	fmt.Fprintf(out, "signed on %v, batch %s, last trace %06d\n", st.SignedOn, st.Batch, st.Trace)
	if st.Reversal != nil {
		fmt.Fprintf(out, "stored reversal: %s trace %s (39=%s)\n", st.Reversal.Txn, st.Reversal.Trace, st.Reversal.Reason)
	}
	for _, r := range st.Records {
		flag := ""
		if r.Voided {
			flag = " voided"
		}
		fmt.Fprintf(out, "  %s %-17s %10d %s rrn %s auth %s%s\n", r.Trace, r.Txn, r.Amount, r.PANMasked, r.RRN, r.Auth, flag)
	}
	fmt.Fprintf(out, "totals: debit %d (%d transactions), credit %d (%d)\n", tot.DebitAmount, tot.DebitCount, tot.CreditAmount, tot.CreditCount)
}

// resultJSON is the --json form of a result; card data is masked as in dumps.
type resultJSON struct {
	Txn       string          `json:"txn"`
	Trace     string          `json:"trace,omitempty"`
	RC        string          `json:"rc,omitempty"`
	Approved  bool            `json:"approved"`
	Error     string          `json:"error,omitempty"`
	Problems  []string        `json:"problems,omitempty"`
	Notes     []string        `json:"notes,omitempty"`
	ElapsedMS float64         `json:"elapsed_ms"`
	Request   json.RawMessage `json:"request,omitempty"`
	Reply     json.RawMessage `json:"reply,omitempty"`
	Reversal  *resultJSON     `json:"reversal,omitempty"`
	Upload    []*resultJSON   `json:"upload,omitempty"`
}

func toJSON(r *pos.Result) *resultJSON {
	if r == nil {
		return nil
	}
	j := &resultJSON{Txn: string(r.Txn), Trace: r.Trace, RC: r.RC, Approved: r.Approved, Problems: r.Problems,
		Notes: r.Notes, ElapsedMS: float64(r.Elapsed.Microseconds()) / 1000, Reversal: toJSON(r.Reversal)}
	if r.Request != nil {
		j.Request = r.Request.AppendJSON(nil, codec.DumpOptions{})
	}
	if r.Reply != nil {
		j.Reply = r.Reply.AppendJSON(nil, codec.DumpOptions{})
	}
	for _, u := range r.Upload {
		j.Upload = append(j.Upload, toJSON(u))
	}
	return j
}

// report prints a result and turns it into the exit status: nil approved, 2 declined, 1 otherwise.
func report(out io.Writer, c *cardFlags, res *pos.Result, err error) error {
	if c.jsonOut {
		j := toJSON(res)
		if j == nil {
			j = &resultJSON{}
		}
		if err != nil {
			j.Error = err.Error()
		}
		b, _ := json.MarshalIndent(j, "", "  ")
		fmt.Fprintln(out, string(b))
	} else if res != nil {
		printResult(out, res, c.verbose, "")
	}
	switch {
	case err != nil:
		return &exitError{code: 1, err: err}
	case len(res.Problems) > 0:
		return &exitError{code: 1, err: fmt.Errorf("reply rejected: %s", pos.FormatProblems(res.Problems))}
	case !res.Approved:
		return &exitError{code: 2, err: fmt.Errorf("%s declined: response code %s", res.Txn, res.RC)}
	}
	return nil
}

func printResult(out io.Writer, r *pos.Result, verbose bool, indent string) {
	if r.Reversal != nil {
		printResult(out, r.Reversal, verbose, indent)
	}
	if r.Request == nil {
		return // stopped before sending: the error says why
	}
	status := "no reply"
	switch {
	case r.Reply == nil:
	case r.Approved:
		status = "approved"
	case len(r.Problems) > 0:
		status = "REJECTED by the terminal"
	default:
		status = "declined"
	}
	fmt.Fprintf(out, "%s%s trace %s: rc %s %s (%s)\n", indent, r.Txn, r.Trace, orDash(r.RC), status, r.Elapsed.Round(time.Millisecond))
	for _, p := range r.Problems {
		fmt.Fprintf(out, "%s  problem: %s\n", indent, p)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(out, "%s  %s\n", indent, n)
	}
	if verbose && r.Request != nil {
		fmt.Fprintf(out, "%s  request:\n", indent)
		r.Request.Dump(prefixWriter{out, indent + "    "}, codec.DumpOptions{})
	}
	if r.Reply != nil {
		fmt.Fprintf(out, "%s  reply:\n", indent)
		r.Reply.Dump(prefixWriter{out, indent + "    "}, codec.DumpOptions{})
	}
	for _, u := range r.Upload {
		printResult(out, u, verbose, indent+"  ")
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// prefixWriter indents every line written through it (dumps are written in one call).
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	lines := strings.SplitAfter(string(b), "\n")
	var sb strings.Builder
	for _, l := range lines {
		if l != "" {
			sb.WriteString(p.prefix + l)
		}
	}
	if _, err := io.WriteString(p.w, sb.String()); err != nil {
		return 0, err
	}
	return len(b), nil
}

func newSimKioskCmd() *cobra.Command {
	var c cardFlags
	cmd := &cobra.Command{
		Use:   "kiosk [flags] purchase|refund",
		Short: "Run one ticket kiosk transaction (spec kiosk): a ticket purchase or refund",
		Long: `Run one transaction of a simulated self-service ticket kiosk against ADDR: purchase (kiosk-purchase) or
refund (kiosk-refund, of the latest purchase or --orig TRACE; the card is presented again). Railway data goes
in field 57. Test keys only: --mak (X9.19, 32 hex digits) and --pik (hex), or SIM_KIOSK_MAK and SIM_KIOSK_PIK.
Keep --state FILE to refund a purchase of an earlier run. Exit status as for sim pos.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			txn := pos.Txn("kiosk-" + strings.TrimPrefix(args[0], "kiosk-"))
			if txn != pos.KioskPurchase && txn != pos.KioskRefund {
				return fmt.Errorf("kiosk transaction %q: want purchase or refund", args[0])
			}
			fault, err := pos.ParseFault(c.fault)
			if err != nil {
				return err
			}
			cfg := pos.KioskConfig{Spec: c.spec, TerminalID: c.tid, MerchantID: c.mid, MAK: keyFlag(c.mak, "SIM_KIOSK_MAK"),
				PIK: keyFlag(c.pik, "SIM_KIOSK_PIK"), Railway: c.railway(), Timeout: c.timeout}
			k, err := pos.NewKiosk(cfg, c.target, c.state)
			if err != nil {
				return err
			}
			defer k.Close()
			res, err := k.Do(cmd.Context(), pos.KioskRequest{Txn: txn, Amount: c.amount, Card: c.card(), Order: c.order,
				Orig: c.orig, Fault: fault})
			return report(cmd.OutOrStdout(), &c, res, err)
		},
	}
	fl := cmd.Flags()
	c.addCard(fl, "20000001")
	fl.StringVar(&c.spec, "spec", "kiosk", "kiosk spec")
	fl.StringVar(&c.mak, "mak", "", "MAC key for ANSI X9.19, 32 hex digits (test key; default $SIM_KIOSK_MAK)")
	fl.StringVar(&c.pik, "pik", "", "PIN key, hex (test key; default $SIM_KIOSK_PIK)")
	return cmd
}

func newSimRunCmd() *cobra.Command {
	var target, junit string
	cmd := &cobra.Command{
		Use:   "run FILE... [--target ADDR] [--junit FILE]",
		Short: "Run scenario files of terminal steps and report pass or fail per step",
		Long: `Run YAML scenario files (docs/simulators.md; a suite ships in simulators/scenarios/) against ADDR, one
file after the other, printing PASS or FAIL per step. --junit writes JUnit XML for CI. Exit status 1 when any
step failed or a file could not run.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			var results []*scenario.FileResult
			failed := 0
			for _, path := range args {
				f, err := scenario.Load(path)
				var r *scenario.FileResult
				if err != nil {
					r = &scenario.FileResult{Name: path, Path: path, Err: err}
					fmt.Fprintf(out, "ERROR %v\n", err)
				} else {
					r = scenario.Run(cmd.Context(), f, scenario.Options{Target: target, Out: out})
				}
				failed += r.Failed()
				results = append(results, r)
			}
			if junit != "" {
				fh, err := os.Create(junit)
				if err != nil {
					return err
				}
				werr := scenario.WriteJUnit(fh, results)
				if cerr := fh.Close(); werr == nil {
					werr = cerr
				}
				if werr != nil {
					return werr
				}
			}
			if failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d step(s) failed", failed)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&target, "target", "", "host address, overriding each file's target:")
	cmd.Flags().StringVar(&junit, "junit", "", "write JUnit XML to this file")
	return cmd
}
