package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/railswitch/railswitch/loadtest"
	"github.com/railswitch/railswitch/simulators/bank"
	"github.com/railswitch/railswitch/specs"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

// simCmd is the parent of the simulators; each simulator's file adds its subcommand to it.
var simCmd = &cobra.Command{
	Use:   "sim",
	Short: "Simulators of the devices around the switch: POS terminals, kiosks, acquiring banks, scenarios",
}

func init() {
	simCmd.AddCommand(newSimBankCmd(), newSimPOSCmd(), newSimKioskCmd(), newSimRunCmd())
	rootCmd.AddCommand(simCmd)
}

func newSimBankCmd() *cobra.Command {
	var listen, specName, rulesFile, control string
	var seed uint64
	var latency, jitter, mean, stddev, lateDelay time.Duration
	var f bank.Faults
	cmd := &cobra.Command{
		Use:   "bank --listen ADDR --spec NAME [--rules FILE] [--control ADDR] [fault flags]",
		Short: "Run an acquiring-bank host simulator (see docs/bank-link.md)",
		Long: `Run an acquiring-bank host simulator on a host spec (iso87-ascii, iso87-binary, iso87-ebcdic or a spec
file). It answers network management (70 = 001 sign-on, 002 sign-off, 301 echo, 161 key change), authorizes
0100/0200 requests by the rules file (without one it approves everything with 00), applies voids and refunds
(processing code 20) and reversals (0400/0420) once each, and injects the faults given by the flags. With
--control it serves GET/PUT /faults (JSON), POST /keychange (the bank sends a new ZPK or ZAK) and GET /metrics
(Prometheus) on that address.
Test keys come from the environment, in hex: SIM_BANK_ZMK (key change), SIM_BANK_ZPK (PIN check),
SIM_BANK_ZAK (X9.19 MAC). It runs until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := specs.Get(specName)
			if err != nil {
				return err
			}
			var rules *bank.Rules
			if rulesFile != "" {
				if rules, err = bank.LoadRules(rulesFile); err != nil {
					return err
				}
			}
			var keys bank.Keys
			for _, k := range []struct {
				env string
				dst *[]byte
			}{{"SIM_BANK_ZMK", &keys.ZMK}, {"SIM_BANK_ZPK", &keys.ZPK}, {"SIM_BANK_ZAK", &keys.ZAK}} {
				if *k.dst, err = bank.ParseKeyHex(k.env, os.Getenv(k.env)); err != nil {
					return err
				}
			}
			f.LatencyMS, f.JitterMS = msOf(latency), msOf(jitter)
			f.NormalMeanMS, f.NormalStddevMS, f.LateMS = msOf(mean), msOf(stddev), msOf(lateDelay)
			cfg := bank.Config{Spec: spec, Rules: rules, Faults: f, Keys: keys}
			if cmd.Flags().Changed("seed") {
				cfg.Rand = rand.New(rand.NewPCG(seed, seed))
			}
			log, err := zap.NewProduction()
			if err != nil {
				return err
			}
			defer log.Sync()
			cfg.Log = log
			srv, err := bank.New(cfg)
			if err != nil {
				return err
			}
			if _, err := loadtest.RaiseFileLimit(); err != nil { // one descriptor per switch connection
				return fmt.Errorf("raising the open-file limit: %w", err)
			}
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bank simulator (%s) listening on %s\n", spec.Name(), l.Addr())
			if control != "" {
				cl, err := net.Listen("tcp", control)
				if err != nil {
					l.Close()
					return err
				}
				hs := &http.Server{Handler: srv.ControlHandler(), ReadHeaderTimeout: 5 * time.Second}
				go hs.Serve(cl)
				defer hs.Close()
				fmt.Fprintf(cmd.OutOrStdout(), "control on http://%s (/faults, /keychange, /metrics)\n", cl.Addr())
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				srv.Close()
			}()
			if err := srv.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) {
				return err
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&listen, "listen", "127.0.0.1:9100", "address to accept the switch's connections on")
	fl.StringVar(&specName, "spec", "iso87-ascii", "host spec: built-in name or spec file")
	fl.StringVar(&rulesFile, "rules", "", "authorization rules file (YAML); none approves everything")
	fl.StringVar(&control, "control", "", "address of the HTTP control endpoint (/faults, /keychange, /metrics)")
	fl.Uint64Var(&seed, "seed", 0, "seed of the fault draws, for repeatable runs (default: from the clock)")
	fl.DurationVar(&latency, "latency", 0, "fixed delay before each reply")
	fl.DurationVar(&jitter, "jitter", 0, "plus a uniform random delay up to this")
	fl.DurationVar(&mean, "latency-mean", 0, "normal delay: mean (replaces --latency and --jitter)")
	fl.DurationVar(&stddev, "latency-stddev", 0, "normal delay: standard deviation")
	fl.Float64Var(&f.NoReply, "no-reply", 0, "share of requests (0-1) never answered")
	fl.Float64Var(&f.Late, "late", 0, "share of requests (0-1) answered after --late-delay")
	fl.DurationVar(&lateDelay, "late-delay", 0, "delay of late replies (set it beyond the peer's timeout)")
	fl.IntVar(&f.DisconnectAfter, "disconnect-after", 0, "close each connection as its Nth request arrives, unanswered")
	fl.Float64Var(&f.Garbage, "garbage", 0, "share of replies (0-1) replaced by a frame of random bytes")
	fl.Float64Var(&f.WrongMAC, "wrong-mac", 0, "share of MACed replies (0-1) sent with a wrong MAC")
	fl.Float64Var(&f.Duplicate, "duplicate", 0, "share of replies (0-1) sent twice")
	fl.BoolVar(&f.Stall, "stall", false, "start stalled: read nothing until the control endpoint clears it")
	return cmd
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
