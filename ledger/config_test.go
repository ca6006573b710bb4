package ledger

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/railswitch/railswitch/internal/faultproxy"
	"github.com/railswitch/railswitch/journal"
)

// Bad configurations are refused by Open with an error naming the sink and the key, before any connection.
func TestOpenRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		want []string // substrings of the error
	}{
		{"no type", Config{}, []string{"type: required"}},
		{"unknown type", Config{Type: "kafka", Name: "k"}, []string{`"k"`, `unknown sink type "kafka"`}},
		{"bad name", Config{Type: TypeFile, Name: "my sink", Path: "x"}, []string{"name: want 1-64"}},
		{"file without path", Config{Type: TypeFile}, []string{"path: required"}},
		{"postgres without dsn", Config{Type: TypePostgres}, []string{`sink "postgres": dsn: required`}},
		{"postgres bad table", Config{Type: TypePostgres, DSN: "postgres://x/y", Table: "Postings; DROP"}, []string{"table:"}},
		{"postgres with a redis key", Config{Type: TypePostgres, DSN: "postgres://x/y", DedupTTL: time.Hour}, []string{"dedup_ttl: not a key of a postgres sink"}},
		{"redis without address", Config{Type: TypeRedis}, []string{"address: required"}},
		{"redis ttl below horizon", Config{Type: TypeRedis, Address: "x:1", DedupTTL: time.Minute}, []string{"dedup_ttl: 1m0s is shorter than the shipper's retry horizon 1h0m0s"}},
		{"redis with a nats key", Config{Type: TypeRedis, Address: "x:1", Subject: "a.b"}, []string{"subject: not a key of a redis sink"}},
		{"redis stray brace", Config{Type: TypeRedis, Address: "x:1", Stream: "post}ings"}, []string{"stream:", "hash tag"}},
		{"nats without url", Config{Type: TypeNATS}, []string{"url: required"}},
		{"nats window below horizon", Config{Type: TypeNATS, URL: "nats://x", DuplicateWindow: 30 * time.Minute}, []string{"duplicate_window: 30m0s is shorter than the shipper's retry horizon 1h0m0s"}},
		{"entry's own horizon above the window", Config{Type: TypeNATS, URL: "nats://x", DuplicateWindow: 2 * time.Hour,
			Shipper: journal.ShipperOptions{RetryHorizon: 3 * time.Hour}}, []string{"duplicate_window: 2h0m0s is shorter than the shipper's retry horizon 3h0m0s"}},
		{"nats wildcard subject", Config{Type: TypeNATS, URL: "nats://x", Subject: "postings.>"}, []string{"subject:"}},
		{"nats bad stream", Config{Type: TypeNATS, URL: "nats://x", Stream: "a.b"}, []string{"stream:"}},
		{"batch too large", Config{Type: TypeRedis, Address: "x:1", BatchRecords: MaxBatchRecords + 1}, []string{"batch_records"}},
		{"several problems", Config{Type: TypeNATS, Name: "n", Replicas: 9}, []string{"url: required", "replicas: 9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(context.Background(), tt.c, testHorizon, nil)
			if err == nil {
				s.(interface{ Close() error }).Close()
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// Defaults: the name is the type, and the Redis and NATS windows are 7 days, or twice a longer horizon.
func TestConfigDefaultsCoverTheRetryHorizon(t *testing.T) {
	tests := []struct {
		horizon   time.Duration
		wantRedis time.Duration
	}{
		{24 * time.Hour, 7 * 24 * time.Hour},
		{10 * 24 * time.Hour, 20 * 24 * time.Hour},
	}
	for _, tt := range tests {
		r := Config{Type: TypeRedis}.withDefaults(tt.horizon)
		n := Config{Type: TypeNATS}.withDefaults(tt.horizon)
		if r.DedupTTL != tt.wantRedis || n.DuplicateWindow != tt.wantRedis {
			t.Errorf("horizon %v: dedup_ttl %v, duplicate_window %v, want %v", tt.horizon, r.DedupTTL, n.DuplicateWindow, tt.wantRedis)
		}
		if r.Name != "redis" || n.Name != "nats" || n.Stream != DefaultNATSStream || r.Stream != DefaultRedisStream {
			t.Errorf("defaults %+v %+v", r, n)
		}
	}
}

// A sinks: entry in YAML decodes into Config, durations and the shipper's keys included.
func TestConfigDecodesFromYAML(t *testing.T) {
	src := `
type: nats
name: central-nats
url: nats://127.0.0.1:4222
stream: POSTINGS
subject: railswitch.postings
create_stream: true
duplicate_window: 72h
batch_records: 128
batch_size: 512
deliver_timeout: 10s
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.Type != TypeNATS || c.Name != "central-nats" || c.DuplicateWindow != 72*time.Hour || !c.CreateStream ||
		c.BatchRecords != 128 || c.Shipper.BatchSize != 512 || c.Shipper.DeliverTimeout != 10*time.Second {
		t.Fatalf("decoded %+v", c)
	}
	if err := c.Validate(24 * time.Hour); err != nil {
		t.Fatal(err)
	}
}

// Open of type file returns journal's FileSink, which writes one JSON line per record.
func TestOpenFileSinkWritesJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "postings.jsonl")
	s, err := Open(context.Background(), Config{Type: TypeFile, Path: path}, testHorizon, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.(*journal.FileSink).Close()
	if s.Name() != "file" {
		t.Fatalf("name %q", s.Name())
	}
	if err := s.Deliver(context.Background(), testRecords(0, 3)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != 3 || !strings.Contains(string(b), `"idempotency_key":"T-000000/authorization"`) {
		t.Fatalf("file has %d lines:\n%s", n, b)
	}
}

// Open does not need the server up: a sink whose server is unreachable at start opens, fails its deliveries,
// and creates its table or stream once the server answers.
func TestOpenSucceedsWhileServerDownAndSetsUpLater(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			requireService(t, b.name, b.upstream)
			p := faultproxy.Start(t, b.upstream)
			p.Cut()
			s := b.open(t, p.Addr())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := s.Deliver(ctx, testRecords(0, 5))
			cancel()
			if err == nil {
				t.Fatal("delivered while the server was cut off")
			}
			p.Restore()
			waitFor(t, "a delivery after the restore", 60*time.Second, func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				return s.Deliver(ctx, testRecords(0, 5)) == nil
			})
			if got := b.count(t); got != 5 {
				t.Fatalf("%d entries, want 5", got)
			}
		})
	}
}
