package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/railswitch/railswitch/server"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

func init() { rootCmd.AddCommand(newRunCmd()) }

func newRunCmd() *cobra.Command {
	var configPath, dir string
	var demo, debug bool
	var addrs server.DemoAddrs
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "run (--config FILE | --demo)",
		Short: "Run the switch",
		Long: `Run the switch on a configuration file, or with --demo on the embedded demo configuration together with
two simulated banks in the same process (test keys only). SIGHUP reloads routes and limits; SIGINT or SIGTERM
shuts down gracefully: stop accepting, finish in-flight work within --grace, sign off, flush the journal.
SWITCH_CPUPROFILE=FILE writes a CPU profile of the whole run to FILE.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if demo == (configPath != "") {
				return errors.New("give exactly one of --config FILE and --demo")
			}
			log, err := newLogger(debug)
			if err != nil {
				return err
			}
			defer log.Sync()
			if path := os.Getenv("SWITCH_CPUPROFILE"); path != "" {
				f, err := os.Create(path)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var sw *server.Switch
			var closeFn func(context.Context) error
			out := cmd.OutOrStdout()
			if demo {
				d, err := server.StartDemo(ctx, dir, addrs, log)
				if err != nil {
					return err
				}
				sw, closeFn = d.Switch, d.Close
				fmt.Fprintf(out, "demo folder       %s\n", d.Dir)
				fmt.Fprintf(out, "bank A (iso87-ascii) %s\nbank B (iso87-ascii) %s\n", d.BankAddrs[0], d.BankAddrs[1])
			} else {
				cfg, err := server.LoadConfig(configPath)
				if err != nil {
					return err
				}
				if sw, err = server.New(cfg, server.Options{Log: log}); err != nil {
					return err
				}
				if err := sw.Start(ctx); err != nil {
					return err
				}
				closeFn = sw.Stop
			}
			for _, ch := range sw.Channels() {
				fmt.Fprintf(out, "channel %-9s %s\n", ch.Name(), ch.Addr())
			}
			fmt.Fprintf(out, "admin             http://%s\n", sw.AdminAddr())
			if demo {
				fmt.Fprintf(out, "try: SIM_POS_TMK=%s switch sim pos --target %s --tid 10000001 --mid 898110000000001 --state pos.json sign-on (docs/demo.md)\n", server.DemoTMK,
					sw.Channels()[0].Addr())
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			for {
				select {
				case <-hup:
					if v, err := sw.ReloadRoutes(); err != nil {
						log.Error("reload refused; the previous tables stay", zap.Error(err))
					} else {
						log.Info("reloaded", zap.Any("table", v))
					}
					continue
				case <-ctx.Done():
				}
				break
			}
			sctx, cancel := context.WithTimeout(context.Background(), grace)
			defer cancel()
			return closeFn(sctx)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (see docs/configuration.md)")
	cmd.Flags().BoolVar(&demo, "demo", false, "run the embedded demo with two simulated banks")
	cmd.Flags().StringVar(&dir, "dir", "", "demo: folder for its files (default: a new temporary folder)")
	cmd.Flags().StringVar(&addrs.POS, "pos", "127.0.0.1:5000", "demo: cup-pos channel address")
	cmd.Flags().StringVar(&addrs.Rail, "rail", "127.0.0.1:5001", "demo: rail-pos channel address")
	cmd.Flags().StringVar(&addrs.Kiosk, "kiosk", "127.0.0.1:5002", "demo: kiosk channel address")
	cmd.Flags().StringVar(&addrs.Admin, "admin", "127.0.0.1:8080", "demo: admin server address")
	cmd.Flags().IntVar(&addrs.LoadTerminals, "load-terminals", 0, "demo: register N load-test terminals LT000001.. (see switch loadtest --tid-prefix)")
	cmd.Flags().BoolVar(&addrs.NoFsync, "no-fsync", false, "demo: journal without fsync, for benchmarks (gives up durability and the intent records)")
	cmd.Flags().DurationVar(&grace, "grace", 10*time.Second, "time to finish in-flight work at shutdown")
	cmd.Flags().BoolVar(&debug, "debug", false, "debug logging")
	return cmd
}

// newLogger returns the production JSON logger (info level, or debug).
func newLogger(debug bool) (*zap.Logger, error) {
	cfg := zap.NewProductionConfig()
	if debug {
		cfg.Level = zap.NewAtomicLevelAt(zap.DebugLevel)
	}
	return cfg.Build()
}
