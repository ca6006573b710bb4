package main

import (
	"strings"
	"testing"
)

const limitsTestdata = "../../limits/testdata/"

// runLimits runs `switch limits ARGS...` on a fresh command tree and gives its output and error.
func runLimits(args ...string) (string, error) { return runCmd(newLimitsCmd(), "", args...) }

func TestLimitsCheckListsTheLimitsOfAGoodFile(t *testing.T) {
	out, err := runLimits("check", limitsTestdata+"limits.yaml")
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	for _, want := range []string{
		"limits.yaml: ok: 9 limits",
		"terminal default             5/s burst 10, 2 in flight, code 65 (" + limitsTestdata + "limits.yaml:10)",
		"acquirer icbc                800/s burst 800, 400 in flight, cluster-wide, on redis down: local 0.6 share, code 91",
		"global                       40000/s burst 5000, cluster-wide, on redis down: refuse with 96, code 96",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestLimitsCheckListsEveryProblemAsFileLineAndExits1(t *testing.T) {
	out, err := runLimits("check", limitsTestdata+"bad-limits.yaml")
	if exitCode(err) != 1 {
		t.Fatalf("exit %d, want 1", exitCode(err))
	}
	want := []string{
		limitsTestdata + "bad-limits.yaml:2: terminal.default.rate: want a positive number",
		limitsTestdata + "bad-limits.yaml:5: merchant.overrides.898310048990001.brust: unknown key",
		limitsTestdata + "bad-limits.yaml:6: global.on_redis_down: applies only to a cluster-wide limit",
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i+1, lines[i], w)
		}
	}
	if _, err := runLimits("check", limitsTestdata+"missing.yaml"); exitCode(err) != 1 {
		t.Errorf("missing file: exit %d, want 1", exitCode(err))
	}
}
