package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/hsm/payshield"
)

func init() { rootCmd.AddCommand(newHSMCmd()) }

// newHSMCmd builds the "hsm" command tree; each call returns fresh flags.
func newHSMCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "hsm",
		Short: "HSM simulator (payShield host protocol) and HSM checks",
		Args:  cobra.NoArgs,
	}
	c.AddCommand(newHSMServeCmd(), newHSMInfoCmd())
	return c
}

func newHSMServeCmd() *cobra.Command {
	var listen, keystore, lmkFile string
	var headerLen int
	c := &cobra.Command{
		Use:   "serve --listen ADDR [--keystore FILE] [--header-len 4] [--lmk-file FILE]",
		Short: "Serve the software security module over the payShield host protocol (an HSM simulator)",
		Long: `Serve the software security module over TCP with payShield host commands (CA, CC, G0, M0, M2, M6, M8,
A0, A6, BU, NC, B2), for tests, testers and the simulators. Keys travel in commands as cryptograms under the
LMK, as with a real payShield. The LMK comes from --lmk-file, else $SWITCH_LMK, else $SWITCH_LMK_FILE. With
--keystore, the store must have been made under that LMK (a wrong LMK is refused at start). Runs until
interrupted (SIGINT or SIGTERM). Development and test only: PCI PIN requires PIN translation in a hardware HSM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lmk, err := hsm.LoadLMK(lmkFile)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if keystore != "" {
				store, err := hsm.OpenKeyStore(keystore)
				if err != nil {
					return err
				}
				if err := store.CheckLMK(lmk.CheckValue()); err != nil {
					return err
				}
				fmt.Fprintf(w, "key store %s: %d keys under LMK %s\n", keystore, len(store.List()), lmk.CheckValue())
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			srv := &payshield.Server{Module: hsm.NewSoftware(lmk, nil), HeaderLen: headerLen}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ln) }()
			fmt.Fprintf(w, "hsm simulator listening on %s (header length %d, LMK check value %s)\n", ln.Addr(), headerLen, lmk.CheckValue())
			select {
			case <-ctx.Done():
				srv.Close()
				<-done
				return nil
			case err := <-done:
				return err
			}
		},
	}
	f := c.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:1500", "TCP address to listen on")
	f.StringVar(&keystore, "keystore", "", "key store to check the LMK against (optional)")
	f.StringVar(&lmkFile, "lmk-file", "", "file holding the LMK (default $SWITCH_LMK, then $SWITCH_LMK_FILE)")
	f.IntVar(&headerLen, "header-len", payshield.DefaultHeaderLen, "length of the message header, 1-32")
	return c
}

func newHSMInfoCmd() *cobra.Command {
	var addr string
	var headerLen int
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "info --addr ADDR [--header-len 4]",
		Short: "Ask a payShield-compatible HSM for its LMK check value and firmware (NC) and echo (B2)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := payshield.NewClient(payshield.Config{Addr: addr, HeaderLen: headerLen, Conns: 1, Timeout: timeout})
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			info, err := cl.Info(ctx)
			if err != nil {
				return err
			}
			if err := cl.Echo(ctx, []byte("railswitch")); err != nil {
				return errors.Join(errors.New("NC answered but B2 echo failed"), err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "LMK check value %s, firmware %s, echo ok\n", info.LMKCheck, info.Firmware)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:1500", "HSM address")
	f.IntVar(&headerLen, "header-len", payshield.DefaultHeaderLen, "length of the message header, 1-32")
	f.DurationVar(&timeout, "timeout", 2*time.Second, "time allowed for the commands")
	return c
}
