// Command switch is the railway payment switch: one binary for the running switch and every tool around it
// (codec dumps, routing checks, the crypto calculator, simulators and the load test).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// rootCmd is the parent of every subcommand; each subcommand file registers itself in its init function.
var rootCmd = &cobra.Command{
	Use:           "switch",
	Short:         "Railway payment switch: ISO 8583 front-end, routing and tools",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "switch", version)
		},
	})
}

// exitError carries the process exit status a subcommand wants; other errors exit with status 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "switch:", err)
		code := 1
		if ee, ok := err.(*exitError); ok {
			code = ee.code
		}
		os.Exit(code)
	}
}
