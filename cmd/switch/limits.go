package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/railswitch/railswitch/limits"
	"github.com/spf13/cobra"
)

func init() { rootCmd.AddCommand(newLimitsCmd()) }

// newLimitsCmd builds `switch limits` and its subcommands.
func newLimitsCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "limits",
		Short: "Check rate and concurrency limit files",
	}
	c.AddCommand(newLimitsCheckCmd())
	return c
}

func newLimitsCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a limits file and list the limits it sets; exit 1 listing every problem as file:line",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := limits.LoadFile(args[0])
			if err != nil {
				return limitsProblems(cmd.OutOrStdout(), args[0], err)
			}
			w := cmd.OutOrStdout()
			all := cfg.Limits()
			fmt.Fprintf(w, "%s: ok: %d limits\n", args[0], len(all))
			for _, l := range all {
				where := l.Scope.String()
				switch {
				case l.Scope == limits.ScopeGlobal:
				case l.Default:
					where += " default"
				case l.Key != "":
					where += " " + l.Key
				}
				fmt.Fprintf(w, "  %-28s %s (%s)\n", where, l.Spec, l.Spec.Source)
			}
			return nil
		},
	}
}

// limitsProblems prints each located problem of a limits file on its own line and exits 1.
func limitsProblems(w io.Writer, path string, err error) error {
	var problems []error
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		problems = joined.Unwrap()
	} else {
		problems = []error{err}
	}
	var ce *limits.ConfigError
	if len(problems) == 1 && !errors.As(problems[0], &ce) {
		return err // unreadable file: not a validation problem
	}
	for _, p := range problems {
		fmt.Fprintln(w, p)
	}
	return &exitError{code: 1, err: fmt.Errorf("%s: %d problem(s)", path, len(problems))}
}
