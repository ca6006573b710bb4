package saf

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/specs"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testPAN is the published test PAN of shared/reference/hsm.md.
const testPAN = "4012345678909"

var testKey = []byte("0123456789abcdef0123456789abcdef")

func testSpec(t testing.TB, name string) *codec.Spec {
	t.Helper()
	s, err := specs.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// packed builds a reversal or advice in spec with STAN stan and the test PAN.
func packed(t testing.TB, s *codec.Spec, mti, stan string) []byte {
	t.Helper()
	m := codec.NewMessage(s)
	for _, err := range []error{m.SetMTI(mti), m.SetString(2, testPAN), m.SetString(3, "000000"),
		m.SetString(4, "000000001000"), m.SetString(11, stan), m.SetString(39, "98"), m.SetString(41, "T0000001")} {
		if err != nil {
			t.Fatal(err)
		}
	}
	b, err := m.Pack(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sent is one call the sender received, decoded.
type sent struct {
	Acquirer, Link, MTI, STAN string
	Raw                       []byte
}

// scriptSender answers per acquirer with a function of the call number (1-based); it records every call.
type scriptSender struct {
	t      testing.TB
	spec   *codec.Spec
	answer func(acquirer string, n int) (string, error)

	mu    sync.Mutex
	calls map[string][]sent
	got   chan sent
}

func newSender(t testing.TB, spec *codec.Spec, answer func(acquirer string, n int) (string, error)) *scriptSender {
	return &scriptSender{t: t, spec: spec, answer: answer, calls: map[string][]sent{}, got: make(chan sent, 1000)}
}

func (s *scriptSender) Send(ctx context.Context, acquirer, link string, msg []byte) (string, error) {
	m := codec.NewMessage(s.spec)
	raw := append([]byte(nil), msg...)
	if err := m.Unpack(raw); err != nil {
		return "", fmt.Errorf("test sender: %v", err)
	}
	c := sent{Acquirer: acquirer, Link: link, MTI: m.MTI(), STAN: m.String(11), Raw: raw}
	s.mu.Lock()
	s.calls[acquirer] = append(s.calls[acquirer], c)
	n := len(s.calls[acquirer])
	s.mu.Unlock()
	s.got <- c
	return s.answer(acquirer, n)
}

func (s *scriptSender) sent(acquirer string) []sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sent(nil), s.calls[acquirer]...)
}

func ack(string, int) (string, error) { return "00", nil }

var errNoAnswer = errors.New("test: no answer")

// fakeClock is the queue's clock; Wait advances it, after the gate (if any) lets it through.
type fakeClock struct {
	mu   sync.Mutex
	now  time.Time
	all  []time.Duration
	gate chan struct{} // nil: Wait returns at once
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) Wait(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.all = append(c.all, d)
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.Advance(d)
	return nil
}

func (c *fakeClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.all...)
}

// openQueue opens a queue on a file store in dir with the test key, an ASCII spec and the fake clock.
func openQueue(t testing.TB, dir string, sender Sender, clock *fakeClock, policy Policy, mod func(*Config)) *Queue {
	t.Helper()
	st, err := OpenFileStore(dir, FileStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := NewAESGCM(testKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Store: st, Sealer: sealer, Sender: sender, Node: "n1",
		Policy: func(string) Policy { return policy },
		Now:    clock.Now, Wait: clock.Wait, CheckEvery: time.Hour,
	}
	if mod != nil {
		mod(&cfg)
	}
	q, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// eventually polls cond for up to 5 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func stans(ss []sent) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.STAN
	}
	return out
}

// metricValue sums the series of one metric family gathered from reg.
func metricValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
		return sum
	}
	t.Fatalf("no metric %s", name)
	return 0
}
