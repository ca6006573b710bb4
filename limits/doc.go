// Package limits applies rate and concurrency limits keyed by terminal, merchant, channel, acquirer and
// global, locally (golang.org/x/time/rate) or cluster-wide through Redis.
package limits
