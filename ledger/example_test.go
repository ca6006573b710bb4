package ledger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/railswitch/railswitch/journal"
	"github.com/railswitch/railswitch/ledger"
)

// A switch opens a sink from its config and ships the journal to it.
func ExampleOpen() {
	ctx := context.Background()
	cfg := ledger.Config{Type: ledger.TypePostgres, Name: "ledger", DSN: "postgres://ledger@db.example:5432/ledger"}
	horizon := 24 * time.Hour
	sink, err := ledger.Open(ctx, cfg, horizon, nil)
	if err != nil {
		panic(err) // a bad config: the error names the sink and the key
	}
	defer sink.(interface{ Close() error }).Close()

	j, err := journal.Open(journal.Options{Dir: "/var/lib/railswitch/journal", Fsync: true})
	if err != nil {
		panic(err)
	}
	defer j.Close()
	opts := cfg.Shipper // batch_size, deliver_timeout, ... from the same YAML section
	opts.RetryHorizon = horizon
	shipper, err := journal.NewShipper(j, sink, opts)
	if err != nil {
		panic(err)
	}
	go shipper.Run(ctx)
}

// A ledger poster reads the Redis stream with a consumer group: each entry once per group, acknowledged after
// it was posted. Entries of a poster that died stay pending and are claimed by another (XAUTOCLAIM).
func Example_redisConsumerGroup() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	stream := ledger.RedisStreamKey("railswitch:postings") // "{railswitch:postings}"

	// Once: the group reads from the start of the stream ("0"), or only new entries ("$").
	if err := rdb.XGroupCreateMkStream(ctx, stream, "ledger", "0").Err(); err != nil && err.Error() != "BUSYGROUP Consumer Group name already exists" {
		panic(err)
	}
	for {
		res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: "ledger", Consumer: "poster-1", Streams: []string{stream, ">"}, Count: 100, Block: 5 * time.Second,
		}).Result()
		if err == redis.Nil {
			continue // nothing new within Block
		}
		if err != nil {
			panic(err)
		}
		for _, m := range res[0].Messages {
			var r journal.Record
			if err := json.Unmarshal([]byte(m.Values[ledger.RedisFieldRecord].(string)), &r); err != nil {
				panic(err)
			}
			fmt.Println("post", r.IdempotencyKey(), r.Amount, r.Currency) // post it, keyed by the idempotency key
			rdb.XAck(ctx, stream, "ledger", m.ID)
		}
	}
}
