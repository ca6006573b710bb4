package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/railswitch/railswitch/server"
	"go.uber.org/zap"
)

// startSimBank runs `switch sim bank` in-process on a free port and returns its address; the command stops
// when the test ends.
func startSimBank(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	cmd := newSimBankCmd()
	cmd.SetOut(pw)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(append([]string{"--listen", "127.0.0.1:0", "--spec", "iso87-ascii"}, args...))
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx); pw.Close() }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("sim bank did not start: %v", err)
	}
	go io.Copy(io.Discard, pr)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("sim bank: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("sim bank did not stop")
		}
	})
	return line[strings.LastIndex(line, " ")+1 : len(line)-1]
}

func TestLoadtestCommandAgainstSimBank(t *testing.T) {
	addr := startSimBank(t)
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	out, err := runCmd(newLoadtestCmd(), "", "--target", addr, "--spec", "iso87-ascii", "--terminals", "4", "--max",
		"--duration", "500ms", "--mix", "purchase=80,balance=10,void=10", "--json", jsonPath, "--html", htmlPath)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "replies/s") || !strings.Contains(out, "responses: 00=") {
		t.Errorf("summary:\n%s", out)
	}
	var rep struct {
		TPS       float64            `json:"tps"`
		Latency   map[string]float64 `json:"latency_ms"`
		Responses map[string]int64   `json:"responses"`
		Errors    *int64             `json:"errors"`
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.TPS <= 0 || rep.Latency["p99"] <= 0 || rep.Responses["00"] == 0 || rep.Errors == nil || *rep.Errors != 0 {
		t.Errorf("report %s", data)
	}
	if page, err := os.ReadFile(htmlPath); err != nil || !strings.Contains(string(page), "<svg") {
		t.Errorf("HTML report: %v", err)
	}
}

func TestLoadtestCommandSignsOnCupPosTerminalsAtTheDemoSwitch(t *testing.T) {
	d, err := server.StartDemo(context.Background(), t.TempDir(), server.DemoAddrs{LoadTerminals: 2}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Close(ctx)
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ok, _ := d.Ready(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the demo's bank links never signed on")
		}
	}
	out, err := runCmd(newLoadtestCmd(), "", "--target", d.Channels()[0].Addr(), "--spec", "cup-pos", "--terminals", "2",
		"--max", "--duration", "500ms", "--mix", "purchase=80,balance=10,void=10", "--metrics", "http://"+d.AdminAddr()+"/metrics")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"sign-ons: 2, failed 0", "0 timeouts, 0 errors, 0 unmatched, 0 invalid", "target CPU"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "responses: 00=") == strings.Contains(out, "responses: 00=0") {
		t.Errorf("no approvals:\n%s", out)
	}
}

func TestLoadtestCommandRefusesBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"neither --max nor --rate", []string{"--target", "x:1", "--spec", "iso87-ascii"}, "--max or --rate"},
		{"both --max and --rate", []string{"--target", "x:1", "--spec", "iso87-ascii", "--max", "--rate", "5"}, "--max or --rate"},
		{"kiosk spec has no builder", []string{"--target", "x:1", "--spec", "kiosk", "--max"}, "no request builder"},
		{"TMK not hex", []string{"--target", "x:1", "--spec", "cup-pos", "--max", "--tmk", "XYZ"}, "--tmk"},
		{"terminal id prefix too long", []string{"--target", "x:1", "--spec", "cup-pos", "--max", "--tid-prefix", "LOADTEST"}, "prefix"},
		{"bad mix", []string{"--target", "x:1", "--spec", "iso87-ascii", "--max", "--mix", "refund=1"}, "unknown kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := runCmd(newLoadtestCmd(), "", tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSimBankCommandRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rules, []byte("accounts:\n  - prefix: 12AB\n"), 0o600)
	tests := []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"rules error names file and line", []string{"--rules", rules}, "", "rules.yaml:2:"},
		{"share out of range", []string{"--no-reply", "1.5"}, "", "within 0-1"},
		{"unknown spec", []string{"--spec", "nope"}, "", "nope"},
		{"key that is not hex", nil, "XYZ", "SIM_BANK_ZAK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SIM_BANK_ZAK", tt.env)
			args := append([]string{"--listen", "127.0.0.1:0"}, tt.args...)
			if _, err := runCmd(newSimBankCmd(), "", args...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}
