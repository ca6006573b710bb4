package journal

import (
	"reflect"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestConfigKeysDecodeFromYAML(t *testing.T) {
	var cfg struct {
		Journal Options        `yaml:"journal"`
		Sink    ShipperOptions `yaml:"sink"`
	}
	src := `
journal:
  dir: /var/lib/railswitch/journal
  fsync: true
  segment_bytes: 67108864
  max_unshipped_bytes: 1073741824
  hard_limit_bytes: 4294967296
  retention_days: 30
sink:
  batch_size: 500
  min_backoff: 200ms
  max_backoff: 1m
  interval: 2s
  deliver_timeout: 10s
  retry_horizon: 48h
`
	if err := yaml.Unmarshal([]byte(src), &cfg); err != nil {
		t.Fatal(err)
	}
	wantJ := Options{Dir: "/var/lib/railswitch/journal", Fsync: true, SegmentBytes: 64 << 20,
		MaxUnshippedBytes: 1 << 30, HardLimitBytes: 4 << 30, RetentionDays: 30}
	wantS := ShipperOptions{BatchSize: 500, MinBackoff: 200 * time.Millisecond, MaxBackoff: time.Minute,
		Interval: 2 * time.Second, DeliverTimeout: 10 * time.Second, RetryHorizon: 48 * time.Hour}
	if !reflect.DeepEqual(cfg.Journal, wantJ) {
		t.Errorf("journal section decoded as %+v, want %+v", cfg.Journal, wantJ)
	}
	if !reflect.DeepEqual(cfg.Sink, wantS) {
		t.Errorf("sink section decoded as %+v, want %+v", cfg.Sink, wantS)
	}
}
