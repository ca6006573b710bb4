package saf

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestPolicyFromYAMLWithDefaults(t *testing.T) {
	var p Policy
	src := "ack_codes: [00, 25]\nmax_attempts: 7\nmin_backoff: 2s\nmax_age: 1h\ndead_on_max_age: true\npin_attempts: 2\n"
	if err := yaml.Unmarshal([]byte(src), &p); err != nil {
		t.Fatal(err)
	}
	p = p.withDefaults()
	want := Policy{AckCodes: []string{"00", "25"}, MaxAttempts: 7, MinBackoff: 2 * time.Second, MaxBackoff: 5 * time.Minute,
		MaxAge: time.Hour, DeadOnMaxAge: true, PinAttempts: 2, SendTimeout: 30 * time.Second}
	if !slices.Equal(p.AckCodes, want.AckCodes) {
		t.Errorf("ack codes %v, want %v", p.AckCodes, want.AckCodes)
	}
	if !slices.Equal(p.AdviceAckCodes, []string{"00", "94"}) {
		t.Errorf("advice ack codes %v, want the defaults", p.AdviceAckCodes)
	}
	p.AckCodes, want.AckCodes, p.AdviceAckCodes = nil, nil, nil
	if !reflect.DeepEqual(p, want) {
		t.Errorf("policy %+v, want %+v", p, want)
	}
}

func TestBackoffDoublesUpToTheCap(t *testing.T) {
	p := Policy{MinBackoff: time.Second, MaxBackoff: 10 * time.Second}.withDefaults()
	var got []time.Duration
	for n := 1; n <= 6; n++ {
		got = append(got, p.backoff(n))
	}
	want := []time.Duration{1, 2, 4, 8, 10, 10}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(got, want) {
		t.Errorf("backoff %v, want %v", got, want)
	}
	if d := p.backoff(1000); d != 10*time.Second {
		t.Errorf("backoff after 1000 failures %v, want the cap", d)
	}
}
