package main

import (
	"bytes"
	"errors"
	"strings"

	"github.com/spf13/cobra"
)

// runCmd runs a fresh command tree (from its constructor) with args and stdin, as rootCmd would, and returns
// what it printed on stdout and stderr together.
func runCmd(c *cobra.Command, stdin string, args ...string) (string, error) {
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetIn(strings.NewReader(stdin))
	c.SetArgs(args)
	c.SilenceUsage, c.SilenceErrors = true, true
	err := c.Execute()
	return out.String(), err
}

// exitCode is the process exit status main gives err.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	return 1
}
