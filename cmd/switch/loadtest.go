package main

import (
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
	var specName, mix, panPrefix, jsonFile, htmlFile string
	var maxRate bool
	cmd := &cobra.Command{
		Use:   "loadtest --target ADDR --spec NAME --terminals N (--rate R | --max) --duration D [flags]",
		Short: "Drive a switch or a bank simulator with virtual terminals and report throughput and latency",
		Long: `Run N virtual terminals, each with its own TCP connection and one request in flight. --max runs a closed
loop at maximum throughput; --rate R sends R requests a second in all (open loop), and latency counts from
each request's intended send time, so a stall is charged to every request it delays. With a host spec
(iso87-*) it drives a bank simulator directly: the no-switch ceiling. See docs/loadtest.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if maxRate == (cfg.Rate > 0) {
				return fmt.Errorf("give either --max or --rate R")
			}
			spec, err := specs.Get(specName)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(spec.Name(), "iso87") {
				return fmt.Errorf("spec %s: only host specs (iso87-*) have a request builder so far", spec.Name())
			}
			cfg.Spec = spec
			if cfg.Mix, err = loadtest.ParseMix(mix); err != nil {
				return err
			}
			cfg.NewBuilder = loadtest.NewHostBuilder(panPrefix)
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
	fl.StringVar(&cfg.MetricsURL, "metrics", "", "the target's Prometheus URL, to report its CPU per transaction")
	fl.StringVar(&jsonFile, "json", "", "write the report as JSON to this file")
	fl.StringVar(&htmlFile, "html", "", "write the report as an HTML page with charts to this file")
	cmd.MarkFlagRequired("target")
	cmd.MarkFlagRequired("spec")
	return cmd
}
