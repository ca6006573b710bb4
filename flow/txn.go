package flow

import (
	"context"
	"sync"
)

// Txn is what the switch remembers of an approved transaction, so that voids, refunds, completions and
// reversals can go to the acquirer (and link) of their original.
type Txn struct {
	ID       string // transaction id
	Acquirer string
	Link     string // the link id (acquirer/endpoint/conn) it went out on
	Amount   int64
	RRN      string // field 37 sent to the acquirer
	AuthCode string
	AcqSTAN  string
	// OriginalData is field 90 for a later void, refund, completion or reversal of this transaction: MTI, STAN,
	// transmission date and time, acquiring and forwarding institution as sent to the acquirer.
	OriginalData string
	// Counted and Debit say how it entered the settlement totals, so a void or reversal can take it out.
	Counted, Debit bool
	// Reversed: the switch reversed it because its approval never reached the terminal; a terminal reversal
	// of it is acknowledged without going to the acquirer again.
	Reversed bool
}

// TxnStore keeps originals by terminal, batch and trace number (the keys a UnionPay terminal's void carries in
// 61), and by terminal and the RRN the switch sent (field 37, which a kiosk's refund carries).
type TxnStore interface {
	// Put stores t under both keys: tid, batch and trace, and tid and t.RRN.
	Put(ctx context.Context, tid, batch, trace string, t Txn) error
	Get(ctx context.Context, tid, batch, trace string) (Txn, bool, error)
	GetByRRN(ctx context.Context, tid, rrn string) (Txn, bool, error)
}

// MemoryTxns is the embedded TxnStore.
type MemoryTxns struct {
	mu    sync.Mutex
	m     map[string]Txn
	byRRN map[string]Txn
}

// NewMemoryTxns returns an empty embedded transaction store.
func NewMemoryTxns() *MemoryTxns { return &MemoryTxns{m: map[string]Txn{}, byRRN: map[string]Txn{}} }

// Put stores an original.
func (s *MemoryTxns) Put(_ context.Context, tid, batch, trace string, t Txn) error {
	s.mu.Lock()
	s.m[tid+"/"+batch+"/"+trace] = t
	if t.RRN != "" {
		s.byRRN[tid+"/"+t.RRN] = t
	}
	s.mu.Unlock()
	return nil
}

// GetByRRN finds an original by its terminal and the RRN the switch sent for it.
func (s *MemoryTxns) GetByRRN(_ context.Context, tid, rrn string) (Txn, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.byRRN[tid+"/"+rrn]
	return t, ok, nil
}

// Get finds an original.
func (s *MemoryTxns) Get(_ context.Context, tid, batch, trace string) (Txn, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[tid+"/"+batch+"/"+trace]
	return t, ok, nil
}
