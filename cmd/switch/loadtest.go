package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/railswitch/railswitch/loadtest"
	"github.com/railswitch/railswitch/specs"
	"github.com/spf13/cobra"
)

func init() {
	rootCmd.AddCommand(newLoadtestCmd())
}

func newLoadtestCmd() *cobra.Command {
	var cfg loadtest.Config
	var specName, mix, panPrefix, jsonFile, htmlFile, tmkHex string
	term := loadtest.TerminalOptions{Amount: 1}
	var maxRate bool
	cmd := &cobra.Command{
		Use:   "loadtest --target ADDR --spec NAME --terminals N (--rate R | --max) --duration D [flags]",
		Short: "Drive a switch or a bank simulator with virtual terminals and report throughput and latency",
		Long: `Run N virtual terminals, each with its own TCP connection and one request in flight. --max runs a closed
loop at maximum throughput; --rate R sends R requests a second in all (open loop), and latency counts from
each request's intended send time, so a stall is charged to every request it delays. With a terminal spec
(cup-pos, rail-pos) each terminal signs on first and uses its own keys; with a host spec (iso87-*) it
drives a bank simulator directly: the no-switch ceiling. See docs/loadtest.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if maxRate == (cfg.Rate > 0) {
				return fmt.Errorf("give either --max or --rate R")
			}
			spec, err := specs.Get(specName)
			if err != nil {
				return err
			}
			cfg.Spec = spec
			if cfg.Mix, err = loadtest.ParseMix(mix); err != nil {
				return err
			}
			if cfg.NewBuilder, err = newLoadBuilder(spec.Name(), panPrefix, tmkHex, term); err != nil {
				return err
			}
			limit, err := loadtest.RaiseFileLimit()
			if err != nil {
				return fmt.Errorf("raising the open-file limit: %w", err)
			}
			if limit > 0 && uint64(cfg.Terminals)+64 > limit {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: open-file limit %d is below %d terminals\n", limit, cfg.Terminals)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := loadtest.Run(ctx, cfg)
			if err != nil {
				return err
			}
			if err := rep.WriteText(cmd.OutOrStdout()); err != nil {
				return err
			}
			if jsonFile != "" {
				if err := loadtest.WriteFile(jsonFile, rep.WriteJSON); err != nil {
					return err
				}
			}
			if htmlFile != "" {
				if err := loadtest.WriteFile(htmlFile, rep.WriteHTML); err != nil {
					return err
				}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Target, "target", "", "address of the switch or bank simulator (host:port)")
	fl.StringVar(&specName, "spec", "", "the target's spec: built-in name or spec file")
	fl.IntVar(&cfg.Terminals, "terminals", 1, "virtual terminals, each with its own connection")
	fl.Float64Var(&cfg.Rate, "rate", 0, "open loop: requests a second over all terminals")
	fl.BoolVar(&maxRate, "max", false, "closed loop at maximum throughput")
	fl.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send")
	fl.DurationVar(&cfg.Timeout, "timeout", loadtest.DefaultTimeout, "how long a terminal waits for a reply")
	fl.StringVar(&mix, "mix", "purchase=100", "transaction mix by weight: purchase=80,balance=10,void=10")
	fl.StringVar(&panPrefix, "pan-prefix", loadtest.DefaultPANPrefix, "first digits of the test card numbers (1-9 digits)")
	fl.StringVar(&term.TIDPrefix, "tid-prefix", loadtest.DefaultTIDPrefix, "terminal specs: terminal ids are the prefix and 1, 2, ... zero-padded to 8 characters")
	fl.StringVar(&term.MID, "mid", loadtest.DefaultMID, "terminal specs: merchant id (field 42)")
	fl.StringVar(&tmkHex, "tmk", loadtest.DefaultTMK, "terminal specs: the terminals' TMK, hex (a test key)")
	fl.StringVar(&term.PAN, "pan", loadtest.DefaultPAN, "terminal specs: test card number")
	fl.StringVar(&term.PIN, "pin", loadtest.DefaultPIN, "terminal specs: the card's PIN")
	fl.Int64Var(&term.Amount, "amount", 1, "terminal specs: amount of each purchase in minor units")
	fl.StringVar(&cfg.MetricsURL, "metrics", "", "the target's Prometheus URL, to report its CPU per transaction")
	fl.StringVar(&jsonFile, "json", "", "write the report as JSON to this file")
	fl.StringVar(&htmlFile, "html", "", "write the report as an HTML page with charts to this file")
	cmd.MarkFlagRequired("target")
	cmd.MarkFlagRequired("spec")
	return cmd
}

// railwayData is field 57 of rail-pos load tests: bureau 10, station SHH, passenger business, order number
// and window "LOADTEST" (the layout of docs/specs.md, the demo's railway terminal's bureau and station).
const railwayData = "10SHH  1LOADTEST            LOADTEST"

// newLoadBuilder picks the request builder of a spec: host specs (iso87-*) build bank-link messages, terminal
// specs (cup-pos, rail-pos) sign on and use their own keys.
func newLoadBuilder(spec, panPrefix, tmkHex string, o loadtest.TerminalOptions) (loadtest.NewBuilder, error) {
	switch {
	case strings.HasPrefix(spec, "iso87"):
		return loadtest.NewHostBuilder(panPrefix), nil
	case spec == "cup-pos" || spec == "rail-pos":
		tmk, err := hex.DecodeString(tmkHex)
		if err != nil {
			return nil, errors.New("--tmk: want the key in hex")
		}
		o.TMK = tmk
		if spec == "rail-pos" {
			o.Railway = railwayData
		}
		return loadtest.NewTerminalBuilder(o)
	}
	return nil, fmt.Errorf("spec %s: no request builder (want cup-pos, rail-pos or iso87-*)", spec)
}
