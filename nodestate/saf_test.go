package nodestate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/railswitch/railswitch/internal/faultproxy"
	"github.com/railswitch/railswitch/saf"
	"github.com/redis/go-redis/v9"
)

// Test leases are short, so a takeover comes quickly, but long enough that a live node keeps its lease on a
// loaded machine.
const (
	testTTL       = 1500 * time.Millisecond
	testHeartbeat = 150 * time.Millisecond
)

// testLease takes a test lease for node, closed when the test ends.
func testLease(t testing.TB, rdb redis.UniversalClient, prefix, node string) *Lease {
	t.Helper()
	l, err := AcquireLease(ctxT(t), rdb, LeaseConfig{Prefix: prefix, Node: node, TTL: testTTL, Heartbeat: testHeartbeat})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// die stops a lease's renewals without releasing it: the node crashed.
func (l *Lease) die() {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.stop)
		<-l.done
	}
}

func testEntry(node string, seq uint64, acquirer string) *saf.Entry {
	q := time.Date(2026, 11, 27, 10, 0, 0, int(seq), time.UTC)
	return &saf.Entry{ID: fmt.Sprintf("%s-%d", node, seq), Seq: seq, Acquirer: acquirer, Link: acquirer + "/primary/0",
		TxnID: fmt.Sprintf("txn-%d", seq), Kind: saf.KindReversal, MTI: "0420", Node: node, Queued: q, Since: q, Next: q,
		Sealed: []byte{1, 0xAA, byte(seq), 0, 0xFF}}
}

func TestRedisSAFStorePutLoadRemoveRoundTrip(t *testing.T) {
	rdb, prefix := realRedis(t)
	l := testLease(t, rdb, prefix, "n1")
	ctx := ctxT(t)
	st, err := l.Store(ctx, "reversals")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := l.Store(ctx, "intents")
	e1, e2, e3 := testEntry("n1", 1, "bankA"), testEntry("n1", 2, "bankB"), testEntry("n1", 3, "bankA")
	for _, e := range []*saf.Entry{e3, e1, e2} {
		if err := st.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// A new state without the message keeps the message stored first.
	upd := *e1
	upd.Sealed, upd.Attempts, upd.Sent, upd.LastError, upd.Next = nil, 3, 3, "timeout", upd.Next.Add(time.Minute)
	if err := st.Put(ctx, &upd); err != nil {
		t.Fatal(err)
	}
	if err := other.Put(ctx, testEntry("n1", 9, "bankA")); err != nil {
		t.Fatal(err)
	}
	got, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("loaded %d entries, want 3 (the other set kept apart)", len(got))
	}
	want := []*saf.Entry{&upd, e2, e3}
	want[0].Sealed = e1.Sealed
	for i, w := range want {
		g := got[i]
		if g.ID != w.ID || g.Attempts != w.Attempts || g.Sent != w.Sent || g.LastError != w.LastError || !g.Next.Equal(w.Next) ||
			!g.Queued.Equal(w.Queued) || g.Acquirer != w.Acquirer || g.Link != w.Link || g.MTI != w.MTI || !bytes.Equal(g.Sealed, w.Sealed) {
			t.Fatalf("entry %d: got %+v, want %+v", i, g, w)
		}
	}
	if err := st.Remove(ctx, "bankA", e1.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.Remove(ctx, "bankA", "never-there"); err != nil {
		t.Fatalf("removing an unknown entry: %v", err)
	}
	got, _ = st.Load(ctx)
	if len(got) != 2 || got[0].ID != e2.ID {
		t.Fatalf("after remove: %v", ids(got))
	}
	unknown := testEntry("n1", 77, "bankA")
	unknown.Sealed = nil
	if err := st.Put(ctx, unknown); !errors.Is(err, saf.ErrNotFound) {
		t.Fatalf("state of an unknown entry without message: %v", err)
	}
	st.Close()
	if _, err := st.Load(ctx); !errors.Is(err, saf.ErrClosed) {
		t.Fatalf("load after close: %v", err)
	}
}

func ids(es []*saf.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// TestRedisSAFStoreIsUsableByTheQueue opens a saf.Queue on the Redis store: an entry queued before a
// restart is delivered after it.
func TestRedisSAFStoreIsUsableByTheQueue(t *testing.T) {
	rdb, prefix := realRedis(t)
	l := testLease(t, rdb, prefix, "n1")
	ctx := ctxT(t)
	sealer, err := saf.NewAESGCM(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	open := func(sender saf.Sender) *saf.Queue {
		st, err := l.Store(ctx, "reversals")
		if err != nil {
			t.Fatal(err)
		}
		q, err := saf.Open(ctx, saf.Config{Store: st, Sealer: sealer, Sender: sender, Node: "n1",
			Wait: func(ctx context.Context, d time.Duration) error {
				select { // backoffs shortened to 10ms
				case <-time.After(10 * time.Millisecond):
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	down := saf.SenderFunc(func(context.Context, string, string, []byte) (string, error) { return "", errors.New("bank down") })
	q := open(down)
	if err := q.Enqueue(ctx, "bankA", "", "txn-1", []byte("0420REVERSAL")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "first send failed and stored", func() bool {
		p := q.Pending()
		return len(p) == 1 && p[0].Attempts == 1
	})
	q.Close()
	var mu sync.Mutex
	var sent []string
	q = open(saf.SenderFunc(func(_ context.Context, _, _ string, msg []byte) (string, error) {
		mu.Lock()
		sent = append(sent, string(msg))
		mu.Unlock()
		return "00", nil
	}))
	defer q.Close()
	eventually(t, 10*time.Second, "entry delivered after the restart", func() bool { return len(q.Pending()) == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 1 || sent[0] != "0421REVERSAL" {
		t.Fatalf("sent %q, want the repeat 0421", sent)
	}
	st, _ := l.Store(ctx, "reversals")
	if left, _ := st.Load(ctx); len(left) != 0 {
		t.Fatalf("%d entries left in Redis", len(left))
	}
}

func TestRedisLeaseHeldByOneProcessAtATime(t *testing.T) {
	rdb, prefix := realRedis(t)
	first := testLease(t, rdb, prefix, "n1")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := AcquireLease(ctx, rdb, LeaseConfig{Prefix: prefix, Node: "n1", TTL: testTTL,
		Heartbeat: testHeartbeat}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second process took a held lease: %v", err)
	}
	// After a crash the next life of the node gets the lease once the old one expired.
	first.die()
	start := time.Now()
	second := testLease(t, rdb, prefix, "n1")
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("waited %s for an expired lease", waited)
	}
	st, _ := first.Store(ctxT(t), "reversals")
	if err := st.Put(ctxT(t), testEntry("n1", 1, "bankA")); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("the old life wrote with a lease it lost: %v", err)
	}
	st2, _ := second.Store(ctxT(t), "reversals")
	if err := st2.Put(ctxT(t), testEntry("n1", 1, "bankA")); err != nil {
		t.Fatal(err)
	}
}

func TestRedisLeaseLostIsReportedAndFencesWrites(t *testing.T) {
	rdb, prefix := realRedis(t)
	lost := make(chan error, 1)
	l, err := AcquireLease(ctxT(t), rdb, LeaseConfig{Prefix: prefix, Node: "n1", TTL: testTTL,
		Heartbeat: testHeartbeat, OnLost: func(err error) { lost <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, _ := l.Store(ctxT(t), "reversals")
	// Another process overwrote the lease (an operator, or a split where it expired and was retaken).
	if err := rdb.Set(ctxT(t), l.keys.lease, "intruder", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-lost:
		if !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("OnLost got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("lease loss not reported")
	}
	<-l.Lost()
	if err := st.Put(ctxT(t), testEntry("n1", 1, "bankA")); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("put after the lease was lost: %v", err)
	}
	if err := st.Remove(ctxT(t), "bankA", "n1-1"); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("remove after the lease was lost: %v", err)
	}
	if _, err := l.Takeover(ctxT(t), nil); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("takeover by a node without its lease: %v", err)
	}
	if v := rdb.Get(ctxT(t), l.keys.lease).Val(); v != "intruder" {
		t.Fatalf("lease now %q: Close of the old holder must not delete another's lease", v)
	}
}

// TestTakeoverOfADeadNodeByExactlyOneOfTwoSurvivors kills a node holding entries in two sets and lets two
// survivors run their takeover loops concurrently: every entry is handed out exactly once, in queue order per
// set, and the dead node's keys are gone afterwards.
func TestTakeoverOfADeadNodeByExactlyOneOfTwoSurvivors(t *testing.T) {
	tests := []struct {
		name string
		kill func(*Lease)
	}{
		{"crash: the lease expires", (*Lease).die},
		{"clean stop: the lease is released", func(l *Lease) { l.Close() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rdb, prefix := realRedis(t)
			dead := testLease(t, rdb, prefix, "n1")
			ctx := ctxT(t)
			const perSet = 150
			want := map[string]bool{}
			for _, set := range []string{"reversals", "intents"} {
				st, _ := dead.Store(ctx, set)
				for i := range perSet {
					e := testEntry("n1", uint64(i+1), []string{"bankA", "bankB"}[i%2])
					e.ID = set + "-" + e.ID
					if err := st.Put(ctx, e); err != nil {
						t.Fatal(err)
					}
					want[e.ID] = true
				}
			}
			// The survivors start before the node dies: a live node is never taken over.
			var mu sync.Mutex
			handed := map[string]string{} // entry id -> survivor
			order := map[string][]uint64{}
			var dup []string
			loopCtx, stop := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for _, name := range []string{"n2", "n3"} {
				rdbS := newClient(t, redisAddr())
				s := testLease(t, rdbS, prefix, name)
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.RunTakeover(loopCtx, func(_ context.Context, node, set string, e *saf.Entry) error {
						if node != "n1" || len(e.Sealed) == 0 {
							return fmt.Errorf("entry %s of node %s without message", e.ID, node)
						}
						mu.Lock()
						defer mu.Unlock()
						if _, ok := handed[e.ID]; ok {
							dup = append(dup, e.ID)
						}
						handed[e.ID] = name
						order[set] = append(order[set], e.Seq)
						return nil
					}, func(err error) { t.Errorf("survivor %s: %v", name, err) })
				}()
			}
			time.Sleep(300 * time.Millisecond)
			mu.Lock()
			early := len(handed)
			mu.Unlock()
			if early != 0 {
				t.Fatalf("%d entries of a live node taken over", early)
			}
			tc.kill(dead)
			eventually(t, 20*time.Second, "all entries handed over", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(handed) == len(want)
			})
			time.Sleep(500 * time.Millisecond) // a few more rounds: nothing is handed out again
			stop()
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			if len(dup) > 0 || len(handed) != len(want) {
				t.Fatalf("handed out %d of %d, duplicates %v", len(handed), len(want), dup)
			}
			for set, seqs := range order {
				if !slices.IsSorted(seqs) {
					t.Errorf("set %s handed out out of order", set)
				}
			}
			keys := dead.keys
			for _, set := range []string{"reversals", "intents"} {
				if n := rdb.Exists(ctx, keys.meta(set), keys.msg(set)).Val(); n != 0 {
					t.Errorf("set %s of the dead node still has %d keys", set, n)
				}
			}
			if n := rdb.Exists(ctx, keys.claim, keys.sets).Val(); n != 0 {
				t.Errorf("claim or set list left behind")
			}
			if rdb.SIsMember(ctx, dead.ks.nodes(), "n1").Val() {
				t.Errorf("the dead node is still registered")
			}
		})
	}
}

// TestTakeoverStopsAtACallbackErrorAndKeepsTheRest checks an entry whose callback fails stays with the dead
// node and is handed out again in a later round, and that the node cannot come back while a claim is held.
func TestTakeoverStopsAtACallbackErrorAndKeepsTheRest(t *testing.T) {
	rdb, prefix := realRedis(t)
	dead := testLease(t, rdb, prefix, "n1")
	survivor := testLease(t, newClient(t, redisAddr()), prefix, "n2")
	ctx := ctxT(t)
	st, _ := dead.Store(ctx, "reversals")
	for i := range 3 {
		if err := st.Put(ctx, testEntry("n1", uint64(i+1), "bankA")); err != nil {
			t.Fatal(err)
		}
	}
	dead.die()
	eventually(t, 10*time.Second, "lease expired", func() bool { return rdb.Exists(ctx, dead.keys.lease).Val() == 0 })
	var got []string
	fail := errors.New("queue full")
	n, err := survivor.Takeover(ctx, func(_ context.Context, _, _ string, e *saf.Entry) error {
		if e.Seq == 2 {
			return fail
		}
		got = append(got, e.ID)
		return nil
	})
	if !errors.Is(err, fail) || n != 1 {
		t.Fatalf("takeover: %d, %v; want 1 and the callback's error", n, err)
	}
	if rdb.Exists(ctx, dead.keys.claim).Val() != 0 {
		t.Fatal("claim kept after a failed round")
	}
	n, err = survivor.Takeover(ctx, func(_ context.Context, _, _ string, e *saf.Entry) error {
		got = append(got, e.ID)
		return nil
	})
	if err != nil || n != 2 || !slices.Equal(got, []string{"n1-1", "n1-2", "n1-3"}) {
		t.Fatalf("second round: %d, %v, handed %v", n, err, got)
	}
}

// TestNodeCannotRestartWhileASurvivorHoldsItsClaim checks a node's next life waits for a takeover in
// progress, so its queue and the survivor's never hold the same entries.
func TestNodeCannotRestartWhileASurvivorHoldsItsClaim(t *testing.T) {
	rdb, prefix := realRedis(t)
	dead := testLease(t, rdb, prefix, "n1")
	survivor := testLease(t, newClient(t, redisAddr()), prefix, "n2")
	ctx := ctxT(t)
	st, _ := dead.Store(ctx, "reversals")
	if err := st.Put(ctx, testEntry("n1", 1, "bankA")); err != nil {
		t.Fatal(err)
	}
	dead.Close()
	inCallback, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := survivor.Takeover(ctx, func(context.Context, string, string, *saf.Entry) error {
			close(inCallback)
			<-release
			return nil
		})
		done <- err
	}()
	<-inCallback
	short, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	if _, err := AcquireLease(short, rdb, LeaseConfig{Prefix: prefix, Node: "n1", TTL: testTTL,
		Heartbeat: testHeartbeat}); err == nil {
		t.Fatal("node restarted during a takeover of its entries")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	again := testLease(t, rdb, prefix, "n1")
	st2, _ := again.Store(ctx, "reversals")
	if left, err := st2.Load(ctx); err != nil || len(left) != 0 {
		t.Fatalf("restarted node loads %v, %v; want nothing (taken over)", ids(left), err)
	}
}

// TestRedisSAFStoreCutOffFailsWithinTheDeadline checks the queue store through a proxy that stops answering
// (a black hole: connections stay open, nothing is answered).
func TestRedisSAFStoreCutOffFailsWithinTheDeadline(t *testing.T) {
	_, prefix := realRedis(t)
	proxy := faultproxy.Start(t, redisAddr())
	rdb := newClient(t, proxy.Addr())
	l, err := AcquireLease(ctxT(t), rdb, LeaseConfig{Prefix: prefix, Node: "n1", TTL: 3 * time.Second, Heartbeat: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, _ := l.Store(ctxT(t), "reversals")
	proxy.BlackHole()
	for _, op := range []struct {
		name string
		call func(context.Context) error
	}{
		{"put", func(ctx context.Context) error { return st.Put(ctx, testEntry("n1", 1, "bankA")) }},
		{"load", func(ctx context.Context) error { _, err := st.Load(ctx); return err }},
		{"remove", func(ctx context.Context) error { return st.Remove(ctx, "bankA", "n1-1") }},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		err := op.call(ctx)
		cancel()
		if err == nil || time.Since(start) > 5*time.Second {
			t.Errorf("%s: err %v after %s", op.name, err, time.Since(start))
		}
	}
	proxy.Restore()
	eventually(t, 15*time.Second, "store works again", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return st.Put(ctx, testEntry("n1", 1, "bankA")) == nil
	})
}
