package limits

import (
	"strconv"
	"testing"
	"time"
)

func TestStoreDropsIdleKeysOnlyWhenTheirStateIsFresh(t *testing.T) {
	s := newStore(time.Minute)
	sp := &Spec{Rate: 1, Burst: 2}
	conc := &Spec{Concurrency: 1}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.get(entryKey{key: "idle"}, sp, t0)
	busy := s.get(entryKey{key: "in-flight"}, conc, t0)
	busy.inflight.Add(1)
	drained := s.get(entryKey{key: "drained"}, &Spec{Rate: 0.001, Burst: 1}, t0)
	drained.lim.Load().AllowN(t0, 1) // takes ~17 min to refill

	// Ten minutes later, inserting keys sweeps the shards.
	later := t0.Add(10 * time.Minute)
	for i := range 1000 {
		s.get(entryKey{key: "new-" + strconv.Itoa(i)}, sp, later)
	}
	has := func(k string) bool {
		_, ok := s.shard(k).m[entryKey{key: k}]
		return ok
	}
	if has("idle") {
		t.Error("idle key with a full bucket was kept")
	}
	if !has("in-flight") {
		t.Error("idle key with a request in flight was dropped")
	}
	if !has("drained") {
		t.Error("idle key whose bucket is not yet full was dropped (its state would reset)")
	}
	if n := s.len(); n != 1002 {
		t.Errorf("len = %d, want 1002", n)
	}
}

func TestStoreKeepsMemoryBoundedUnderKeyChurn(t *testing.T) {
	s := newStore(time.Second)
	sp := &Spec{Rate: 10, Burst: 1}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for round := range 20 { // 20 rounds of 1,000 terminals that never come back
		for i := range 1000 {
			s.get(entryKey{key: strconv.Itoa(round*1000 + i)}, sp, now)
		}
		now = now.Add(2 * time.Second)
	}
	if n := s.len(); n > 3000 {
		t.Errorf("store holds %d keys after 20,000 one-off terminals, want at most the last rounds'", n)
	}
}

func TestAcquireOnAWarmKeyDoesNotAllocate(t *testing.T) {
	l, _ := newLocal(t, localLimits)
	req := Request{Terminal: "VIP", Merchant: "M1", Acquirer: "icbc"}
	l.Acquire(bg, req)
	if n := testing.AllocsPerRun(1000, func() { l.Acquire(bg, req) }); n != 0 {
		t.Errorf("Acquire allocates %v times per call", n)
	}
}
