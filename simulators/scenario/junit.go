package scenario

import (
	"encoding/xml"
	"fmt"
	"io"
	"time"
)

// JUnit XML as CI systems (Jenkins, GitLab, GitHub test reporters) read it: one testsuite per file, one
// testcase per step, a failure element for a failed step and an error element for a file that could not run.

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// WriteJUnit writes the results of a run as JUnit XML.
func WriteJUnit(w io.Writer, results []*FileResult) error {
	var all junitSuites
	var total time.Duration
	for _, r := range results {
		s := junitSuite{Name: r.Name, Time: seconds(r.Elapsed)}
		if r.Err != nil {
			s.Errors = 1
			s.Cases = append(s.Cases, junitCase{Name: "setup", Classname: r.Name, Time: "0.000",
				Error: &junitProblem{Message: r.Err.Error(), Type: "setup", Text: r.Err.Error()}})
		}
		for _, st := range r.Steps {
			c := junitCase{Name: st.Name, Classname: r.Name, Time: seconds(st.Elapsed), SystemOut: st.Txn + " " + st.Summary}
			if !st.Passed {
				s.Failures++
				c.Failure = &junitProblem{Message: st.Failure, Type: "step", Text: st.Failure}
			}
			s.Cases = append(s.Cases, c)
		}
		s.Tests = len(s.Cases)
		all.Tests += s.Tests
		all.Failures += s.Failures
		all.Errors += s.Errors
		total += r.Elapsed
		all.Suites = append(all.Suites, s)
	}
	all.Time = seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(all); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
