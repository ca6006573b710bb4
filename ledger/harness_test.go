package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/railswitch/railswitch/journal"
)

// The test services (docs: /work/notes/preamble.md); a test whose service does not answer is skipped.
const (
	pgAddr    = "127.0.0.1:5432"
	redisAddr = "127.0.0.1:6379"
	natsAddr  = "127.0.0.1:4222"
	// testHorizon is the retry horizon the tests open sinks with.
	testHorizon = time.Hour
)

func pgDSN(addr string) string {
	return "postgres://postgres@" + addr + "/test?sslmode=disable"
}

// requireService skips the test when nothing listens on addr.
func requireService(t testing.TB, what, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Skipf("%s not reachable at %s: %v", what, addr, err)
	}
	c.Close()
}

// uniq returns a fresh lower-case suffix for table, stream and subject names.
func uniq() string {
	b := make([]byte, 5)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// testRecords returns records n..n+count-1 of a deterministic series (keys "T-<n>/authorization").
func testRecords(from, count int) []journal.Record {
	recs := make([]journal.Record, count)
	base := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	for i := range recs {
		n := from + i
		recs[i] = journal.Record{
			TxnID: fmt.Sprintf("T-%06d", n), Kind: journal.KindAuthorization, Posting: true,
			Bureau: []string{"BJ", "SH", "GZ"}[n%3], Station: "BJN", Channel: "pos", Terminal: fmt.Sprintf("T%07d", n%50),
			Merchant: "M00000000000001", Acquirer: "bank-a", MTI: "0200", ProcessingCode: "000000",
			Amount: int64(100 + n), Currency: "156", ResponseCode: "00", AuthCode: "A1B2C3", RRN: fmt.Sprintf("%012d", n),
			TerminalSTAN: fmt.Sprintf("%06d", n%1000000), AcquirerSTAN: fmt.Sprintf("%06d", (n+7)%1000000),
			PAN: journal.MaskPAN("4111111111111111"), TerminalLocalTime: "1127080000",
			ReceivedAt: base.Add(time.Duration(n) * time.Second), AnsweredAt: base.Add(time.Duration(n)*time.Second + 80*time.Millisecond),
		}
		if n%10 == 9 { // some reversals of the previous record, without an answer
			recs[i].Kind, recs[i].OriginalTxnID, recs[i].MTI, recs[i].AuthCode = journal.KindReversal, fmt.Sprintf("T-%06d", n-1), "0400", ""
			recs[i].AnsweredAt = time.Time{}
		}
	}
	return recs
}

// backend is one sink type under test: open makes a sink reaching its server at addr (possibly a proxy),
// count returns the entries stored, stored returns the stored form of a key as a Record (found false if none).
type backend struct {
	name     string
	upstream string
	open     func(t testing.TB, addr string) journal.Sink
	count    func(t testing.TB) int
	stored   func(t testing.TB, key string) (journal.Record, bool)
}

// backends returns the three sinks, each on its own table, stream or subject, removed when the test ends.
func backends(t testing.TB) []backend {
	return []backend{postgresBackend(t), redisBackend(t), natsBackend(t)}
}

func openSink(t testing.TB, c Config) journal.Sink {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, c, testHorizon, nil)
	if err != nil {
		t.Fatalf("open %s sink: %v", c.Type, err)
	}
	t.Cleanup(func() { s.(interface{ Close() error }).Close() })
	return s
}

func postgresBackend(t testing.TB) backend {
	table := "ledger_test_" + uniq()
	b := backend{name: "postgres", upstream: pgAddr}
	var admin *pgx.Conn
	adminConn := func(t testing.TB) *pgx.Conn {
		t.Helper()
		if admin == nil {
			requireService(t, "postgres", pgAddr)
			c, err := pgx.Connect(context.Background(), pgDSN(pgAddr))
			if err != nil {
				t.Fatalf("postgres: %v", err)
			}
			admin = c
			t.Cleanup(func() {
				admin.Exec(context.Background(), "DROP TABLE IF EXISTS "+table)
				admin.Close(context.Background())
			})
		}
		return admin
	}
	b.open = func(t testing.TB, addr string) journal.Sink {
		adminConn(t)
		return openSink(t, Config{Type: TypePostgres, Name: "pg", DSN: pgDSN(addr), Table: table, ConnectTimeout: 5 * time.Second})
	}
	b.count = func(t testing.TB) int {
		var n int
		if err := adminConn(t).QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		return n
	}
	b.stored = func(t testing.TB, key string) (journal.Record, bool) {
		var r journal.Record
		var kind, pan string
		var orig, auth *string
		var answered *time.Time
		err := adminConn(t).QueryRow(context.Background(), `SELECT txn_id, kind, original_txn_id, posting, bureau,
			amount, currency, auth_code, pan_masked, received_at, answered_at FROM `+table+` WHERE idempotency_key = $1`, key).
			Scan(&r.TxnID, &kind, &orig, &r.Posting, &r.Bureau, &r.Amount, &r.Currency, &auth, &pan, &r.ReceivedAt, &answered)
		if err == pgx.ErrNoRows {
			return r, false
		}
		if err != nil {
			t.Fatalf("select %s: %v", key, err)
		}
		if err := r.Kind.UnmarshalText([]byte(kind)); err != nil {
			t.Fatal(err)
		}
		if orig != nil {
			r.OriginalTxnID = *orig
		}
		if auth != nil {
			r.AuthCode = *auth
		}
		if answered != nil {
			r.AnsweredAt = *answered
		}
		r.PAN.UnmarshalText([]byte(pan))
		return r, true
	}
	return b
}

func redisBackend(t testing.TB) backend {
	stream := "ledgertest:" + uniq()
	key := RedisStreamKey(stream)
	b := backend{name: "redis", upstream: redisAddr}
	var admin *redis.Client
	adminClient := func(t testing.TB) *redis.Client {
		t.Helper()
		if admin == nil {
			requireService(t, "redis", redisAddr)
			admin = redis.NewClient(&redis.Options{Addr: redisAddr})
			t.Cleanup(func() {
				ctx := context.Background()
				keys, _ := admin.Keys(ctx, RedisDedupKey(key, "*")).Result()
				admin.Del(ctx, append(keys, key)...)
				admin.Close()
			})
		}
		return admin
	}
	b.open = func(t testing.TB, addr string) journal.Sink {
		adminClient(t)
		return openSink(t, Config{Type: TypeRedis, Name: "redis", Address: addr, Stream: stream, ConnectTimeout: 5 * time.Second})
	}
	b.count = func(t testing.TB) int {
		n, err := adminClient(t).XLen(context.Background(), key).Result()
		if err != nil {
			t.Fatalf("xlen %s: %v", key, err)
		}
		return int(n)
	}
	b.stored = func(t testing.TB, k string) (journal.Record, bool) {
		ctx := context.Background()
		id, err := adminClient(t).Get(ctx, RedisDedupKey(key, k)).Result()
		if err == redis.Nil {
			return journal.Record{}, false
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := admin.XRange(ctx, key, id, id).Result()
		if err != nil || len(msgs) != 1 {
			t.Fatalf("xrange %s: %v %d", id, err, len(msgs))
		}
		if msgs[0].Values[RedisFieldKey] != k {
			t.Fatalf("entry %s has key %v, want %s", id, msgs[0].Values[RedisFieldKey], k)
		}
		var r journal.Record
		if err := json.Unmarshal([]byte(msgs[0].Values[RedisFieldRecord].(string)), &r); err != nil {
			t.Fatal(err)
		}
		return r, true
	}
	return b
}

func natsBackend(t testing.TB) backend {
	u := uniq()
	stream, subject := "LEDGERTEST_"+strings.ToUpper(u), "ledgertest."+u
	b := backend{name: "nats", upstream: natsAddr}
	var js jetstream.JetStream
	admin := func(t testing.TB) jetstream.JetStream {
		t.Helper()
		if js == nil {
			requireService(t, "nats", natsAddr)
			nc, err := nats.Connect("nats://" + natsAddr)
			if err != nil {
				t.Fatalf("nats: %v", err)
			}
			js, _ = jetstream.New(nc)
			t.Cleanup(func() {
				js.DeleteStream(context.Background(), stream)
				nc.Close()
			})
		}
		return js
	}
	b.open = func(t testing.TB, addr string) journal.Sink {
		admin(t)
		return openSink(t, Config{Type: TypeNATS, Name: "nats", URL: "nats://" + addr, Stream: stream, Subject: subject,
			CreateStream: true, DuplicateWindow: 2 * testHorizon, ConnectTimeout: 5 * time.Second})
	}
	b.count = func(t testing.TB) int {
		s, err := admin(t).Stream(context.Background(), stream)
		if err != nil {
			t.Fatalf("stream %s: %v", stream, err)
		}
		return int(s.CachedInfo().State.Msgs)
	}
	b.stored = func(t testing.TB, k string) (journal.Record, bool) {
		ctx := context.Background()
		s, err := admin(t).Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		// Scan the stream for the message id: tests keep streams small.
		for seq := uint64(1); seq <= s.CachedInfo().State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				continue
			}
			if m.Header.Get(jetstream.MsgIDHeader) == k {
				var r journal.Record
				if err := json.Unmarshal(m.Data, &r); err != nil {
					t.Fatal(err)
				}
				return r, true
			}
		}
		return journal.Record{}, false
	}
	return b
}
