package terminal

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/railswitch/railswitch/hsm"
)

// Session is a terminal's state between sign-on and sign-off. The working keys are LMK cryptograms (hsm.Key),
// never clear keys, so a session may be stored and shared between nodes.
type Session struct {
	TID        string    `json:"tid"`
	SignedOn   bool      `json:"signed_on"`
	Batch      string    `json:"batch"` // 60.2, 6 digits
	NetCode    string    `json:"net_code"`
	PIK        hsm.Key   `json:"pik"`
	MAK        hsm.Key   `json:"mak"`
	TDK        *hsm.Key  `json:"tdk,omitempty"`
	SignedOnAt time.Time `json:"signed_on_at"`
}

// Sessions stores terminal sessions. The embedded implementation is MemorySessions; a shared one (Redis or
// PostgreSQL) lets a terminal that reconnects to another node carry on without signing on again.
type Sessions interface {
	Get(ctx context.Context, tid string) (Session, bool, error)
	Put(ctx context.Context, s Session) error
}

// MemorySessions keeps sessions in memory and, when given a file, writes them there on every change so they
// survive a restart (keys in it are under the LMK). Saves are group-committed: while one Put writes the file,
// the Puts that arrive meanwhile are all covered by the next single write, so a burst of sign-ons does not
// rewrite the file once per terminal.
type MemorySessions struct {
	mu      sync.Mutex
	m       map[string]Session
	version uint64 // changes made, under mu
	path    string
	saveMu  sync.Mutex // one save at a time
	saved   uint64     // the version the file holds, under saveMu
}

// NewMemorySessions returns an embedded session store; path may be empty for memory only.
func NewMemorySessions(path string) (*MemorySessions, error) {
	s := &MemorySessions{m: map[string]Session{}, path: path}
	if path == "" {
		return s, nil
	}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &s.m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Get returns the session of terminal tid.
func (s *MemorySessions) Get(_ context.Context, tid string) (Session, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[tid]
	return v, ok, nil
}

// Put stores a session; with a file, it returns once the file holds it.
func (s *MemorySessions) Put(_ context.Context, v Session) error {
	s.mu.Lock()
	s.m[v.TID] = v
	s.version++
	want := s.version
	s.mu.Unlock()
	if s.path == "" {
		return nil
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	if s.saved >= want {
		return nil // a save that started after this Put already wrote it
	}
	s.mu.Lock()
	data, err := json.Marshal(s.m)
	version := s.version
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.path, data); err != nil {
		return err
	}
	s.saved = version
	return nil
}

// writeFileAtomic writes data to a temporary file, syncs it and renames it over path.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Totals are one batch's totals as settlement compares them (minor units).
type Totals struct {
	DebitAmount, DebitCount, CreditAmount, CreditCount int64
}

// Batches accumulates the approved transactions of each terminal's batch, for settlement.
type Batches interface {
	// Add adds amount and count to the batch's debit or credit totals; a void or reversal adds them negated.
	Add(ctx context.Context, tid, batch string, debit bool, amount, count int64) error
	Totals(ctx context.Context, tid, batch string) (Totals, error)
}

// MemoryBatches is the embedded Batches.
type MemoryBatches struct {
	mu sync.Mutex
	m  map[string]Totals
}

// NewMemoryBatches returns an empty embedded batch store.
func NewMemoryBatches() *MemoryBatches { return &MemoryBatches{m: map[string]Totals{}} }

// Add counts approved transactions: debits (purchases, completions) or credits (refunds).
func (b *MemoryBatches) Add(_ context.Context, tid, batch string, debit bool, amount, count int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.m[tid+"/"+batch]
	if debit {
		t.DebitAmount += amount
		t.DebitCount += count
	} else {
		t.CreditAmount += amount
		t.CreditCount += count
	}
	b.m[tid+"/"+batch] = t
	return nil
}

// Totals returns a batch's totals.
func (b *MemoryBatches) Totals(_ context.Context, tid, batch string) (Totals, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[tid+"/"+batch], nil
}
