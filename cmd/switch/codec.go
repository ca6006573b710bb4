package main

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/specs"
	"github.com/spf13/cobra"
)

func init() {
	rootCmd.AddCommand(newDecodeCmd(), newEncodeCmd(), newSpecsCmd())
}

// readHexArg reads hex from the argument, or from stdin when it is "-" or missing; spaces and newlines are
// ignored so dumps can be pasted.
func readHexArg(cmd *cobra.Command, args []string) ([]byte, error) {
	var text string
	if len(args) == 0 || args[0] == "-" {
		b, err := io.ReadAll(bufio.NewReader(cmd.InOrStdin()))
		if err != nil {
			return nil, err
		}
		text = string(b)
	} else {
		text = strings.Join(args, "")
	}
	text = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
			return -1
		}
		return r
	}, text)
	b, err := hex.DecodeString(text)
	if err != nil {
		return nil, &exitError{code: 1, err: fmt.Errorf("input is not hex: %v", err)}
	}
	return b, nil
}

func newDecodeCmd() *cobra.Command {
	var specName string
	var framed, asJSON, showSensitive bool
	cmd := &cobra.Command{
		Use:   "decode --spec NAME [--framed] [--json] [--show-sensitive] [HEX|-]",
		Short: "Decode a hex ISO 8583 message (from the MTI on, or a whole frame with --framed)",
		Long: `Decode a message given in hex, as an argument or on standard input.
Without --framed the hex starts at the MTI; with --framed it is the whole frame from the length header on, and
the TPDU and header are shown where the spec has them. PAN (first 6 and last 4 kept), tracks, PIN block and
chip data are masked unless --show-sensitive (test data only). Malformed input exits with status 1 and the
error, naming the field and offset; what was decoded before the error is still printed.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := specs.Get(specName)
			if err != nil {
				return err
			}
			in, err := readHexArg(cmd, args)
			if err != nil {
				return err
			}
			m := codec.NewMessage(spec)
			if framed {
				fr := spec.Framing()
				body, used, serr := fr.Split(in)
				switch {
				case errors.Is(serr, codec.ErrNeedMore):
					err = fmt.Errorf("frame: incomplete: %d bytes given, the length header asks for more", len(in))
				case serr != nil:
					err = serr
				case used != len(in):
					err = fmt.Errorf("frame: %d bytes after the frame", len(in)-used)
				case fr.IsKeepAlive(body):
					fmt.Fprintln(cmd.OutOrStdout(), "keep-alive frame")
					return nil
				default:
					err = m.UnpackFrame(fr, body)
				}
			} else {
				err = m.Unpack(in)
			}
			opts := codec.DumpOptions{ShowSensitive: showSensitive}
			out := cmd.OutOrStdout()
			if asJSON {
				if err == nil {
					fmt.Fprintln(out, string(m.AppendJSON(nil, opts)))
				}
			} else if m.MTI() != "" {
				if derr := m.Dump(out, opts); derr != nil {
					return derr
				}
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&specName, "spec", "", "spec name (see `switch specs list`) or spec file path")
	cmd.Flags().BoolVar(&framed, "framed", false, "input is a whole frame, from the length header on")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object instead of the readable dump")
	cmd.Flags().BoolVar(&showSensitive, "show-sensitive", false, "show card data in clear (test data only)")
	_ = cmd.MarkFlagRequired("spec")
	return cmd
}

func newEncodeCmd() *cobra.Command {
	var specName string
	var framed bool
	cmd := &cobra.Command{
		Use:   "encode --spec NAME [--framed] < message.json",
		Short: "Encode the JSON form that decode --json prints back into hex",
		Long: `Read {"mti":..., "tpdu":..., "header":..., "fields":{"3":"000000",...}} on standard input and print the
message in hex: from the MTI on, or with --framed the whole frame with its length header, TPDU and header.
Values are as decode --json --show-sensitive prints them: digits and text as strings, binary fields as hex.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := specs.Get(specName)
			if err != nil {
				return err
			}
			data, err := io.ReadAll(cmd.InOrStdin())
			if err != nil {
				return err
			}
			m := codec.NewMessage(spec)
			if err := m.FromJSON(data); err != nil {
				return &exitError{code: 1, err: err}
			}
			var out []byte
			if framed {
				out, err = m.AppendFrame(spec.Framing(), nil)
			} else {
				out, err = m.Pack(nil)
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintln(cmd.OutOrStdout(), strings.ToUpper(hex.EncodeToString(out)))
			return nil
		},
	}
	cmd.Flags().StringVar(&specName, "spec", "", "spec name or spec file path")
	cmd.Flags().BoolVar(&framed, "framed", false, "write the whole frame with length header, TPDU and header")
	_ = cmd.MarkFlagRequired("spec")
	return cmd
}

func newSpecsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "specs", Short: "List, show and check ISO 8583 specs"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the built-in specs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, n := range specs.Names() {
				s, err := specs.Get(n)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%-14s %s\n", n, s.Def().Description)
			}
			return nil
		},
	}, &cobra.Command{
		Use:   "show NAME",
		Short: "Print a built-in spec's YAML (a starting point for your own)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := specs.Source(args[0])
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(src)
			return err
		},
	}, &cobra.Command{
		Use:   "check FILE",
		Short: "Check a spec file; errors name the file and line",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := specs.LoadFile(args[0])
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: spec %s is valid (%d fields)\n", args[0], s.Name(), len(s.Def().Fields))
			return nil
		},
	})
	return cmd
}
