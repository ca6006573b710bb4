// Package journal is the switch's embedded, append-only record of finished transactions and the only feed of
// the ledger sinks.
//
// A Journal writes posting Records to segment files in one directory, each framed with its length, a CRC32C
// and a sequence number. Concurrent Append calls are group-committed: one writer goroutine batches them into
// one write and one fsync, and each Append returns only when its record is durable. Open recovers from a crash
// by truncating a torn tail; corruption anywhere else is an error naming the segment and offset.
//
// A Shipper reads the journal from a durable per-sink checkpoint and hands batches to a Sink, at least once:
// the checkpoint moves only after Deliver returned nil. Each Record carries an idempotency key so that a sink
// applies it once. Retention deletes only segments that are old enough and shipped to every sink; unshipped
// bytes above a threshold raise an alarm, and above a hard limit Append fails with ErrFull.
//
// See docs/journal.md for the file format, the durability guarantees and the retry horizon.
package journal
