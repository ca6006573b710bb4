package ledger

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/railswitch/railswitch/journal"
)

// A table of the configured name but another shape is refused at Open, not at every delivery.
func TestPostgresRefusesForeignTable(t *testing.T) {
	requireService(t, "postgres", pgAddr)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pgDSN(pgAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	table := "ledger_test_" + uniq()
	if _, err := admin.Exec(ctx, "CREATE TABLE "+table+" (id int primary key, note text)"); err != nil {
		t.Fatal(err)
	}
	defer admin.Exec(ctx, "DROP TABLE "+table)
	_, err = Open(ctx, Config{Type: TypePostgres, DSN: pgDSN(pgAddr), Table: table}, testHorizon, nil)
	if err == nil || !strings.Contains(err.Error(), "exists with 0 of the 26 ledger columns") {
		t.Fatalf("open on a foreign table: %v", err)
	}
}

// The table is created in the configured schema, with the per-bureau index, and the key columns are filled.
func TestPostgresCreatesSchemaTableAndIndexes(t *testing.T) {
	requireService(t, "postgres", pgAddr)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pgDSN(pgAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	schema, table := "ledger_schema_"+uniq(), "postings"
	defer admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
	s := openSink(t, Config{Type: TypePostgres, DSN: pgDSN(pgAddr), Schema: schema})
	deliver(t, s, testRecords(0, 30))
	var n, bj int
	var seq *int64
	var version int
	err = admin.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE bureau = 'BJ'), max(journal_seq), min(record_version)
		FROM `+schema+"."+table).Scan(&n, &bj, &seq, &version)
	if err != nil {
		t.Fatal(err)
	}
	if n != 30 || bj != 10 || seq != nil || version != journal.RecordVersion {
		t.Fatalf("rows %d, BJ %d, seq %v, version %d", n, bj, seq, version)
	}
	var idx []string
	rows, _ := admin.Query(ctx, "SELECT indexname FROM pg_indexes WHERE schemaname = $1 ORDER BY 1", schema)
	idx, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := "postings_bureau_received_idx postings_original_idx postings_pkey postings_received_idx postings_txn_idx"; strings.Join(idx, " ") != want {
		t.Fatalf("indexes %v, want %s", idx, want)
	}
}

// hashTag is the part of a key Redis Cluster hashes: the text between the first '{' and the next '}', if not
// empty, else the whole key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// The stream and every dedup key hash to the same Redis Cluster slot, whatever the configured stream looks like.
func TestRedisKeysShareOneClusterSlot(t *testing.T) {
	tests := []struct{ stream, wantKey string }{
		{"railswitch:postings", "{railswitch:postings}"},
		{"ledger:{bj}:postings", "ledger:{bj}:postings"},
		{"odd{}name", "{odd{_name}"},
		{"}", "{_}"},
		{"", "{_}"},
	}
	for _, tt := range tests {
		k := RedisStreamKey(tt.stream)
		if k != tt.wantKey {
			t.Errorf("stream %q: key %q, want %q", tt.stream, k, tt.wantKey)
		}
		for _, id := range []string{"T-1/authorization", "{evil}/void", "a}b{c/refund"} {
			if d := RedisDedupKey(k, id); hashTag(d) != hashTag(k) {
				t.Errorf("dedup key %q hashes on %q, stream %q on %q", d, hashTag(d), k, hashTag(k))
			}
		}
	}
}

// Dedup keys expire after dedup_ttl and hold the id of the entry they guard.
func TestRedisDedupKeysCarryTTLAndEntryID(t *testing.T) {
	requireService(t, "redis", redisAddr)
	stream := "ledgertest:" + uniq()
	key := RedisStreamKey(stream)
	ttl := 50 * time.Hour
	s := openSink(t, Config{Type: TypeRedis, Address: "redis://" + redisAddr + "/0", Stream: stream, DedupTTL: ttl}).(*RedisSink)
	ctx := context.Background()
	defer func() {
		keys, _ := s.Client().Keys(ctx, RedisDedupKey(key, "*")).Result()
		s.Client().Del(ctx, append(keys, key)...)
	}()
	deliver(t, s, testRecords(0, 3))
	dk := RedisDedupKey(key, "T-000001/authorization")
	pttl, err := s.Client().PTTL(ctx, dk).Result()
	if err != nil || pttl <= ttl-time.Minute || pttl > ttl {
		t.Fatalf("ttl of %s: %v %v, want about %v", dk, pttl, err, ttl)
	}
	id, _ := s.Client().Get(ctx, dk).Result()
	msgs, err := s.Client().XRange(ctx, key, id, id).Result()
	if err != nil || len(msgs) != 1 || msgs[0].Values[RedisFieldKey] != "T-000001/authorization" {
		t.Fatalf("entry %s: %v %v", id, msgs, err)
	}
}

// A consumer group reads every record once, acknowledges it, and a redelivery by the switch adds nothing for
// it to read.
func TestRedisConsumerGroupReadsEachRecordOnce(t *testing.T) {
	requireService(t, "redis", redisAddr)
	stream := "ledgertest:" + uniq()
	s := openSink(t, Config{Type: TypeRedis, Address: redisAddr, Stream: stream}).(*RedisSink)
	rdb := s.Client()
	ctx := context.Background()
	key := s.StreamKey()
	defer func() {
		keys, _ := rdb.Keys(ctx, RedisDedupKey(key, "*")).Result()
		rdb.Del(ctx, append(keys, key)...)
	}()
	// The group exists before the first record; MKSTREAM creates the empty stream.
	if err := rdb.XGroupCreateMkStream(ctx, key, "ledger", "0").Err(); err != nil {
		t.Fatal(err)
	}
	deliver(t, s, testRecords(0, 40))
	deliver(t, s, testRecords(20, 40)) // overlaps: only 40-59 are new
	seen := map[string]int{}
	for {
		res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: "ledger", Consumer: "poster-1", Streams: []string{key, ">"}, Count: 25, Block: -1,
		}).Result()
		if err == redis.Nil {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range res[0].Messages {
			var r journal.Record
			if err := json.Unmarshal([]byte(m.Values[RedisFieldRecord].(string)), &r); err != nil {
				t.Fatal(err)
			}
			if r.IdempotencyKey() != m.Values[RedisFieldKey] {
				t.Fatalf("entry %s: key field %v, record key %s", m.ID, m.Values[RedisFieldKey], r.IdempotencyKey())
			}
			seen[r.IdempotencyKey()]++
			ids = append(ids, m.ID)
		}
		if err := rdb.XAck(ctx, key, "ledger", ids...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 60 {
		t.Fatalf("read %d keys, want 60", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("%s read %d times", k, n)
		}
	}
	pending, err := rdb.XPending(ctx, key, "ledger").Result()
	if err != nil || pending.Count != 0 {
		t.Fatalf("pending after ack: %+v %v", pending, err)
	}
}

// A JetStream stream whose duplicate window is shorter than the retry horizon is refused, with the reason;
// with create_stream the sink raises the window and adds its subject, keeping the stream's other settings.
func TestNATSDuplicateWindowBelowHorizon(t *testing.T) {
	requireService(t, "nats", natsAddr)
	ctx := context.Background()
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	u := uniq()
	stream, subject := "LEDGERTEST_"+strings.ToUpper(u), "ledgertest."+u
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"other." + u},
		Storage: jetstream.MemoryStorage, Duplicates: time.Minute, MaxMsgs: 1000}); err != nil {
		t.Fatal(err)
	}
	defer js.DeleteStream(ctx, stream)
	c := Config{Type: TypeNATS, URL: "nats://" + natsAddr, Stream: stream, Subject: subject}

	_, err = Open(ctx, c, testHorizon, nil)
	if err == nil || !strings.Contains(err.Error(), "does not take subject") {
		t.Fatalf("open on a stream without the subject: %v", err)
	}
	c.Subject = "other." + u
	_, err = Open(ctx, c, testHorizon, nil)
	if err == nil || !strings.Contains(err.Error(), "duplicate window of 1m0s, shorter than the shipper's retry horizon 1h0m0s") {
		t.Fatalf("open on a stream with a short window: %v", err)
	}

	c.Subject, c.CreateStream = subject, true
	s := openSink(t, c)
	deliver(t, s, testRecords(0, 5))
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.Duplicates != DefaultDedupWindow || cfg.MaxMsgs != 1000 || cfg.Storage != jetstream.MemoryStorage ||
		strings.Join(cfg.Subjects, " ") != "other."+u+" "+subject || st.CachedInfo().State.Msgs != 5 {
		t.Fatalf("stream after update: %+v, %d msgs", cfg, st.CachedInfo().State.Msgs)
	}
}

// A JetStream consumer sees each record once, with the idempotency key as message id.
func TestNATSConsumerReadsEachRecordOnce(t *testing.T) {
	b := natsBackend(t)
	s := b.open(t, b.upstream).(*NATSSink)
	deliver(t, s, testRecords(0, 30))
	deliver(t, s, testRecords(0, 30))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cons, err := js.CreateOrUpdateConsumer(ctx, s.Stream(), jetstream.ConsumerConfig{Durable: "ledger", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(100, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		var r journal.Record
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			t.Fatal(err)
		}
		if m.Headers().Get(jetstream.MsgIDHeader) != r.IdempotencyKey() {
			t.Fatalf("message id %q, record key %q", m.Headers().Get(jetstream.MsgIDHeader), r.IdempotencyKey())
		}
		m.Ack()
		n++
	}
	if n != 30 {
		t.Fatalf("consumed %d messages, want 30", n)
	}
}

// Whatever the configured stream and the idempotency key, the dedup key hashes to the stream's slot.
func FuzzRedisKeysShareOneClusterSlot(f *testing.F) {
	f.Add("railswitch:postings", "T-1/authorization")
	f.Add("a{b}c", "{x}/void")
	f.Add("{}", "}{")
	f.Fuzz(func(t *testing.T, stream, id string) {
		k := RedisStreamKey(stream)
		if d := RedisDedupKey(k, id); hashTag(d) != hashTag(k) {
			t.Fatalf("stream %q id %q: dedup key %q hashes on %q, stream key %q on %q", stream, id, d, hashTag(d), k, hashTag(k))
		}
	})
}

// With create_stream, a stream deleted while the sink runs is created again after one failed delivery.
func TestNATSRecreatesDeletedStream(t *testing.T) {
	b := natsBackend(t)
	s := b.open(t, b.upstream).(*NATSSink)
	deliver(t, s, testRecords(0, 10))
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := js.DeleteStream(context.Background(), s.Stream()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a delivery to the recreated stream", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return s.Deliver(ctx, testRecords(0, 10)) == nil
	})
	if got := b.count(t); got != 10 {
		t.Fatalf("%d messages in the recreated stream, want 10", got)
	}
}
