// Package saf is the durable store-and-forward queue for reversals (0400/0420) and advices (0220).
//
// The transaction flow hands it a message already packed in the acquirer's spec; Enqueue returns once the
// entry is durable (fsync) and sealed at rest. One worker per acquirer sends the entries in order through a
// Sender until the bank answers with a response code of the acquirer's acknowledged set for the entry's kind
// (reversal or advice), backing off on failure; entries past their maximum attempts (or age) move to a
// dead-letter list that an operator lists and retries. An advice goes out as 0220 first and as 0221 when
// repeated. Entries on disk at open are drained, so a reversal outlives a restart of the switch.
//
// The Store interface holds entries: FileStore is the embedded one (an append-only log per acquirer, replayed
// and compacted at open); a shared implementation (Redis, PostgreSQL) can serve several nodes later.
// docs/reversals.md describes the behaviour for operators.
package saf
