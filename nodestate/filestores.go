package nodestate

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/railswitch/railswitch/flow"
	"github.com/railswitch/railswitch/terminal"
	"go.uber.org/zap"
)

// FileOptions tune FileTxns and FileBatches.
type FileOptions struct {
	// Retention is how long an original (from its Put) or a batch (from its last Add) is kept (default
	// DefaultTxnTTL); older ones are no longer returned and are dropped at the next compaction.
	Retention time.Duration
	// CompactAfter is how many records the log may hold before it is rewritten with its live records, once
	// most are overwritten or expired (default 16384).
	CompactAfter int
	// MaxEntries bounds the originals a FileTxns keeps (default DefaultMaxTxns): past it the oldest are
	// forgotten first, so memory stays bounded whatever the traffic (about 0.5 KB an original).
	MaxEntries int
	// NoSync skips the fsync (the switch's journal.fsync: false): a crash may lose the last originals.
	NoSync bool
	Now    func() time.Time // default time.Now
	Log    *zap.Logger      // reports of a torn end dropped at open (default: none)

	sync func(*os.File) error // the fsync, replaced by tests that count
}

func (o *FileOptions) defaults() {
	if o.Retention <= 0 {
		o.Retention = DefaultTxnTTL
	}
	if o.CompactAfter <= 0 {
		o.CompactAfter = defCompact
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxTxns
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.NoSync && o.sync == nil {
		o.sync = func(*os.File) error { return nil }
	}
}

// fileStore is what FileTxns and FileBatches share: the log, the options, and the oldest record time of
// the live state (a lower bound, exact after a compaction).
type fileStore struct {
	w      *wal
	opts   FileOptions
	oldest int64 // unix nanoseconds; 0: none
}

func (s *fileStore) expired(at int64) bool {
	return at < s.opts.Now().Add(-s.opts.Retention).UnixNano()
}

func (s *fileStore) seen(at int64) {
	if s.oldest == 0 || at < s.oldest {
		s.oldest = at
	}
}

// shouldCompact says (mu held) whether the log holds many more records than live ones, or records that
// expired more than an eighth of the retention ago.
func (s *fileStore) shouldCompact(live int) bool {
	if s.w.records < s.opts.CompactAfter {
		return false
	}
	return s.w.records > compactMult*live || s.expired(s.oldest+int64(s.opts.Retention/8))
}

// open replays the log at path through apply and reports a dropped torn end.
func (s *fileStore) open(path string, apply func([]byte) bool) error {
	s.opts.defaults()
	w, payloads, dropped, err := openWAL(path, s.opts.sync)
	if err != nil {
		return err
	}
	s.w = w
	for i, p := range payloads {
		if !apply(p) {
			s.opts.Log.Warn("nodestate: undecodable record ends the log", zap.String("file", path), zap.Int("record", i))
			break
		}
	}
	if dropped > 0 {
		s.opts.Log.Warn("nodestate: torn or damaged end of a log dropped", zap.String("file", path), zap.Int("bytes", dropped))
	}
	return nil
}

// Syncs returns how many fsyncs the store's log made since it was opened (group commit makes it fewer than
// the writes).
func (s *fileStore) Syncs() int64 { return s.w.syncs.Load() }

// txnRecord is one Put in the log of FileTxns.
type txnRecord struct {
	TID   string   `json:"tid"`
	Batch string   `json:"b"`
	Trace string   `json:"tr"`
	At    int64    `json:"at"` // unix nanoseconds of the Put
	T     flow.Txn `json:"t"`
}

// txnLive is one original in memory: its record as in the log, decoded on Get.
type txnLive struct {
	payload []byte
	at      int64
}

// FileTxns is the embedded flow.TxnStore that survives a restart: an append-only log (mode 0600) of the
// originals, each fsynced before Put returns, replayed at open and compacted when it grows. An original is
// kept for the retention after its Put. Originals hold ids, amounts, the RRN and the auth code: no card data.
type FileTxns struct {
	fileStore
	m     map[string]*txnLive // tid, batch, trace
	byRRN map[string]*txnLive // tid, RRN
	order []txnKeys           // keys in Put order, oldest first, for the MaxEntries bound
	head  int                 // first entry of order still in use
}

// txnKeys are the two index keys of one original as it was put.
type txnKeys struct {
	l        *txnLive
	key, rrn string
}

// DefaultMaxTxns is the default bound of the originals a FileTxns keeps.
const DefaultMaxTxns = 1_000_000

func txnKey(parts ...string) string {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = append(append(b, p...), 0)
	}
	return string(b)
}

// OpenFileTxns opens (creating it) the log at path, replays it, drops a torn last record and the expired
// originals, and rewrites it with the live ones.
func OpenFileTxns(path string, opts FileOptions) (*FileTxns, error) {
	s := &FileTxns{fileStore: fileStore{opts: opts}, m: map[string]*txnLive{}, byRRN: map[string]*txnLive{}}
	err := s.open(path, func(p []byte) bool {
		var r txnRecord
		if json.Unmarshal(p, &r) != nil {
			return false
		}
		s.apply(&r, p)
		return true
	})
	if err != nil {
		return nil, err
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if err := s.compactLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileTxns) apply(r *txnRecord, payload []byte) {
	l := &txnLive{payload: payload, at: r.At}
	k := txnKeys{l: l, key: txnKey(r.TID, r.Batch, r.Trace)}
	s.m[k.key] = l
	if r.T.RRN != "" {
		k.rrn = txnKey(r.TID, r.T.RRN)
		s.byRRN[k.rrn] = l
	}
	s.order = append(s.order, k)
	s.seen(r.At)
	s.evict()
}

// evict forgets the oldest originals beyond MaxEntries (mu held). An index entry that a later Put replaced
// stays.
func (s *FileTxns) evict() {
	for len(s.m) > s.opts.MaxEntries && s.head < len(s.order) {
		k := s.order[s.head]
		s.order[s.head] = txnKeys{}
		s.head++
		if s.m[k.key] == k.l {
			delete(s.m, k.key)
		}
		if k.rrn != "" && s.byRRN[k.rrn] == k.l {
			delete(s.byRRN, k.rrn)
		}
	}
	if s.head > len(s.order)/2 && s.head > 1024 { // reclaim the consumed front
		s.order = append(s.order[:0:0], s.order[s.head:]...)
		s.head = 0
	}
}

// live returns the distinct originals still referenced and not expired, oldest first (mu held).
func (s *FileTxns) live() []*txnLive {
	seen := make(map[*txnLive]bool, len(s.m))
	out := make([]*txnLive, 0, len(s.m))
	for _, idx := range []map[string]*txnLive{s.m, s.byRRN} {
		for k, l := range idx {
			if s.expired(l.at) {
				delete(idx, k)
				continue
			}
			if !seen[l] {
				seen[l] = true
				out = append(out, l)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b *txnLive) int { return cmpInt64(a.at, b.at) })
	return out
}

func (s *FileTxns) compactLocked() error {
	live := s.live()
	payloads := make([][]byte, len(live))
	s.oldest = 0
	for i, l := range live {
		payloads[i] = l.payload
		s.seen(l.at)
	}
	return s.w.rewrite(payloads)
}

// Put stores an original under tid, batch and trace, and under tid and t.RRN; it returns once the log holds
// it on disk.
func (s *FileTxns) Put(ctx context.Context, tid, batch, trace string, t flow.Txn) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nodestate: storing txn %s: %w", t.ID, err)
	}
	r := &txnRecord{TID: tid, Batch: batch, Trace: trace, At: s.opts.Now().UnixNano(), T: t}
	payload, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("nodestate: txn %s: %w", t.ID, err)
	}
	if len(payload) > maxRecord {
		return fmt.Errorf("nodestate: txn %s encodes to %d bytes, more than %d", t.ID, len(payload), maxRecord)
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if err := s.w.commit(payload, func() { s.apply(r, payload) }); err != nil {
		return fmt.Errorf("nodestate: storing txn %s: %w", t.ID, err)
	}
	if !s.w.compacting && s.shouldCompact(len(s.m)) {
		s.compactInBackground()
	}
	return nil
}

// compactInBackground rewrites the log with the live originals, in Put order, without stopping Puts for
// the write (wal.compactInBackground); mu is held for the snapshot only. Expired originals are left out.
func (s *FileTxns) compactInBackground() {
	payloads := make([][]byte, 0, len(s.m))
	s.oldest = 0
	for _, k := range s.order[s.head:] {
		if k.l == nil || s.expired(k.l.at) || (s.m[k.key] != k.l && (k.rrn == "" || s.byRRN[k.rrn] != k.l)) {
			continue
		}
		payloads = append(payloads, k.l.payload)
		s.seen(k.l.at)
	}
	s.w.compactInBackground(payloads, func(err error) {
		s.opts.Log.Error("nodestate: compaction failed", zap.String("file", s.w.path), zap.Error(err))
	})
}

// Get finds an original by terminal, batch and trace number.
func (s *FileTxns) Get(_ context.Context, tid, batch, trace string) (flow.Txn, bool, error) {
	return s.get(s.m, txnKey(tid, batch, trace))
}

// GetByRRN finds an original by terminal and the RRN the switch sent for it.
func (s *FileTxns) GetByRRN(_ context.Context, tid, rrn string) (flow.Txn, bool, error) {
	return s.get(s.byRRN, txnKey(tid, rrn))
}

func (s *FileTxns) get(idx map[string]*txnLive, key string) (flow.Txn, bool, error) {
	s.w.mu.Lock()
	l, ok := idx[key]
	s.w.mu.Unlock()
	if !ok || s.expired(l.at) {
		return flow.Txn{}, false, nil
	}
	var r txnRecord
	if err := json.Unmarshal(l.payload, &r); err != nil {
		return flow.Txn{}, false, fmt.Errorf("nodestate: original in %s: %w", s.w.path, err)
	}
	return r.T, true, nil
}

// Compact rewrites the log with the live, unexpired originals.
func (s *FileTxns) Compact() error {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if s.w.f == nil {
		return ErrClosed
	}
	return s.compactLocked()
}

// Close closes the log; later Puts fail with ErrClosed.
func (s *FileTxns) Close() error {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	return s.w.close()
}

// batchRecord is one Add in the log of FileBatches (or, after a compaction, a batch's totals).
type batchRecord struct {
	TID   string `json:"tid"`
	Batch string `json:"b"`
	At    int64  `json:"at"`
	DA    int64  `json:"da,omitempty"`
	DC    int64  `json:"dc,omitempty"`
	CA    int64  `json:"ca,omitempty"`
	CC    int64  `json:"cc,omitempty"`
}

type batchLive struct {
	tid, batch string
	t          terminal.Totals
	at         int64 // last Add
}

// FileBatches is the embedded terminal.Batches that survives a restart: an append-only log (mode 0600) of
// the Adds, each fsynced before Add returns, replayed at open and compacted to one record per batch. A batch
// is kept for the retention after its last Add.
type FileBatches struct {
	fileStore
	m map[string]*batchLive
}

// OpenFileBatches opens (creating it) the log at path, replays it, drops a torn last record and the
// expired batches, and rewrites it with one record per live batch.
func OpenFileBatches(path string, opts FileOptions) (*FileBatches, error) {
	s := &FileBatches{fileStore: fileStore{opts: opts}, m: map[string]*batchLive{}}
	err := s.open(path, func(p []byte) bool {
		var r batchRecord
		if json.Unmarshal(p, &r) != nil {
			return false
		}
		s.apply(&r)
		return true
	})
	if err != nil {
		return nil, err
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if err := s.compactLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileBatches) apply(r *batchRecord) {
	k := txnKey(r.TID, r.Batch)
	l := s.m[k]
	if l == nil {
		l = &batchLive{tid: r.TID, batch: r.Batch}
		s.m[k] = l
	}
	l.t.DebitAmount += r.DA
	l.t.DebitCount += r.DC
	l.t.CreditAmount += r.CA
	l.t.CreditCount += r.CC
	l.at = max(l.at, r.At)
	s.seen(r.At)
}

func (s *FileBatches) compactLocked() error {
	live := make([]*batchLive, 0, len(s.m))
	for k, l := range s.m {
		if s.expired(l.at) {
			delete(s.m, k)
			continue
		}
		live = append(live, l)
	}
	slices.SortFunc(live, func(a, b *batchLive) int { return cmpInt64(a.at, b.at) })
	payloads := make([][]byte, len(live))
	s.oldest = 0
	for i, l := range live {
		p, err := json.Marshal(&batchRecord{TID: l.tid, Batch: l.batch, At: l.at, DA: l.t.DebitAmount,
			DC: l.t.DebitCount, CA: l.t.CreditAmount, CC: l.t.CreditCount})
		if err != nil {
			return fmt.Errorf("nodestate: batch %s of terminal %s: %w", l.batch, l.tid, err)
		}
		payloads[i] = p
		s.seen(l.at)
	}
	return s.w.rewrite(payloads)
}

// Add adds amount and count to the batch's debit or credit totals (negative for a void or reversal); it
// returns once the log holds it on disk.
func (s *FileBatches) Add(ctx context.Context, tid, batch string, debit bool, amount, count int64) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nodestate: adding to batch %s of terminal %s: %w", batch, tid, err)
	}
	r := &batchRecord{TID: tid, Batch: batch, At: s.opts.Now().UnixNano()}
	if debit {
		r.DA, r.DC = amount, count
	} else {
		r.CA, r.CC = amount, count
	}
	payload, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("nodestate: batch %s of terminal %s: %w", batch, tid, err)
	}
	if len(payload) > maxRecord {
		return fmt.Errorf("nodestate: batch record of terminal %s too long", tid)
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if err := s.w.commit(payload, func() { s.apply(r) }); err != nil {
		return fmt.Errorf("nodestate: adding to batch %s of terminal %s: %w", batch, tid, err)
	}
	if s.shouldCompact(len(s.m)) {
		if err := s.compactLocked(); err != nil {
			s.opts.Log.Error("nodestate: compaction failed", zap.String("file", s.w.path), zap.Error(err))
		}
	}
	return nil
}

// Totals returns a batch's totals (zero for a batch never added to or expired).
func (s *FileBatches) Totals(_ context.Context, tid, batch string) (terminal.Totals, error) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	l, ok := s.m[txnKey(tid, batch)]
	if !ok || s.expired(l.at) {
		return terminal.Totals{}, nil
	}
	return l.t, nil
}

// Compact rewrites the log with one record per live batch.
func (s *FileBatches) Compact() error {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if s.w.f == nil {
		return ErrClosed
	}
	return s.compactLocked()
}

// Close closes the log; later Adds fail with ErrClosed.
func (s *FileBatches) Close() error {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	return s.w.close()
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
