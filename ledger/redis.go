package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/railswitch/railswitch/journal"
)

// RedisSink appends each record to a Redis stream, once per idempotency key. One Lua script per chunk of
// batch_records records runs atomically on the server: for each record it skips the record if its dedup key
// exists (and restarts the key's TTL), else XADDs it and then sets the dedup key (to the entry id) with a TTL of
// dedup_ttl. The stream key
// carries a hash tag and every dedup key starts with the stream key, so in Redis Cluster they share one slot.
// The stream is never trimmed by the sink.
type RedisSink struct {
	name   string
	stream string // stream key, with a hash tag
	seen   string // prefix of the dedup keys
	ttl    time.Duration
	chunk  int
	client redis.UniversalClient
	log    *zap.Logger
}

// Stream entry fields written by RedisSink.
const (
	RedisFieldKey    = "idempotency_key"
	RedisFieldRecord = "record" // the Record's JSON form, with version and idempotency_key
)

// redisDeliver: KEYS[1] the stream, KEYS[1+i] the dedup key of record i; ARGV[1] the TTL in milliseconds,
// ARGV[2i] the idempotency key and ARGV[2i+1] the JSON of record i. Returns the number of records added.
// The dedup key is written after XADD, so a script cut short (out of memory) can only duplicate, not lose. A
// repeat restarts its key's TTL, so the window counts from the last copy seen.
var redisDeliver = redis.NewScript(`
local ttl = ARGV[1]
local added = 0
for i = 2, #KEYS do
	if redis.call('EXISTS', KEYS[i]) == 0 then
		local id = redis.call('XADD', KEYS[1], '*', '` + RedisFieldKey + `', ARGV[2*i-2], '` + RedisFieldRecord + `', ARGV[2*i-1])
		redis.call('SET', KEYS[i], id, 'PX', ttl)
		added = added + 1
	else
		redis.call('PEXPIRE', KEYS[i], ttl)
	end
end
return added
`)

// RedisStreamKey returns the key of the stream that a redis sink configured with stream writes to: stream itself
// when it has a hash tag ({...}, not empty), else stream wrapped in braces, so that the dedup keys, which start
// with the stream key, share its Redis Cluster slot. (Config validation refuses braces outside a hash tag; here
// a stray '}' becomes '_' so that the wrapped key still has a valid tag.)
func RedisStreamKey(stream string) string {
	if hasHashTag(stream) {
		return stream
	}
	tag := strings.ReplaceAll(stream, "}", "_")
	if tag == "" {
		tag = "_"
	}
	return "{" + tag + "}"
}

// hasHashTag reports whether Redis Cluster would hash key on a tag: a '{' followed, not at once, by a '}'.
func hasHashTag(key string) bool {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		return strings.IndexByte(key[i+1:], '}') > 0
	}
	return false
}

// RedisDedupKey returns the dedup key of an idempotency key for the stream key streamKey.
func RedisDedupKey(streamKey, idempotencyKey string) string {
	return streamKey + ":seen:" + idempotencyKey
}

func openRedis(ctx context.Context, c Config, log *zap.Logger) (*RedisSink, error) {
	opts := &redis.UniversalOptions{
		DialTimeout:           c.ConnectTimeout,
		ContextTimeoutEnabled: true, // the shipper's deliver_timeout bounds each call
		IsClusterMode:         c.Cluster,
		MaxRetries:            1,
	}
	if strings.Contains(c.Address, "://") {
		u, err := redis.ParseURL(c.Address)
		if err != nil {
			return nil, fmt.Errorf("ledger: sink %q: address %s: %w", c.Name, redactURL(c.Address), err)
		}
		opts.Addrs, opts.Username, opts.Password, opts.DB, opts.TLSConfig = []string{u.Addr}, u.Username, u.Password, u.DB, u.TLSConfig
	} else {
		opts.Addrs = []string{c.Address}
	}
	if c.PasswordEnv != "" {
		pw, ok := os.LookupEnv(c.PasswordEnv)
		if !ok {
			return nil, fmt.Errorf("ledger: sink %q: password_env: environment variable %s is not set", c.Name, c.PasswordEnv)
		}
		opts.Password = pw
	}
	key := RedisStreamKey(c.Stream)
	s := &RedisSink{
		name:   c.Name,
		stream: key,
		seen:   RedisDedupKey(key, ""),
		ttl:    c.DedupTTL,
		chunk:  c.BatchRecords,
		client: redis.NewUniversalClient(opts),
		log:    log,
	}
	lctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
	defer cancel()
	if err := redisDeliver.Load(lctx, s.client).Err(); err != nil {
		log.Warn("redis not reachable at start; the shipper retries", zap.Error(err))
	}
	return s, nil
}

// Name implements journal.Sink.
func (s *RedisSink) Name() string { return s.name }

// StreamKey returns the key of the stream the sink appends to.
func (s *RedisSink) StreamKey() string { return s.stream }

// Client returns the sink's Redis client, for tests and tools.
func (s *RedisSink) Client() redis.UniversalClient { return s.client }

// Deliver implements journal.Sink: one script call per chunk; records whose dedup key exists are skipped.
func (s *RedisSink) Deliver(ctx context.Context, recs []journal.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ledger: sink %q: %w", s.name, err)
	}
	ttl := strconv.FormatInt(s.ttl.Milliseconds(), 10)
	for start := 0; start < len(recs); start += s.chunk {
		part := recs[start:min(start+s.chunk, len(recs))]
		keys := make([]string, 1, len(part)+1)
		keys[0] = s.stream
		args := make([]any, 1, 2*len(part)+1)
		args[0] = ttl
		for i := range part {
			js, err := part[i].MarshalJSON()
			if err != nil {
				return fmt.Errorf("ledger: sink %q: encode record %d of the batch: %w", s.name, start+i, err)
			}
			k := part[i].IdempotencyKey()
			keys = append(keys, s.seen+k)
			args = append(args, k, js)
		}
		if err := redisDeliver.Run(ctx, s.client, keys, args...).Err(); err != nil {
			if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("%w (%w)", ctx.Err(), err)
			}
			return fmt.Errorf("ledger: sink %q: append %d records to %s: %w", s.name, len(part), s.stream, err)
		}
	}
	return nil
}

// Close closes the Redis client.
func (s *RedisSink) Close() error { return s.client.Close() }
