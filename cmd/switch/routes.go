package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/railswitch/railswitch/router"
	"github.com/spf13/cobra"
)

func init() { rootCmd.AddCommand(newRoutesCmd()) }

// newRoutesCmd builds `switch routes` and its subcommands; tests build a fresh tree each time so flag values
// do not leak between them.
func newRoutesCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "routes",
		Short: "Check, explain and compare routing tables (routes YAML and BIN CSV files)",
	}
	c.AddCommand(newRoutesCheckCmd(), newRoutesExplainCmd(), newRoutesDiffCmd())
	return c
}

// loadRoutes reads a routes file, or a BIN CSV file alone (by its .csv extension).
func loadRoutes(path string) (*router.Table, error) {
	if strings.HasSuffix(strings.ToLower(path), ".csv") {
		return router.LoadBINs(path)
	}
	return router.Load(path)
}

// tableProblems prints every validation problem of a table, one "file:line: message" a line, and turns them
// into exit status 1.
func tableProblems(w io.Writer, path string, err error) error {
	var errs router.Errors
	if !errors.As(err, &errs) {
		return err
	}
	for _, is := range errs {
		fmt.Fprintln(w, is)
	}
	return &exitError{code: 1, err: fmt.Errorf("%s: %d problem(s)", path, len(errs))}
}

func newRoutesCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a routes file (with the BIN files it names) or a BIN CSV file; exit 1 listing every problem",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := loadRoutes(args[0])
			if err != nil {
				return tableProblems(cmd.OutOrStdout(), args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok: %d acquirers, %d rules, %d BIN ranges, checksum %s\n",
				args[0], len(t.Acquirers()), len(t.Rules()), len(t.BINRanges()), t.ShortChecksum())
			return nil
		},
	}
}

func newRoutesExplainCmd() *cobra.Command {
	var routes, bins string
	var key router.Key
	var asJSON bool
	c := &cobra.Command{
		Use:   "explain (--routes FILE | --bins FILE.csv) --pan PAN",
		Short: "Show which rule routes a message, from which file and line, and what matched but lost",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (routes == "") == (bins == "") {
				return errors.New("give exactly one of --routes and --bins")
			}
			if key.PAN == "-" { // read it from stdin, so it stays out of the shell history and the process list
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("reading the PAN from stdin: %w", err)
				}
				key.PAN = strings.TrimSpace(line)
			}
			var t *router.Table
			var err error
			if routes != "" {
				t, err = router.Load(routes)
			} else {
				t, err = router.LoadBINs(bins)
			}
			if err != nil {
				return tableProblems(cmd.ErrOrStderr(), routes+bins, err)
			}
			e, err := t.Explain(key)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), e)
			}
			printExplanation(cmd.OutOrStdout(), &e)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&routes, "routes", "", "routes file (YAML)")
	f.StringVar(&bins, "bins", "", "BIN CSV file alone: every row is a rule to its acquirer")
	f.StringVar(&key.PAN, "pan", "", "card number, 12 to 19 digits (printed masked); - reads it from stdin")
	f.StringVar(&key.MTI, "mti", "0200", "message type indicator")
	f.StringVar(&key.Proc, "proc", "000000", "processing code (field 3)")
	f.StringVar(&key.Channel, "channel", "", "channel the message came in on")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	_ = c.MarkFlagRequired("pan")
	return c
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "->" stays readable
	return enc.Encode(v)
}

func printExplanation(w io.Writer, e *router.Explanation) {
	fmt.Fprintf(w, "message:  PAN %s, MTI %s (%s), proc %s, channel %q\n", e.PAN, e.MTI, e.Class, e.Proc, e.Channel)
	switch e.Kind {
	case "none":
		fmt.Fprintln(w, "route:    none: no rule matches")
	case "acquirer":
		fmt.Fprintf(w, "route:    acquirer %s", e.Acquirer)
		if len(e.Fallbacks) > 0 {
			fmt.Fprintf(w, ", then %s", strings.Join(e.Fallbacks, ", then "))
		}
		fmt.Fprintln(w)
	case "local":
		fmt.Fprintf(w, "route:    local handler %s\n", e.Handler)
	case "decline":
		fmt.Fprintf(w, "route:    decline with response code %s\n", e.ResponseCode)
	case "original":
		fmt.Fprintln(w, "route:    the acquirer of the original transaction")
	}
	if e.Rule != "" {
		fmt.Fprintf(w, "rule:     %s (%s)\n", e.Rule, e.Source)
	}
	if b := e.BINRange; b != nil {
		fmt.Fprintf(w, "bin:      %s -> %s, card type %q, priority %d (%s)\n", b.Range, b.Acquirer, b.CardType, b.Priority, b.Source)
	}
	list := func(title string, cs []router.Candidate) {
		if len(cs) == 0 {
			return
		}
		fmt.Fprintln(w, title)
		for _, c := range cs {
			what := "rule " + c.Rule
			if c.BINRange != "" {
				what = "bin " + c.BINRange
			}
			fmt.Fprintf(w, "  %s (%s): %s; %s\n", what, c.Source, c.Result, c.Why)
		}
	}
	list("runners-up (matched, but lost):", e.RunnersUp)
	list("not matched (tried first):", e.NotMatched)
	fmt.Fprintf(w, "table:    version %d, checksum %s\n", e.Version, e.Checksum)
}

func newRoutesDiffCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "Show which BIN ranges, rules and acquirers change destination between two routes (or BIN CSV) files",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ts [2]*router.Table
			for i, p := range args {
				t, err := loadRoutes(p)
				if err != nil {
					return tableProblems(cmd.ErrOrStderr(), p, err)
				}
				ts[i] = t
			}
			d := router.Compare(ts[0], ts[1])
			w := cmd.OutOrStdout()
			if asJSON {
				return printJSON(w, d)
			}
			printDiff(w, d)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func printDiff(w io.Writer, d router.Diff) {
	if d.Empty() {
		fmt.Fprintln(w, "no change in routing")
		return
	}
	if len(d.BINs) > 0 {
		fmt.Fprintln(w, "BIN ranges that change destination:")
		for _, b := range d.BINs {
			fmt.Fprintf(w, "  %-25s %s -> %s", b.Range, b.Old, b.New)
			if b.OldCardType != b.NewCardType {
				fmt.Fprintf(w, " (card type %q -> %q)", b.OldCardType, b.NewCardType)
			}
			fmt.Fprintln(w)
		}
	}
	if len(d.Rules) > 0 {
		fmt.Fprintln(w, "rules:")
		for _, r := range d.Rules {
			fmt.Fprintf(w, "  %-8s %s (%s)", r.Change, r.Rule, r.Source)
			switch {
			case r.Old != "" && r.New != "":
				fmt.Fprintf(w, ": %s => %s", r.Old, r.New)
			case r.Old != "" || r.New != "":
				fmt.Fprintf(w, ": %s%s", r.Old, r.New)
			}
			fmt.Fprintln(w)
		}
	}
	if len(d.Acquirers) > 0 {
		fmt.Fprintln(w, "acquirers:")
		for _, a := range d.Acquirers {
			fmt.Fprintln(w, "  "+a)
		}
	}
}
