package ledger

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/railswitch/railswitch/journal"
)

// The sink types Open knows.
const (
	TypePostgres = "postgres"
	TypeRedis    = "redis"
	TypeNATS     = "nats"
	TypeFile     = "file"
)

// Defaults of the zero values of Config.
const (
	DefaultTable          = "postings"
	DefaultSchema         = "public"
	DefaultRedisStream    = "railswitch:postings"
	DefaultNATSStream     = "RAILSWITCH_POSTINGS"
	DefaultNATSSubject    = "railswitch.postings"
	DefaultDedupWindow    = 7 * 24 * time.Hour
	DefaultBatchRecords   = 256
	DefaultConnectTimeout = 10 * time.Second
	// MaxBatchRecords bounds batch_records: one Lua script or one statement never carries more records.
	MaxBatchRecords = 4096
)

// Config is one entry of the switch's `sinks:` list. Type selects the sink; each type reads only its own keys
// and refuses keys of another type, so a typo does not pass silently. Zero values take the defaults in brackets.
type Config struct {
	// Type is postgres, redis, nats or file.
	Type string `yaml:"type"`
	// Name identifies the sink in checkpoints, metrics and logs: 1-64 letters, digits, '_' or '-' [the type].
	// Renaming a sink makes it start again from the oldest record on disk (the keys make that harmless).
	Name string `yaml:"name"`

	// Path is the file sink's JSON-lines file (file only).
	Path string `yaml:"path"`
	// Fsync makes the file sink fsync each batch (file only) [true].
	Fsync *bool `yaml:"fsync"`

	// DSN is the PostgreSQL connection string, URL or key=value form (postgres only). Keep the password out of
	// it: libpq's PGPASSWORD or a .pgpass file work.
	DSN string `yaml:"dsn"`
	// Schema holds the table, created if missing (postgres only) [public].
	Schema string `yaml:"schema"`
	// Table is the postings table, created if missing (postgres only) [postings].
	Table string `yaml:"table"`

	// Address is the Redis server host:port, or a redis:// or rediss:// URL (redis only).
	Address string `yaml:"address"`
	// Cluster makes the client a Redis Cluster client seeded by Address (redis only).
	Cluster bool `yaml:"cluster"`
	// PasswordEnv names the environment variable holding the Redis password (redis only).
	PasswordEnv string `yaml:"password_env"`
	// DedupTTL is how long Redis keeps an idempotency key (redis only) [max(7 days, 2 x retry horizon)]; it may
	// not be shorter than the shipper's retry horizon.
	DedupTTL time.Duration `yaml:"dedup_ttl"`

	// URL is the NATS server URL list, comma-separated (nats only).
	URL string `yaml:"url"`
	// Subject the records are published on (nats only) [railswitch.postings].
	Subject string `yaml:"subject"`
	// CreateStream creates the stream, or updates its subjects and duplicate window, at start (nats only).
	CreateStream bool `yaml:"create_stream"`
	// Replicas of a created stream (nats only) [1].
	Replicas int `yaml:"replicas"`
	// DuplicateWindow of a created stream (nats only) [max(7 days, 2 x retry horizon)]; the stream's window,
	// created or found, may not be shorter than the shipper's retry horizon.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`

	// Stream is the Redis stream key [railswitch:postings] or the JetStream stream name [RAILSWITCH_POSTINGS].
	Stream string `yaml:"stream"`

	// BatchRecords bounds one unit of work [256]: rows per INSERT statement (postgres; the statements of one
	// batch still go in one round trip and one transaction), records per Lua script (redis), publishes in
	// flight (nats). At most MaxBatchRecords.
	BatchRecords int `yaml:"batch_records"`
	// ConnectTimeout bounds a connection attempt [10s].
	ConnectTimeout time.Duration `yaml:"connect_timeout"`

	// Shipper holds the shipper's keys (batch_size, deliver_timeout, ...), which share the sink's section; the
	// caller passes them to journal.NewShipper.
	Shipper journal.ShipperOptions `yaml:",inline"`
}

var (
	sinkNameRE   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	sqlIdentRE   = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,39}$`)
	natsStreamRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	// A NATS subject for publishing: dot-separated tokens, no wildcards or spaces.
	natsSubjectRE = regexp.MustCompile(`^[A-Za-z0-9_\-:]+(\.[A-Za-z0-9_\-:]+)*$`)
)

// withDefaults returns c with the defaults of its type filled in.
func (c Config) withDefaults(retryHorizon time.Duration) Config {
	if c.Name == "" {
		c.Name = c.Type
	}
	if c.BatchRecords == 0 {
		c.BatchRecords = DefaultBatchRecords
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	window := max(DefaultDedupWindow, 2*retryHorizon)
	switch c.Type {
	case TypeFile:
		if c.Fsync == nil {
			t := true
			c.Fsync = &t
		}
	case TypePostgres:
		if c.Schema == "" {
			c.Schema = DefaultSchema
		}
		if c.Table == "" {
			c.Table = DefaultTable
		}
	case TypeRedis:
		if c.Stream == "" {
			c.Stream = DefaultRedisStream
		}
		if c.DedupTTL == 0 {
			c.DedupTTL = window
		}
	case TypeNATS:
		if c.Stream == "" {
			c.Stream = DefaultNATSStream
		}
		if c.Subject == "" {
			c.Subject = DefaultNATSSubject
		}
		if c.Replicas == 0 {
			c.Replicas = 1
		}
		if c.DuplicateWindow == 0 {
			c.DuplicateWindow = window
		}
	}
	return c
}

// Validate checks c, with its defaults filled in, against the shipper's retry horizon (or the entry's own
// retry_horizon, if larger); it returns every problem found, each naming the sink and the key. Open validates
// too; Validate lets a config loader report problems early.
func (c Config) Validate(retryHorizon time.Duration) error {
	retryHorizon = c.horizon(retryHorizon)
	return c.withDefaults(retryHorizon).validate(retryHorizon)
}

// horizon is the retry horizon the dedup windows must cover: the larger of the switch's and a retry_horizon set
// in the sink's own entry (which its shipper then uses).
func (c Config) horizon(retryHorizon time.Duration) time.Duration {
	return max(retryHorizon, c.Shipper.RetryHorizon)
}

func (c Config) validate(retryHorizon time.Duration) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("ledger: sink %q: %s: %s", c.Name, key, fmt.Sprintf(format, args...)))
	}
	// unused reports keys set for another sink type.
	unused := func(keys map[string]bool) {
		for k, set := range keys {
			if set {
				bad(k, "not a key of a %s sink", c.Type)
			}
		}
	}
	if !sinkNameRE.MatchString(c.Name) {
		bad("name", "want 1-64 letters, digits, '_' or '-'")
	}
	if c.BatchRecords < 1 || c.BatchRecords > MaxBatchRecords {
		bad("batch_records", "%d is not within 1-%d", c.BatchRecords, MaxBatchRecords)
	}
	if c.ConnectTimeout < 0 {
		bad("connect_timeout", "cannot be negative")
	}
	if retryHorizon <= 0 {
		errs = append(errs, fmt.Errorf("ledger: sink %q: retry horizon %v must be positive", c.Name, retryHorizon))
	}
	pg := map[string]bool{"dsn": c.DSN != "", "schema": c.Schema != "", "table": c.Table != ""}
	rd := map[string]bool{"address": c.Address != "", "cluster": c.Cluster, "password_env": c.PasswordEnv != "", "dedup_ttl": c.DedupTTL != 0}
	nt := map[string]bool{"url": c.URL != "", "subject": c.Subject != "", "create_stream": c.CreateStream, "replicas": c.Replicas != 0, "duplicate_window": c.DuplicateWindow != 0}
	fl := map[string]bool{"path": c.Path != "", "fsync": c.Fsync != nil}
	switch c.Type {
	case TypeFile:
		unused(pg)
		unused(rd)
		unused(nt)
		if c.Stream != "" {
			bad("stream", "not a key of a file sink")
		}
		if c.Path == "" {
			bad("path", "required")
		}
	case TypePostgres:
		unused(rd)
		unused(nt)
		unused(fl)
		if c.Stream != "" {
			bad("stream", "not a key of a postgres sink (table names the table)")
		}
		if c.DSN == "" {
			bad("dsn", "required")
		}
		if !sqlIdentRE.MatchString(c.Schema) {
			bad("schema", "%q: want a lower-case SQL name, 1-40 of a-z, 0-9, '_', not starting with a digit", c.Schema)
		}
		if !sqlIdentRE.MatchString(c.Table) {
			bad("table", "%q: want a lower-case SQL name, 1-40 of a-z, 0-9, '_', not starting with a digit", c.Table)
		}
	case TypeRedis:
		unused(pg)
		unused(nt)
		unused(fl)
		if c.Address == "" {
			bad("address", "required (host:port or redis://...)")
		}
		if c.Stream == "" || len(c.Stream) > 200 || strings.ContainsAny(c.Stream, " \t\r\n") {
			bad("stream", "%q: want 1-200 characters without spaces", c.Stream)
		}
		if strings.ContainsAny(c.Stream, "{}") && !hasHashTag(c.Stream) {
			bad("stream", "%q: braces only as a non-empty hash tag, like ledger:{bj}:postings", c.Stream)
		}
		if c.DedupTTL < retryHorizon {
			bad("dedup_ttl", "%v is shorter than the shipper's retry horizon %v: a batch retried that long could be applied twice", c.DedupTTL, retryHorizon)
		}
	case TypeNATS:
		unused(pg)
		unused(rd)
		unused(fl)
		if c.URL == "" {
			bad("url", "required (nats://host:4222)")
		}
		if !natsStreamRE.MatchString(c.Stream) {
			bad("stream", "%q: want a JetStream stream name, 1-64 letters, digits, '_' or '-'", c.Stream)
		}
		if !natsSubjectRE.MatchString(c.Subject) {
			bad("subject", "%q: want dot-separated tokens without wildcards or spaces", c.Subject)
		}
		if c.Replicas < 1 || c.Replicas > 5 {
			bad("replicas", "%d is not within 1-5", c.Replicas)
		}
		if c.DuplicateWindow < retryHorizon {
			bad("duplicate_window", "%v is shorter than the shipper's retry horizon %v: JetStream forgets a message id after the window, so a batch retried that long could be stored twice", c.DuplicateWindow, retryHorizon)
		}
	case "":
		errs = append(errs, fmt.Errorf("ledger: sink %q: type: required (postgres, redis, nats or file)", c.Name))
	default:
		bad("type", "unknown sink type %q (want postgres, redis, nats or file)", c.Type)
	}
	return errors.Join(errs...)
}

// Open validates c and returns its sink. The retry horizon is the shipper's (journal.ShipperOptions.RetryHorizon;
// 24h by default): the Redis and NATS dedup windows may not be shorter. Open does not need the sink's server to be
// up: it tries to create the schema or stream within ctx, and if the server cannot be reached it logs a warning
// and the sink does it before its first delivery, so the shipper's retries cover a sink that is down at start.
// A configuration the server refuses (a JetStream stream whose duplicate window is too short, a table of
// another shape) is an error. The returned sink implements io.Closer; close it after its shipper stopped.
func Open(ctx context.Context, c Config, retryHorizon time.Duration, log *zap.Logger) (journal.Sink, error) {
	if log == nil {
		log = zap.NewNop()
	}
	retryHorizon = c.horizon(retryHorizon)
	c = c.withDefaults(retryHorizon)
	if err := c.validate(retryHorizon); err != nil {
		return nil, err
	}
	log = log.Named("ledger").With(zap.String("sink", c.Name), zap.String("type", c.Type))
	switch c.Type {
	case TypeFile:
		return journal.NewFileSink(c.Name, c.Path, *c.Fsync)
	case TypePostgres:
		return openPostgres(ctx, c, log)
	case TypeRedis:
		return openRedis(ctx, c, log)
	default: // TypeNATS; validate refused anything else
		return openNATS(ctx, c, retryHorizon, log)
	}
}

// setupError marks a failure to set the sink up that retrying will not cure (a refused configuration), as
// opposed to a server that cannot be reached.
type setupError struct{ err error }

func (e *setupError) Error() string { return e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }

// isPermanent reports whether err is a setupError.
func isPermanent(err error) bool {
	var se *setupError
	return errors.As(err, &se)
}

// redactURL removes a password from a URL for logs and errors.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if strings.Contains(s, "@") {
			return "(unparsable address)"
		}
		return s
	}
	return u.Redacted()
}
