package router

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Source is where a rule, acquirer or BIN range was written: a file and a 1-based line.
type Source struct {
	File string
	Line int
}

// String gives "file:line", the form editors and `switch routes check` use.
func (s Source) String() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

// Issue is one validation problem, located in its source file.
type Issue struct {
	Source
	Msg string
}

// newIssue makes an issue whose message never holds a card number: a value copied into a message (a BIN
// column, a processing code) may be a PAN pasted in the wrong place, so runs of 12 or more digits are masked.
func newIssue(src Source, msg string) Issue { return Issue{src, maskDigitRuns(msg)} }

func maskDigitRuns(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		switch {
		case j-i >= minPANLen:
			b.WriteString(MaskPAN(s[i:j]))
		case j > i:
			b.WriteString(s[i:j])
		default:
			b.WriteByte(s[i])
			j++
		}
		i = j
	}
	return b.String()
}

// String gives "file:line: message".
func (i Issue) String() string { return i.Source.String() + ": " + i.Msg }

// Errors is every problem found while loading a table; Load returns all of them, not just the first.
type Errors []Issue

// Error lists the issues, one per line.
func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, is := range e {
		lines[i] = is.String()
	}
	return strings.Join(lines, "\n")
}

func (e Errors) sorted() Errors {
	slices.SortStableFunc(e, func(a, b Issue) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
	return e
}

// Lookup errors. They are sentinel values so a lookup that fails still does not allocate.
var (
	// ErrNoRoute means no rule matched the message.
	ErrNoRoute = errors.New("router: no rule matches")
	// ErrBadPAN means the PAN is not 12 to 19 digits.
	ErrBadPAN = errors.New("router: PAN is not 12 to 19 digits")
	// ErrBadMTI means the MTI is not 4 digits.
	ErrBadMTI = errors.New("router: MTI is not 4 digits")
)
