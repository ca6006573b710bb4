package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

const routesTestdata = "../../router/testdata/"

// runRoutes runs `switch routes ARGS...` on a fresh command tree and gives its output and error.
func runRoutes(args ...string) (string, error) { return runRoutesStdin("", args...) }

func runRoutesStdin(stdin string, args ...string) (string, error) {
	return runCmd(newRoutesCmd(), stdin, args...)
}

func TestRoutesCheckListsEveryProblemAsFileLineAndExits1(t *testing.T) {
	out, err := runRoutes("check", routesTestdata+"bad-bins.csv")
	if exitCode(err) != 1 {
		t.Fatalf("exit %d, want 1", exitCode(err))
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 8 {
		t.Fatalf("%d lines, want the 8 problems:\n%s", len(lines), out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, routesTestdata+"bad-bins.csv:") {
			t.Errorf("line %q does not start with file:line", l)
		}
	}
	out, err = runRoutes("check", routesTestdata+"routes.yaml")
	if err != nil || !strings.Contains(out, "ok: 3 acquirers, 8 rules, 5 BIN ranges, checksum ") {
		t.Fatalf("check of a good file: %v\n%s", err, out)
	}
}

func TestRoutesExplainJSONNamesAcquirerRuleAndSource(t *testing.T) {
	tests := []struct {
		args                      []string
		acquirer, rule, source    string
		runnersUp, bin, maskedPAN string
	}{
		{[]string{"--routes", routesTestdata + "routes.yaml", "--pan", "4111111111111111", "--proc", "310000"},
			"cup", "balance-to-cup", "routes.yaml:36", "", "", "411111******1111"},
		{[]string{"--bins", routesTestdata + "bins.csv", "--pan", "4111111111111111"}, "", "", "", "", "", "411111******1111"},
		{[]string{"--bins", routesTestdata + "bins.csv", "--pan", "4012345678909"}, "", "", "", "", "", "401234***8909"},
	}
	for _, tt := range tests {
		out, err := runRoutes(append([]string{"explain", "--json"}, tt.args...)...)
		if err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
		if m["pan"] != tt.maskedPAN || strings.Contains(out, "4111111111111111") || strings.Contains(out, "4012345678909") {
			t.Errorf("PAN not masked: %s", out)
		}
		if tt.acquirer == "" {
			if m["kind"] != "none" {
				t.Errorf("%v: kind %v, want none (no BIN range holds the PAN)", tt.args, m["kind"])
			}
			continue
		}
		if m["acquirer"] != tt.acquirer || m["rule"] != tt.rule || !strings.HasSuffix(m["source"].(string), tt.source) {
			t.Errorf("%v: got %v %v %v", tt.args, m["acquirer"], m["rule"], m["source"])
		}
	}
}

func TestRoutesExplainTextAndDiffAgainstFixtures(t *testing.T) {
	tests := []struct {
		args   []string
		golden string
	}{
		{[]string{"explain", "--routes", routesTestdata + "routes.yaml", "--pan", "4111111111111111", "--channel", "kiosk",
			"--proc", "310000"}, "explain.txt.golden"},
		{[]string{"diff", routesTestdata + "routes.yaml", routesTestdata + "routes-new.yaml"}, "diff.txt.golden"},
		{[]string{"diff", routesTestdata + "bins.csv", routesTestdata + "bins-new.csv"}, "diff-bins.txt.golden"},
	}
	for _, tt := range tests {
		out, err := runRoutes(tt.args...)
		if err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		// The table version depends on how many tables this process loaded before.
		if i := strings.Index(out, "table:    version "); i >= 0 {
			out = out[:i] + "table:    version N" + out[strings.Index(out[i:], ",")+i:]
		}
		golden := goldenFile(t, tt.golden, out)
		if out != golden {
			t.Errorf("%v:\n--- got\n%s--- want (%s)\n%s", tt.args, out, tt.golden, golden)
		}
	}
}

func TestRoutesExplainNeedsExactlyOneTable(t *testing.T) {
	for _, args := range [][]string{
		{"explain", "--pan", "4111111111111111"},
		{"explain", "--pan", "4111111111111111", "--routes", routesTestdata + "routes.yaml", "--bins", routesTestdata + "bins.csv"},
	} {
		if _, err := runRoutes(args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	if _, err := runRoutes("explain", "--bins", routesTestdata+"bins.csv", "--pan", "41111111111x1111"); err == nil ||
		strings.Contains(err.Error(), "41111111111x1111") {
		t.Errorf("a malformed PAN: err = %v, want an error that does not repeat it", err)
	}
}

var updateGolden = os.Getenv("UPDATE_GOLDEN") != ""

// goldenFile gives the expected output kept in router/testdata, rewriting it first when UPDATE_GOLDEN is set.
func goldenFile(t *testing.T, name, got string) string {
	t.Helper()
	path := routesTestdata + name
	if updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRoutesExplainReadsThePANFromStdin(t *testing.T) {
	out, err := runRoutesStdin("4111111111111111\n", "explain", "--json", "--routes", routesTestdata+"routes.yaml", "--pan", "-")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil || m["pan"] != "411111******1111" || m["rule"] != "test-cards" {
		t.Fatalf("got %v (%v)", m, err)
	}
}
