// Package limits applies rate and concurrency limits keyed by terminal, merchant, channel, acquirer and
// global, locally (golang.org/x/time/rate) or cluster-wide through Redis.
//
// Limiter.Acquire decides one request and names the refusing limit and its response code; the Permit of an
// admitted request gives its concurrency slots back. docs/limits.md describes the file format and behaviour.
//
// Files: config.go reads and validates the YAML file; limiter.go is the hot path (Acquire, Permit, Reload);
// store.go keeps node-local state per key; redis.go holds the Lua scripts, leases and the outage policy;
// pipeline.go batches script calls; metrics.go the Prometheus series.
package limits
