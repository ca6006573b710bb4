package limits

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mustParse(t testing.TB, src string) *Config {
	t.Helper()
	cfg, err := Parse("limits.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

func TestParseReadsEveryKeyAndAppliesDefaults(t *testing.T) {
	cfg := mustParse(t, `
idle_ttl: 5m
cluster:
  key_prefix: rs:test
  timeout: 20ms
  lease_ttl: 9s
  nodes: 4
  retry_interval: 2s
terminal:
  default: {rate: 5, burst: 10}
  overrides:
    "10000001": {rate: 20}
    "10000002": {}
merchant:
  overrides:
    "898310048990001": {rate: 100, burst: 200, code: "61"}
channel:
  default: {concurrency: 50}
acquirer:
  default: {rate: 500, concurrency: 200, cluster: true, on_redis_down: refuse, down_code: "91"}
  overrides:
    icbc: {rate: 800, burst: 100, cluster: true, local_share: 0.5}
global: {rate: 2.5, cluster: true}
`)
	want := Config{
		IdleTTL: 5 * time.Minute,
		Cluster: ClusterConfig{KeyPrefix: "rs:test", Timeout: 20 * time.Millisecond, LeaseTTL: 9 * time.Second, Nodes: 4, RetryInterval: 2 * time.Second},
	}
	if cfg.IdleTTL != want.IdleTTL || cfg.Cluster != want.Cluster {
		t.Errorf("settings = %v %+v, want %v %+v", cfg.IdleTTL, cfg.Cluster, want.IdleTTL, want.Cluster)
	}
	tests := []struct {
		scope Scope
		key   string
		want  *Spec // nil: no limit
	}{
		{ScopeTerminal, "any", &Spec{Rate: 5, Burst: 10, Code: "65", DownCode: "96", Source: "limits.yaml:10"}},
		{ScopeTerminal, "10000001", &Spec{Rate: 20, Burst: 20, Code: "65", DownCode: "96", Source: "limits.yaml:12"}},
		{ScopeTerminal, "10000002", &Spec{Code: "65", DownCode: "96", Source: "limits.yaml:13"}},
		{ScopeMerchant, "898310048990001", &Spec{Rate: 100, Burst: 200, Code: "61", DownCode: "96", Source: "limits.yaml:16"}},
		{ScopeMerchant, "other", nil},
		{ScopeChannel, "kiosk", &Spec{Concurrency: 50, Code: "96", DownCode: "96", Source: "limits.yaml:18"}},
		{ScopeAcquirer, "boc", &Spec{Rate: 500, Burst: 500, Concurrency: 200, Cluster: true, Code: "91", OnRedisDown: PolicyRefuse,
			LocalShare: 0.25, DownCode: "91", Source: "limits.yaml:20"}},
		{ScopeAcquirer, "icbc", &Spec{Rate: 800, Burst: 100, Cluster: true, Code: "91", LocalShare: 0.5, DownCode: "96", Source: "limits.yaml:22"}},
		{ScopeGlobal, "", &Spec{Rate: 2.5, Burst: 3, Cluster: true, Code: "96", LocalShare: 0.25, DownCode: "96", Source: "limits.yaml:23"}},
	}
	for _, tt := range tests {
		got := cfg.spec(tt.scope, tt.key)
		switch {
		case tt.want == nil && got != nil:
			t.Errorf("%s %q: got %+v, want no limit", tt.scope, tt.key, got)
		case tt.want != nil && (got == nil || *got != *tt.want):
			t.Errorf("%s %q:\n got %+v\nwant %+v", tt.scope, tt.key, got, tt.want)
		}
	}
}

func TestParseEmptyFileHasNoLimitsAndBuiltInSettings(t *testing.T) {
	cfg := mustParse(t, "")
	if cfg.IdleTTL != DefaultIdleTTL || cfg.Cluster.KeyPrefix != DefaultKeyPrefix || cfg.Cluster.Nodes != 1 ||
		cfg.Cluster.Timeout != DefaultTimeout || cfg.Cluster.LeaseTTL != DefaultLeaseTTL || cfg.Cluster.RetryInterval != DefaultRetryInterval {
		t.Errorf("defaults: %+v", cfg)
	}
	for s := range numScopes {
		if cfg.spec(s, "x") != nil {
			t.Errorf("%s has a limit in an empty file", s)
		}
	}
}

func TestParseReportsEachProblemWithFileAndLine(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"yaml syntax", "global:\n  rate: 1\n terminal: [\n", "limits.yaml:2: did not find expected key"},
		{"unknown top-level key", "termnal: {}\n", "limits.yaml:1: termnal: unknown key"},
		{"unknown scope key", "terminal:\n  defaults: {rate: 1}\n", "limits.yaml:2: terminal.defaults: unknown key"},
		{"unknown limit key", "global: {rate: 1, brust: 2}\n", "limits.yaml:1: global.brust: unknown key"},
		{"negative rate", "global:\n  rate: -1\n", "limits.yaml:2: global.rate: want a positive number"},
		{"rate not a number", "global:\n  rate: fast\n", `limits.yaml:2: global.rate: want a positive number of requests per second, got "fast"`},
		{"zero burst", "global:\n  rate: 1\n  burst: 0\n", "limits.yaml:3: global.burst: want a whole number of at least 1"},
		{"burst without rate", "global:\n  burst: 5\n  concurrency: 1\n", "limits.yaml:2: global.burst: burst needs a rate"},
		{"fractional concurrency", "global:\n  concurrency: 1.5\n", "limits.yaml:2: global.concurrency: want a whole number"},
		{"bad code", "global:\n  rate: 1\n  code: 9\n", `limits.yaml:3: global.code: want a two-character response code such as "65", got "9"`},
		{"bad policy", "global:\n  rate: 1\n  cluster: true\n  on_redis_down: wait\n", "limits.yaml:4: global.on_redis_down: want local or refuse"},
		{"share out of range", "global:\n  rate: 1\n  cluster: true\n  local_share: 1.5\n", "limits.yaml:4: global.local_share: want a fraction in (0, 1]"},
		{"policy on a local limit", "global:\n  rate: 1\n  on_redis_down: refuse\n", "limits.yaml:3: global.on_redis_down: applies only to a cluster-wide limit"},
		{"cluster limit without budget", "acquirer:\n  default:\n    cluster: true\n", "limits.yaml:3: acquirer.default.cluster: a cluster-wide limit needs a rate or a concurrency"},
		{"cluster not a bool", "global:\n  rate: 1\n  cluster: maybe\n", "limits.yaml:3: global.cluster: want true or false"},
		{"duplicate override", "terminal:\n  overrides:\n    T1: {rate: 1}\n    T1: {rate: 2}\n", "limits.yaml:4: terminal.overrides.T1: duplicate key"},
		{"override not a mapping", "merchant:\n  overrides:\n    M1: 5\n", "limits.yaml:3: merchant.overrides.M1: want a mapping"},
		{"bad duration", "idle_ttl: soon\n", `limits.yaml:1: idle_ttl: want a positive duration such as 500ms or 10s, got "soon"`},
		{"zero nodes", "cluster:\n  nodes: 0\n", "limits.yaml:2: cluster.nodes: want a whole number of at least 1"},
		{"prefix with braces", "cluster:\n  key_prefix: '{x}'\n", "limits.yaml:2: cluster.key_prefix: want a non-empty prefix without braces"},
		{"unknown cluster key", "cluster:\n  ttl: 1s\n", "limits.yaml:2: cluster.ttl: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("limits.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.File != "limits.yaml" || ce.Line < 1 {
				t.Errorf("error %#v is not a located *ConfigError", err)
			}
		})
	}
}

func TestParseReportsEveryProblemNotJustTheFirst(t *testing.T) {
	_, err := Parse("l.yaml", []byte("global:\n  rate: 0\nterminal:\n  default: {concurrency: -2}\n"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"l.yaml:2: global.rate", "l.yaml:4: terminal.default.concurrency"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestLoadFileNamesTheFileInErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prod-limits.yaml")
	if err := os.WriteFile(path, []byte("global:\n  rate: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(path); err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Errorf("LoadFile error = %v, want it to start with %s:2:", err, path)
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("LoadFile of a missing file: no error")
	}
}

func TestDocsExampleIsTheTestdataFile(t *testing.T) {
	doc, err := os.ReadFile("../docs/limits.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/limits.md has no yaml example")
	}
	data, err := os.ReadFile("testdata/limits.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, body, _ := strings.Cut(string(data), "\n"); body != example {
		t.Error("testdata/limits.yaml (after its comment line) differs from the example in docs/limits.md")
	}
	if _, err := LoadFile("testdata/limits.yaml"); err != nil {
		t.Errorf("the documented example does not load: %v", err)
	}
}
