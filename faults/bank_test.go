//go:build faults

package faults

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/railswitch/railswitch/internal/faultproxy"
	"github.com/railswitch/railswitch/simulators/bank"
)

// TestBankFaultsKeepEveryApprovalJournaledAndEveryUnansweredRequestReversed breaks bank A's link in one way per
// case while four terminals transact with cards of both banks, then restores it, and asserts: every request got
// an answer; bank B's purchases were approved throughout (one bank's trouble does not spill over); purchases
// to bank A are approved again after the restore; and the money invariants of checkMoney.
func TestBankFaultsKeepEveryApprovalJournaledAndEveryUnansweredRequestReversed(t *testing.T) {
	const timeout = time.Second
	cases := []struct {
		name    string
		inject  func(r *rig) error
		restore func(r *rig) error
	}{
		{"bank disconnects mid-flight", func(r *rig) error {
			// The bank first answers 300 ms late, so that purchases are in flight when the connections drop.
			if err := r.demo.BankA.SetFaults(bank.Faults{LatencyMS: 300}); err != nil {
				return err
			}
			time.Sleep(450 * time.Millisecond)
			r.proxyA.Cut()
			return nil
		}, func(r *rig) error { r.proxyA.Restore(); return r.demo.BankA.SetFaults(bank.Faults{}) }},
		{"bank black hole", func(r *rig) error { r.proxyA.BlackHole(); return nil }, restoreProxy},
		{"bank slower than the timeout", func(r *rig) error { r.proxyA.Delay(timeout * 3 / 2); return nil }, restoreProxy},
		{"garbage frames from the bank", func(r *rig) error { r.proxyA.Corrupt(faultproxy.GarbageFrames(7, 64)); return nil }, restoreProxy},
		{"bytes flipped by the network", func(r *rig) error { r.proxyA.Corrupt(faultproxy.FlipBytes(11)); return nil }, restoreProxy},
		{"wrong bank MAC", func(r *rig) error { return r.demo.BankA.SetFaults(bank.Faults{WrongMAC: 1}) },
			func(r *rig) error { return r.demo.BankA.SetFaults(bank.Faults{}) }},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			r := startRig(t, rigOptions{Timeout: timeout})
			b := newBook()
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); runTraffic(ctx, r.posAddr(), b, trafficOptions{}) }()
			defer func() { cancel(); wg.Wait() }()

			time.Sleep(1500 * time.Millisecond)
			faultAt := time.Now()
			if err := tc.inject(r); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			restoreAt := time.Now()
			if err := tc.restore(r); err != nil {
				t.Fatal(err)
			}
			ready := r.waitReady(30 * time.Second)
			// Recovery: the first purchase to bank A sent after the restore that is approved.
			var recovered time.Duration
			deadline := time.Now().Add(30 * time.Second)
			for recovered == 0 {
				if time.Now().After(deadline) {
					t.Fatal("no purchase to bank A approved within 30s of the restore")
				}
				for _, o := range b.filter(func(o outcome) bool {
					return o.Code == "00" && strings.HasPrefix(o.PAN, prefixA) && o.At.Add(-o.Latency).After(restoreAt)
				}) {
					if d := o.At.Sub(restoreAt); recovered == 0 || d < recovered {
						recovered = d
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(2 * time.Second)
			cancel()
			wg.Wait()

			out, errs := b.snapshot()
			if len(errs) > 0 {
				t.Errorf("%d requests got no answer, first: %v", len(errs), errs[0])
			}
			inFault := func(o outcome) bool { return o.At.After(faultAt) && o.At.Add(-o.Latency).Before(restoreAt) }
			var notApprovedB []outcome
			for _, o := range out {
				if strings.HasPrefix(o.PAN, prefixB) && o.Code != "00" {
					notApprovedB = append(notApprovedB, o)
				}
			}
			if len(notApprovedB) > 0 {
				t.Errorf("bank B, which had no fault, did not approve %d purchases, e.g. %+v", len(notApprovedB), notApprovedB[0])
			}
			faultB := b.filter(func(o outcome) bool { return strings.HasPrefix(o.PAN, prefixB) && inFault(o) })
			if len(faultB) == 0 {
				t.Error("no purchase to bank B was answered while bank A was broken")
			}
			drain := r.checkMoney(b)
			pa, pb := r.proxyA.Stats(), r.proxyB.Stats()
			t.Logf("before the fault: %s", summary(b.filter(func(o outcome) bool { return o.At.Before(faultAt) })))
			t.Logf("during the fault, bank A: %s", summary(b.filter(func(o outcome) bool { return strings.HasPrefix(o.PAN, prefixA) && inFault(o) })))
			t.Logf("during the fault, bank B: %s", summary(faultB))
			t.Logf("after the restore: %s", summary(b.filter(func(o outcome) bool { return o.At.Add(-o.Latency).After(restoreAt) })))
			t.Logf("all: %s; links ready %v after the restore, first bank A approval %v after it; reversal queue empty %v after the traffic stopped",
				summary(out), ready.Round(time.Millisecond), recovered.Round(time.Millisecond), drain.Round(time.Millisecond))
			t.Logf("proxy A: %d connections accepted, %d reset, %d bytes up, %d down; proxy B: %d connections",
				pa.Accepted, pa.Reset, pa.BytesUp, pa.BytesDown, pb.Accepted)
		})
	}
}

func restoreProxy(r *rig) error { r.proxyA.Restore(); return nil }
