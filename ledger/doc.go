// Package ledger holds the journal sinks that feed a ledger: PostgreSQL (a postings table), Redis Streams and
// NATS JetStream. Each implements journal.Sink and applies every record once by its idempotency key, although
// the shipper delivers at least once:
//
//   - PostgreSQL: the idempotency key is the table's primary key and a batch is one INSERT ... SELECT FROM
//     unnest(...) ON CONFLICT DO NOTHING, so a key is kept for ever.
//   - Redis: one Lua script per chunk checks a dedup key per record and XADDs only new records; dedup keys
//     live dedup_ttl.
//   - NATS JetStream: the idempotency key is the message id (Nats-Msg-Id); the server drops a repeat within the
//     stream's duplicate window.
//
// Open builds a sink from a Config (the `sinks:` section of the switch's YAML), the file sink of package
// journal included. See docs/ledger.md for the keys, the schema and the dedup horizons.
package ledger
