package saf

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/railswitch/railswitch/codec"
)

func TestEnqueueDrainsInOrderPerAcquirer(t *testing.T) {
	spec := testSpec(t, "iso87-ascii")
	snd := newSender(t, spec, ack)
	q := openQueue(t, t.TempDir(), snd, newClock(), Policy{}, nil)
	defer q.Close()
	want := map[string][]string{"bankA": {"000001", "000002", "000003", "000004"}, "bankB": {"000010", "000011"}}
	for i := range 4 {
		for acq, ss := range want {
			if i < len(ss) {
				if err := q.Enqueue(context.Background(), acq, "", "txn-"+ss[i], packed(t, spec, "0420", ss[i])); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	eventually(t, "queue drained", func() bool { return len(q.Pending()) == 0 && len(snd.sent("bankA")) == 4 })
	for acq, ss := range want {
		if got := stans(snd.sent(acq)); !slices.Equal(got, ss) {
			t.Errorf("%s: sent STANs %v, want %v in order", acq, got, ss)
		}
	}
}

func TestFailingAcquirerBacksOffWithoutBlockingOthers(t *testing.T) {
	spec := testSpec(t, "iso87-ascii")
	snd := newSender(t, spec, func(acq string, n int) (string, error) {
		if acq == "down" {
			return "", errNoAnswer
		}
		return "00", nil
	})
	clock := newClock()
	clock.gate = make(chan struct{}) // the failing acquirer's backoff waits until the test releases it
	q := openQueue(t, t.TempDir(), snd, clock, Policy{MinBackoff: time.Second, MaxBackoff: 4 * time.Second}, nil)
	defer q.Close()
	ctx := context.Background()
	if err := q.Enqueue(ctx, "down", "", "t0", packed(t, spec, "0420", "000100")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "first failed send", func() bool { return len(clock.Waits()) == 1 })
	for _, stan := range []string{"000001", "000002", "000003"} {
		if err := q.Enqueue(ctx, "up", "", "t"+stan, packed(t, spec, "0420", stan)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "other acquirer drained", func() bool { return len(snd.sent("up")) == 3 })
	if n := len(snd.sent("down")); n != 1 {
		t.Fatalf("failing acquirer sent %d times while its backoff wait was held, want 1", n)
	}
	for range 4 {
		clock.gate <- struct{}{}
	}
	eventually(t, "five failed sends", func() bool { return len(clock.Waits()) == 5 })
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}
	if got := clock.Waits(); !slices.Equal(got, want) {
		t.Errorf("backoff waits %v, want %v (doubling, capped)", got, want)
	}
	p := q.Pending()
	if len(p) != 1 || p[0].Acquirer != "down" || p[0].LastError != errNoAnswer.Error() {
		t.Errorf("pending %+v, want the failing acquirer's entry with its last error", p)
	}
}

func TestRestartDrainsEntriesOnDiskWithRepeatMTI(t *testing.T) {
	spec := testSpec(t, "iso87-ascii")
	dir := t.TempDir()
	clock := newClock()
	down := newSender(t, spec, func(string, int) (string, error) { return "", errNoAnswer })
	clock.gate = make(chan struct{}) // hold the backoff: one failed send, then the switch stops
	q := openQueue(t, dir, down, clock, Policy{}, nil)
	for _, stan := range []string{"000001", "000002", "000003"} {
		if err := q.Enqueue(context.Background(), "bankA", "bankA/ep1/0", "t"+stan, packed(t, spec, "0420", stan)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "first send", func() bool { return len(down.sent("bankA")) == 1 })
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	clock.gate = nil
	up := newSender(t, spec, ack)
	q = openQueue(t, dir, up, clock, Policy{}, nil)
	defer q.Close()
	eventually(t, "drained after restart", func() bool { return len(up.sent("bankA")) == 3 && len(q.Pending()) == 0 })
	got := up.sent("bankA")
	want := []sent{{MTI: "0421", STAN: "000001"}, {MTI: "0420", STAN: "000002"}, {MTI: "0420", STAN: "000003"}}
	for i, w := range want {
		if got[i].MTI != w.MTI || got[i].STAN != w.STAN || got[i].Link != "bankA/ep1/0" {
			t.Errorf("send %d after restart: %s %s on %q, want %s %s on the pinned link", i, got[i].MTI, got[i].STAN,
				got[i].Link, w.MTI, w.STAN)
		}
	}
}

func TestRepeatMTIPerEncodingAndPolicy(t *testing.T) {
	for _, tc := range []struct {
		spec, mti string
		noRepeat  bool
		want      []string // MTIs of the first three sends
	}{
		{"iso87-ascii", "0420", false, []string{"0420", "0421", "0421"}},
		{"iso87-binary", "0420", false, []string{"0420", "0421", "0421"}},
		{"iso87-ebcdic", "0420", false, []string{"0420", "0421", "0421"}},
		{"iso87-ascii", "0220", false, []string{"0220", "0221", "0221"}},
		{"iso87-binary", "0220", false, []string{"0220", "0221", "0221"}},
		{"iso87-ascii", "0400", false, []string{"0400", "0400", "0400"}},
		{"iso87-ascii", "0420", true, []string{"0420", "0420", "0420"}},
	} {
		t.Run(fmt.Sprintf("%s/%s/norepeat=%t", tc.spec, tc.mti, tc.noRepeat), func(t *testing.T) {
			spec := testSpec(t, tc.spec)
			snd := newSender(t, spec, func(_ string, n int) (string, error) {
				if n < 3 {
					return "96", nil
				}
				return "00", nil
			})
			q := openQueue(t, t.TempDir(), snd, newClock(), Policy{NoRepeatMTI: tc.noRepeat},
				func(c *Config) { c.Spec = func(string) *codec.Spec { return spec } })
			defer q.Close()
			orig := packed(t, spec, tc.mti, "000042")
			if err := q.Enqueue(context.Background(), "bank", "", "t1", orig); err != nil {
				t.Fatal(err)
			}
			eventually(t, "acknowledged", func() bool { return len(snd.sent("bank")) == 3 && len(q.Pending()) == 0 })
			w := mtiWidth(spec.Def().MTI)
			for i, s := range snd.sent("bank") {
				if s.MTI != tc.want[i] {
					t.Errorf("send %d: MTI %s, want %s", i+1, s.MTI, tc.want[i])
				}
				if string(s.Raw[w:]) != string(orig[w:]) {
					t.Errorf("send %d: bytes after the MTI changed", i+1)
				}
			}
		})
	}
}

func TestAcknowledgedResponseCodes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codes []string
		rc    string
		err   error
		acked bool
	}{
		{"approved", nil, "00", nil, true},
		{"invalid related transaction", nil, "12", nil, true},
		{"original not found", nil, "25", nil, true},
		{"duplicate: already reversed", nil, "94", nil, true},
		{"system malfunction", nil, "96", nil, false},
		{"issuer down", nil, "91", nil, false},
		{"no answer", nil, "", errNoAnswer, false},
		{"custom set takes 00 only: 25 retried", []string{"00"}, "25", nil, false},
		{"custom set with 21", []string{"00", "21"}, "21", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := testSpec(t, "iso87-ascii")
			snd := newSender(t, spec, func(string, int) (string, error) { return tc.rc, tc.err })
			clock := newClock()
			clock.gate = make(chan struct{}) // no second attempt
			q := openQueue(t, t.TempDir(), snd, clock, Policy{AckCodes: tc.codes}, nil)
			defer q.Close()
			if err := q.Enqueue(context.Background(), "bank", "", "t1", packed(t, spec, "0420", "000001")); err != nil {
				t.Fatal(err)
			}
			eventually(t, "attempt settled", func() bool {
				p := q.Pending()
				return len(p) == 0 || p[0].LastError != ""
			})
			if acked := len(q.Pending()) == 0; acked != tc.acked {
				t.Errorf("rc %q err %v: acknowledged %t, want %t", tc.rc, tc.err, acked, tc.acked)
			}
		})
	}
}

func TestDeadLetterAfterMaxAttemptsThenRetry(t *testing.T) {
	spec := testSpec(t, "iso87-ascii")
	var mu sync.Mutex
	bankUp := false
	snd := newSender(t, spec, func(string, int) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if bankUp {
			return "00", nil
		}
		return "96", nil
	})
	reg := prometheus.NewPedanticRegistry()
	q := openQueue(t, t.TempDir(), snd, newClock(), Policy{MaxAttempts: 3}, func(c *Config) { c.Registerer = reg })
	defer q.Close()
	ctx := context.Background()
	for _, stan := range []string{"000001", "000002"} {
		if err := q.Enqueue(ctx, "bank", "", "t"+stan, packed(t, spec, "0420", stan)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "both dead", func() bool { return len(q.DeadLetters()) == 2 })
	if n := len(snd.sent("bank")); n != 6 {
		t.Errorf("%d sends, want 3 per entry", n)
	}
	dead := q.DeadLetters()
	if dead[0].TxnID != "t000001" || dead[0].Attempts != 3 || dead[0].LastError != "response code 96" {
		t.Errorf("dead letter %+v, want txn t000001 after 3 attempts with its last error", dead[0])
	}
	for name, want := range map[string]float64{"railswitch_saf_depth": 0, "railswitch_saf_dead_letters": 2,
		"railswitch_saf_attempts_total": 6, "railswitch_saf_dead_lettered_total": 2, "railswitch_saf_enqueued_total": 2} {
		eventually(t, fmt.Sprintf("%s = %v", name, want), func() bool { return metricValue(t, reg, name) == want })
	}
	if err := q.Retry("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Retry of an unknown id: %v, want ErrNotFound", err)
	}
	mu.Lock()
	bankUp = true
	mu.Unlock()
	if err := q.Retry(dead[1].ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "retried entry acknowledged", func() bool { return len(q.DeadLetters()) == 1 && len(q.Pending()) == 0 })
	last := snd.sent("bank")[6]
	if last.STAN != "000002" || last.MTI != "0421" {
		t.Errorf("retried send %s %s, want 0421 000002", last.MTI, last.STAN)
	}
	if left := q.DeadLetters(); left[0].ID != dead[0].ID {
		t.Errorf("dead letters %v, want only %s", left, dead[0].ID)
	}
	eventually(t, "acknowledged_total = 1", func() bool { return metricValue(t, reg, "railswitch_saf_acknowledged_total") == 1 })
}

func TestRetryRefusesAPendingEntry(t *testing.T) {
	spec := testSpec(t, "iso87-ascii")
	clock := newClock()
	clock.gate = make(chan struct{})
	q := openQueue(t, t.TempDir(), newSender(t, spec, func(string, int) (string, error) { return "96", nil }), clock, Policy{}, nil)
	defer q.Close()
	if err := q.Enqueue(context.Background(), "bank", "", "t1", packed(t, spec, "0420", "000001")); err != nil {
		t.Fatal(err)
	}
	if err := q.Retry(q.Pending()[0].ID); !errors.Is(err, ErrNotDead) {
		t.Errorf("Retry of a pending entry: %v, want ErrNotDead", err)
	}
}

func TestAlarmOncePerEntryPastMaxAge(t *testing.T) {
	spec := testSpec(t, "iso87-ascii")
	clock := newClock()
	clock.gate = make(chan struct{})
	var mu sync.Mutex
	var alarms []Alarm
	reg := prometheus.NewPedanticRegistry()
	q := openQueue(t, t.TempDir(), newSender(t, spec, func(string, int) (string, error) { return "", errNoAnswer }),
		clock, Policy{MaxAge: time.Minute}, func(c *Config) {
			c.Registerer = reg
			c.OnAlarm = func(a Alarm) { mu.Lock(); alarms = append(alarms, a); mu.Unlock() }
		})
	defer q.Close()
	if err := q.Enqueue(context.Background(), "bank", "", "t1", packed(t, spec, "0420", "000001")); err != nil {
		t.Fatal(err)
	}
	gauge := func() float64 { return metricValue(t, reg, "railswitch_saf_over_max_age") }
	clock.Advance(59 * time.Second)
	q.Check()
	mu.Lock()
	if len(alarms) != 0 || gauge() != 0 {
		t.Fatalf("alarm before max age: %v", alarms)
	}
	mu.Unlock()
	clock.Advance(time.Second)
	q.Check()
	q.Check()
	mu.Lock()
	defer mu.Unlock()
	if len(alarms) != 1 || alarms[0].TxnID != "t1" || alarms[0].Age != time.Minute {
		t.Errorf("alarms %+v, want one for t1 at age 1m", alarms)
	}
	if gauge() != 1 {
		t.Errorf("over max age gauge %v, want 1", gauge())
	}
}

func TestDeadOnMaxAge(t *testing.T) {
	spec := testSpec(t, "iso87-ascii")
	q := openQueue(t, t.TempDir(), newSender(t, spec, func(string, int) (string, error) { return "96", nil }),
		newClock(), Policy{MaxAge: 10 * time.Second, MinBackoff: 4 * time.Second, DeadOnMaxAge: true}, nil)
	defer q.Close()
	if err := q.Enqueue(context.Background(), "bank", "", "t1", packed(t, spec, "0420", "000001")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "dead", func() bool { return len(q.DeadLetters()) == 1 })
	d := q.DeadLetters()[0]
	// Sends at 0s and 4s; the next attempt, at 12s, finds the entry past its 10s max age.
	if d.Attempts != 2 || !strings.Contains(d.LastError, "max age") {
		t.Errorf("dead letter %+v, want 2 attempts then moved for its age", d)
	}
}

func TestPinnedLink(t *testing.T) {
	for _, tc := range []struct {
		name string
		pin  int
		want []string
	}{
		{"pinned for good by default", 0, []string{"bank/ep1/3", "bank/ep1/3", "bank/ep1/3", "bank/ep1/3"}},
		{"pinned for the first two sends", 2, []string{"bank/ep1/3", "bank/ep1/3", "", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := testSpec(t, "iso87-ascii")
			snd := newSender(t, spec, func(_ string, n int) (string, error) {
				if n < 4 {
					return "", errNoAnswer
				}
				return "00", nil
			})
			q := openQueue(t, t.TempDir(), snd, newClock(), Policy{PinAttempts: tc.pin}, nil)
			defer q.Close()
			if err := q.Enqueue(context.Background(), "bank", "bank/ep1/3", "t1", packed(t, spec, "0420", "000001")); err != nil {
				t.Fatal(err)
			}
			eventually(t, "acknowledged", func() bool { return len(q.Pending()) == 0 })
			var links []string
			for _, s := range snd.sent("bank") {
				links = append(links, s.Link)
			}
			if !slices.Equal(links, tc.want) {
				t.Errorf("links %q, want %q", links, tc.want)
			}
		})
	}
}

func TestEnqueueRejectsWhatIsNeitherReversalNorAdvice(t *testing.T) {
	spec := testSpec(t, "iso87-ascii")
	q := openQueue(t, t.TempDir(), newSender(t, spec, ack), newClock(), Policy{}, nil)
	defer q.Close()
	for _, msg := range [][]byte{packed(t, spec, "0200", "000001"), []byte("04"), []byte("04x0")} {
		if err := q.Enqueue(context.Background(), "bank", "", "t1", msg); err == nil {
			t.Errorf("Enqueue(%q...) accepted", msg[:min(4, len(msg))])
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(context.Background(), "bank", "", "t1", packed(t, spec, "0420", "000001")); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close: %v, want ErrClosed", err)
	}
}

func TestBlackHoleBankNeitherBlocksEnqueueNorClose(t *testing.T) {
	spec := testSpec(t, "iso87-ascii")
	dir := t.TempDir()
	inSend := make(chan struct{}, 1)
	hole := SenderFunc(func(ctx context.Context, _, _ string, _ []byte) (string, error) {
		inSend <- struct{}{}
		<-ctx.Done() // the bank never answers
		return "", ctx.Err()
	})
	q := openQueue(t, dir, hole, newClock(), Policy{SendTimeout: time.Hour}, nil)
	ctx := context.Background()
	if err := q.Enqueue(ctx, "bank", "", "t1", packed(t, spec, "0420", "000001")); err != nil {
		t.Fatal(err)
	}
	<-inSend
	for _, stan := range []string{"000002", "000003"} {
		if err := q.Enqueue(ctx, "bank", "", "t"+stan, packed(t, spec, "0420", stan)); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(); err != nil { // cancels the send in progress; goleak checks the workers ended
		t.Fatal(err)
	}

	snd := newSender(t, spec, ack)
	q = openQueue(t, dir, snd, newClock(), Policy{}, nil)
	defer q.Close()
	eventually(t, "drained after restart", func() bool { return len(snd.sent("bank")) == 3 && len(q.Pending()) == 0 })
	if got := snd.sent("bank"); got[0].MTI != "0421" || !slices.Equal(stans(got), []string{"000001", "000002", "000003"}) {
		t.Errorf("sent %v with first MTI %s, want the three in order, the interrupted one as 0421", stans(got), got[0].MTI)
	}
}
