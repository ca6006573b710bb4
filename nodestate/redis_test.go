package nodestate

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/railswitch/railswitch/flow"
	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/internal/faultproxy"
	"github.com/railswitch/railswitch/terminal"
)

func TestRedisSessionPutOnOneNodeIsReadOnAnother(t *testing.T) {
	rdbA, prefix := realRedis(t)
	rdbB := newClient(t, redisAddr())
	nodeA, err := NewRedisSessions(rdbA, prefix)
	if err != nil {
		t.Fatal(err)
	}
	nodeB, _ := NewRedisSessions(rdbB, prefix)
	ctx := ctxT(t)
	tdk := hsm.Key{Name: "term/T0000001/tdk", Version: 1, Type: hsm.KeyTDK, Algorithm: hsm.AlgTDES, Length: 16, Cryptogram: "U00112233445566778899AABBCCDDEEFF", KCV: "123456"}
	tests := []struct {
		name string
		s    terminal.Session
	}{
		{"signed on with a TDK", terminal.Session{TID: "T0000001", SignedOn: true, Batch: "000001", NetCode: "001",
			PIK: hsm.Key{Name: "term/T0000001/pik", Version: 2, Type: hsm.KeyTPK, Algorithm: hsm.AlgTDES, Length: 16, Cryptogram: "UA1B2", KCV: "AAAAAA"}, MAK: hsm.Key{Name: "term/T0000001/mak", Version: 3, Type: hsm.KeyTAK, Algorithm: hsm.AlgTDES, Length: 16, Cryptogram: "UC3D4", KCV: "BBBBBB"},
			TDK: &tdk, SignedOnAt: time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)}},
		{"signed off", testSession("T0000002", false, "000042")},
		{"terminal id with key characters", testSession("T{9}:%", true, "000007")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := nodeA.Put(ctx, tc.s); err != nil {
				t.Fatal(err)
			}
			got, ok, err := nodeB.Get(ctx, tc.s.TID)
			if err != nil || !ok {
				t.Fatalf("node B: ok %v err %v", ok, err)
			}
			if got.TID != tc.s.TID || got.SignedOn != tc.s.SignedOn || got.Batch != tc.s.Batch || got.PIK != tc.s.PIK ||
				got.MAK != tc.s.MAK || !got.SignedOnAt.Equal(tc.s.SignedOnAt) || (got.TDK == nil) != (tc.s.TDK == nil) ||
				(got.TDK != nil && *got.TDK != *tc.s.TDK) {
				t.Fatalf("node B read %+v, node A put %+v", got, tc.s)
			}
		})
	}
	if _, ok, err := nodeB.Get(ctx, "NEVER"); ok || err != nil {
		t.Fatalf("unknown terminal: ok %v err %v", ok, err)
	}
}

func TestRedisBatchTotalsFromTwoNodesAddUp(t *testing.T) {
	rdbA, prefix := realRedis(t)
	rdbB := newClient(t, redisAddr())
	a, _ := NewRedisBatches(rdbA, prefix, 0)
	b, _ := NewRedisBatches(rdbB, prefix, 0)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, node := range []*RedisBatches{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				// 200 purchases of 100, 50 refunds of 30 and 20 voids of a purchase, per node
				if err := node.Add(ctx, "T1", "000001", true, 100, 1); err != nil {
					errs <- err
					return
				}
				if i < 50 {
					if err := node.Add(ctx, "T1", "000001", false, 30, 1); err != nil {
						errs <- err
						return
					}
				}
				if i < 20 {
					if err := node.Add(ctx, "T1", "000001", true, -100, -1); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := a.Totals(ctx, "T1", "000001")
	if err != nil {
		t.Fatal(err)
	}
	want := terminal.Totals{DebitAmount: 2 * 180 * 100, DebitCount: 2 * 180, CreditAmount: 2 * 50 * 30, CreditCount: 100}
	if got != want {
		t.Fatalf("totals %+v, want %+v", got, want)
	}
	if other, _ := b.Totals(ctx, "T1", "000002"); other != (terminal.Totals{}) {
		t.Fatalf("another batch has totals %+v", other)
	}
	ttl := rdbA.PTTL(ctx, a.keys.batch("T1", "000001")).Val()
	if ttl <= 7*24*time.Hour || ttl > DefaultTxnTTL {
		t.Fatalf("batch TTL %s, want about %s", ttl, DefaultTxnTTL)
	}
}

func TestRedisTxnsFoundByTraceAndRRNOnAnotherNodeAndExpire(t *testing.T) {
	rdbA, prefix := realRedis(t)
	rdbB := newClient(t, redisAddr())
	a, _ := NewRedisTxns(rdbA, prefix, 1500*time.Millisecond)
	b, _ := NewRedisTxns(rdbB, prefix, 1500*time.Millisecond)
	ctx := ctxT(t)
	orig := flow.Txn{ID: "n1-abc", Acquirer: "bankA", Link: "bankA/primary/0", Amount: 12345, RRN: "633101000123",
		AuthCode: "A1B2C3", AcqSTAN: "000123", OriginalData: "0200000123112708000000000001234500000012345", Counted: true, Debit: true}
	if err := a.Put(ctx, "T1", "000001", "000017", orig); err != nil {
		t.Fatal(err)
	}
	noRRN := flow.Txn{ID: "n1-def", Acquirer: "bankA", Amount: 1}
	if err := a.Put(ctx, "T1", "000001", "000018", noRRN); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		get  func() (flow.Txn, bool, error)
		want flow.Txn
		ok   bool
	}{
		{"by batch and trace", func() (flow.Txn, bool, error) { return b.Get(ctx, "T1", "000001", "000017") }, orig, true},
		{"by RRN", func() (flow.Txn, bool, error) { return b.GetByRRN(ctx, "T1", "633101000123") }, orig, true},
		{"without an RRN, by trace", func() (flow.Txn, bool, error) { return b.Get(ctx, "T1", "000001", "000018") }, noRRN, true},
		{"other terminal", func() (flow.Txn, bool, error) { return b.Get(ctx, "T2", "000001", "000017") }, flow.Txn{}, false},
		{"unknown RRN", func() (flow.Txn, bool, error) { return b.GetByRRN(ctx, "T1", "633101000124") }, flow.Txn{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := tc.get()
			if err != nil || ok != tc.ok || got != tc.want {
				t.Fatalf("got %+v %v %v, want %+v %v", got, ok, err, tc.want, tc.ok)
			}
		})
	}
	for _, key := range []string{a.keys.txn("T1", "000001", "000017"), a.keys.rrn("T1", "633101000123")} {
		if ttl := rdbA.PTTL(ctx, key).Val(); ttl <= 0 || ttl > 1500*time.Millisecond {
			t.Fatalf("%s TTL %s, want up to 1.5s", key, ttl)
		}
	}
	eventually(t, 10*time.Second, "originals expire after their TTL", func() bool {
		_, ok1, err1 := b.Get(ctx, "T1", "000001", "000017")
		_, ok2, err2 := b.GetByRRN(ctx, "T1", "633101000123")
		return !ok1 && !ok2 && err1 == nil && err2 == nil
	})
}

func TestRedisDefaultTxnTTLIsEightDays(t *testing.T) {
	rdb, prefix := realRedis(t)
	s, _ := NewRedisTxns(rdb, prefix, 0)
	ctx := ctxT(t)
	if err := s.Put(ctx, "T1", "1", "2", flow.Txn{ID: "x", RRN: "1"}); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, s.keys.txn("T1", "1", "2")).Val(); ttl < DefaultTxnTTL-time.Minute || ttl > DefaultTxnTTL {
		t.Fatalf("TTL %s, want %s", ttl, DefaultTxnTTL)
	}
}

func TestKeyPrefixWithBracesIsRefused(t *testing.T) {
	for _, p := range []string{"a{b", "a}b", "{x}"} {
		if _, err := NewRedisSessions(nil, p); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
}

func TestKeysOfOneTerminalShareAHashTagAndNamesCannotEscapeIt(t *testing.T) {
	ks, _ := newKeyspace("p")
	tests := []struct {
		name string
		keys []string
		tag  string
	}{
		{"plain", []string{ks.session("T1"), ks.batch("T1", "000001"), ks.txn("T1", "1", "2"), ks.rrn("T1", "9")}, "t:T1"},
		{"braces and colons", []string{ks.session("a}b{c:"), ks.txn("a}b{c:", "1", "2"), ks.rrn("a}b{c:", "9")}, "t:a%7Db%7Bc%3A"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range tc.keys {
				if got := hashTag(k); got != tc.tag {
					t.Errorf("%s: tag %q, want %q", k, got, tc.tag)
				}
			}
		})
	}
	if ks.txn("T", "1:2", "3") == ks.txn("T", "1", "2:3") {
		t.Fatal("batch and trace run into each other")
	}
}

// hashTag is the part of key Redis Cluster hashes.
func hashTag(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					return key[i+1 : j]
				}
			}
		}
	}
	return key
}

// TestRedisCutOffGivesErrorsNotHangsAndRecovers runs every store through a fault proxy, takes Redis away
// (Cut: connections reset and new ones closed at once; BlackHole: connections stay open and nothing is
// answered, so only the deadline ends a call) and checks each call fails within its context deadline, then
// works again once Redis is back.
func TestRedisCutOffGivesErrorsNotHangsAndRecovers(t *testing.T) {
	_, prefix := realRedis(t)
	for _, mode := range []struct {
		name  string
		fault func(*faultproxy.Proxy)
	}{
		{"cut", (*faultproxy.Proxy).Cut},
		{"black_hole", (*faultproxy.Proxy).BlackHole},
	} {
		t.Run(mode.name, func(t *testing.T) {
			proxy := faultproxy.Start(t, redisAddr())
			rdb := newClient(t, proxy.Addr())
			sessions, _ := NewRedisSessions(rdb, prefix)
			batches, _ := NewRedisBatches(rdb, prefix, 0)
			txns, _ := NewRedisTxns(rdb, prefix, 0)
			counter, _ := NewRedisCounter(rdb, RedisCounterConfig{Prefix: prefix, Node: 1})
			ops := []struct {
				name string
				call func(ctx context.Context) error
			}{
				{"session put", func(ctx context.Context) error { return sessions.Put(ctx, testSession("T1", true, "000001")) }},
				{"session get", func(ctx context.Context) error { _, _, err := sessions.Get(ctx, "T1"); return err }},
				{"batch add", func(ctx context.Context) error { return batches.Add(ctx, "T1", "1", true, 1, 1) }},
				{"batch totals", func(ctx context.Context) error { _, err := batches.Totals(ctx, "T1", "1"); return err }},
				{"txn put", func(ctx context.Context) error { return txns.Put(ctx, "T1", "1", "1", flow.Txn{ID: "x", RRN: "1"}) }},
				{"txn get", func(ctx context.Context) error { _, _, err := txns.GetByRRN(ctx, "T1", "1"); return err }},
				{"counter next", func(ctx context.Context) error { _, _, err := counter.Next(ctx, "bankA"); return err }},
			}
			run := func(wantErr bool) {
				for _, op := range ops {
					ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
					start := time.Now()
					err := op.call(ctx)
					took := time.Since(start)
					cancel()
					if (err != nil) != wantErr {
						t.Errorf("%s: err %v, want error %v", op.name, err, wantErr)
					}
					if took > 5*time.Second {
						t.Errorf("%s took %s with a 300ms deadline", op.name, took)
					}
				}
			}
			run(false)
			mode.fault(proxy)
			run(true)
			proxy.Restore()
			// The pool drops the broken connections as calls fail; a few calls may still meet one.
			eventually(t, 15*time.Second, "stores work again once Redis is back", func() bool {
				for _, op := range ops {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					err := op.call(ctx)
					cancel()
					if err != nil {
						return false
					}
				}
				return true
			})
		})
	}
}

func TestRedisErrorsNameTheTerminal(t *testing.T) {
	_, prefix := realRedis(t)
	proxy := faultproxy.Start(t, redisAddr())
	rdb := newClient(t, proxy.Addr())
	s, _ := NewRedisSessions(rdb, prefix)
	proxy.Cut()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, _, err := s.Get(ctx, "T0000042")
	if err == nil || !contains(err.Error(), "T0000042") {
		t.Fatalf("err %v does not name the terminal", err)
	}
	if errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// testSession is a session with working keys of the right types (the cryptograms are made up).
func testSession(tid string, signedOn bool, batch string) terminal.Session {
	k := func(typ hsm.KeyType, c string) hsm.Key {
		return hsm.Key{Name: "term/" + tid + "/" + typ.String(), Version: 1, Type: typ, Algorithm: hsm.AlgTDES, Length: 16,
			Cryptogram: c, KCV: "000000"}
	}
	return terminal.Session{TID: tid, SignedOn: signedOn, Batch: batch, PIK: k(hsm.KeyTPK, "U11"), MAK: k(hsm.KeyTAK, "U22")}
}
