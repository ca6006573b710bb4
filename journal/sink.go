package journal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
)

// Sink receives journaled records from a Shipper. Delivery is at least once: a batch whose Deliver returned an
// error, or that was delivered just before the switch stopped, comes again. A sink therefore applies each
// record once by its IdempotencyKey, and keeps the keys it has seen at least for the shipper's retry horizon
// (see docs/journal.md).
type Sink interface {
	// Name identifies the sink in checkpoints, metrics and logs: 1-64 letters, digits, '_' or '-'. Renaming a
	// sink starts it again from the oldest record on disk.
	Name() string
	// Deliver stores a batch, in sequence order, and returns nil only once the whole batch is durable at the
	// sink. It must give up when ctx is done. It must not keep recs after returning.
	Deliver(ctx context.Context, recs []Record) error
}

// MemorySink is a Sink that keeps every delivery in memory, duplicates included, for tests and examples. It
// can be switched down to fail deliveries.
type MemorySink struct {
	name string

	mu   sync.Mutex
	recs []Record
	down bool
}

// ErrSinkDown is what a MemorySink returns while it is down.
var ErrSinkDown = errors.New("journal: sink down")

// NewMemorySink returns an empty MemorySink called name.
func NewMemorySink(name string) *MemorySink { return &MemorySink{name: name} }

// Name implements Sink.
func (m *MemorySink) Name() string { return m.name }

// Deliver implements Sink: it appends recs, or fails with ErrSinkDown.
func (m *MemorySink) Deliver(ctx context.Context, recs []Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return ErrSinkDown
	}
	m.recs = append(m.recs, recs...)
	return nil
}

// SetDown makes Deliver fail (true) or succeed again (false).
func (m *MemorySink) SetDown(down bool) {
	m.mu.Lock()
	m.down = down
	m.mu.Unlock()
}

// Records returns a copy of every record delivered so far, in delivery order.
func (m *MemorySink) Records() []Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Record(nil), m.recs...)
}

// FileSink appends each record as one JSON line (the Record's JSON form, with its version and idempotency key)
// to a file, for demos and inspection. It is not a ledger: it keeps duplicates, so a redelivered batch appears
// twice, and it never compacts.
type FileSink struct {
	name  string
	fsync bool

	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	line []byte // the line being encoded, reused
}

// NewFileSink opens (or creates) path for appending. With fsync set, each batch is fsynced before Deliver
// returns.
func NewFileSink(name, path string, fsync bool) (*FileSink, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("journal: file sink %s: %w", name, err)
	}
	return &FileSink{name: name, fsync: fsync, f: f, w: bufio.NewWriter(f)}, nil
}

// Name implements Sink.
func (s *FileSink) Name() string { return s.name }

// Deliver implements Sink: it writes one line per record.
func (s *FileSink) Deliver(ctx context.Context, recs []Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range recs {
		// The line json.Encoder would write, without reflection or its second pass over the output.
		line, err := appendJSON(s.line[:0], &recs[i])
		if err != nil {
			return fmt.Errorf("journal: file sink %s: %w", s.name, err)
		}
		s.line = append(line, '\n')
		s.w.Write(s.line) // a write error stays in s.w and is returned by Flush
	}
	err := s.w.Flush()
	if err == nil && s.fsync {
		err = s.f.Sync()
	}
	if err != nil {
		// A partial line may be on disk; a reader of the file skips lines that do not parse.
		s.w.Reset(s.f)
		return fmt.Errorf("journal: file sink %s: %w", s.name, err)
	}
	return nil
}

// Close closes the file.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Close()
}
