package saf

import (
	"context"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestAdvicesAreAcknowledgedByTheirOwnCodes: an advice is settled by 00 or 94 (the acquirer has it); 12 and
// 25, which settle a reversal (nothing to reverse), are a refusal for an advice and are retried; a reversal
// keeps its own set; advice_ack_codes replaces the advice set.
func TestAdvicesAreAcknowledgedByTheirOwnCodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mti    string
		policy Policy
		rc     string
		acked  bool
	}{
		{"advice accepted", "0220", Policy{}, "00", true},
		{"advice duplicate: the acquirer has it", "0220", Policy{}, "94", true},
		{"advice refused: original not found", "0220", Policy{}, "25", false},
		{"advice refused: invalid related transaction", "0220", Policy{}, "12", false},
		{"advice system malfunction", "0220", Policy{}, "96", false},
		{"reversal original not found", "0420", Policy{}, "25", true},
		{"custom advice set", "0220", Policy{AdviceAckCodes: []string{"00", "25"}}, "25", true},
		{"custom reversal set leaves advices alone", "0220", Policy{AckCodes: []string{"00", "12"}}, "12", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := testSpec(t, "iso87-ascii")
			snd := newSender(t, spec, func(string, int) (string, error) { return tc.rc, nil })
			clock := newClock()
			clock.gate = make(chan struct{}) // no second attempt
			q := openQueue(t, t.TempDir(), snd, clock, tc.policy, nil)
			defer q.Close()
			if err := q.Enqueue(context.Background(), "bank", "", "t1", packed(t, spec, tc.mti, "000001")); err != nil {
				t.Fatal(err)
			}
			eventually(t, "attempt settled", func() bool {
				p := q.Pending()
				return len(p) == 0 || p[0].LastError != ""
			})
			if acked := len(q.Pending()) == 0; acked != tc.acked {
				t.Errorf("%s answered %s: acknowledged %t, want %t", tc.mti, tc.rc, acked, tc.acked)
			}
		})
	}
}

// TestAdviceIsSentAs0220ThenRepeatedAs0221: the first send of a queued advice carries 0220 and every repeat
// 0221, with every other byte as queued (the switch's sender re-signs the MAC over the new MTI).
func TestAdviceIsSentAs0220ThenRepeatedAs0221(t *testing.T) {
	spec := testSpec(t, "iso87-ascii")
	snd := newSender(t, spec, func(_ string, n int) (string, error) {
		if n < 3 {
			return "96", nil
		}
		return "00", nil
	})
	q := openQueue(t, t.TempDir(), snd, newClock(), Policy{}, nil)
	defer q.Close()
	msg := packed(t, spec, "0220", "000042")
	if err := q.Enqueue(context.Background(), "bank", "bank/a1/0", "t1", msg); err != nil {
		t.Fatal(err)
	}
	eventually(t, "advice acknowledged", func() bool { return len(q.Pending()) == 0 && len(snd.sent("bank")) == 3 })
	got := snd.sent("bank")
	var mtis []string
	for _, s := range got {
		mtis = append(mtis, s.MTI)
		if string(s.Raw[4:]) != string(msg[4:]) {
			t.Errorf("send %s changed more than the MTI", s.MTI)
		}
	}
	if want := []string{"0220", "0221", "0221"}; !slices.Equal(mtis, want) {
		t.Fatalf("sent %v, want %v", mtis, want)
	}
}

func TestPolicyReadsAdviceAckCodes(t *testing.T) {
	var p Policy
	if err := yaml.Unmarshal([]byte("advice_ack_codes: [\"00\"]\n"), &p); err != nil {
		t.Fatal(err)
	}
	p = p.withDefaults()
	if !slices.Equal(p.AdviceAckCodes, []string{"00"}) || !slices.Equal(p.AckCodes, DefaultPolicy().AckCodes) {
		t.Fatalf("advice codes %v, reversal codes %v", p.AdviceAckCodes, p.AckCodes)
	}
	if d := (Policy{}).withDefaults(); !slices.Equal(d.AdviceAckCodes, []string{"00", "94"}) {
		t.Fatalf("default advice codes %v", d.AdviceAckCodes)
	}
}
