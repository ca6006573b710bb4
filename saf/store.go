package saf

import "context"

// Store keeps entries durably. Put stores a new entry or a new state of a known one (the sealed message is
// only needed the first time) and returns once it is durable; Remove forgets an acknowledged entry. Load
// returns every entry held, pending and dead, with its sealed message, in any order.
//
// Methods may be called concurrently. A shared implementation for several nodes must also give each
// acquirer's queue one owner at a time (see docs/reversals.md).
type Store interface {
	Load(ctx context.Context) ([]*Entry, error)
	Put(ctx context.Context, e *Entry) error
	Remove(ctx context.Context, acquirer, id string) error
	Close() error
}
