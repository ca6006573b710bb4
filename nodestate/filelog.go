package nodestate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// File layout of the embedded stores: an append-only log of records
//
//	length uint32 BE | CRC-32C of payload uint32 BE | payload (JSON)
//
// Every record is fsynced before the call that wrote it returns; concurrent callers share one write and one
// fsync (group commit). At open the log is replayed up to its first torn or damaged record (a crash during
// a write: that record's call never returned) and rewritten with its live records only.
const (
	recHeader   = 8
	maxRecord   = 1 << 16 // a record is one transaction or one batch total: far below this
	fileMode    = 0o600
	dirMode     = 0o700
	tmpSuffix   = ".tmp"
	defCompact  = 16384
	compactMult = 2 // compact once the log holds this many times more records than live ones
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrClosed means the store is closed.
var ErrClosed = errors.New("nodestate: store closed")

// readRecords returns the payloads of the good records at the start of data and the length of that good
// part; it stops at the first record that is torn, oversized or fails its CRC.
func readRecords(data []byte) (payloads [][]byte, good int) {
	off := 0
	for len(data)-off >= recHeader {
		n := binary.BigEndian.Uint32(data[off:])
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n > maxRecord || uint64(len(data)-off-recHeader) < uint64(n) {
			break
		}
		payload := data[off+recHeader : off+recHeader+int(n)]
		if crc32.Checksum(payload, crcTable) != sum {
			break
		}
		payloads = append(payloads, payload)
		off += recHeader + int(n)
	}
	return payloads, off
}

// appendRecord appends the framed record of payload to dst.
func appendRecord(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(payload, crcTable))
	return append(dst, payload...)
}

// wal is the log of one store. mu guards the wal and the owning store's state: a committer adds its record to
// the batch being filled; one of them (the leader) writes and fsyncs the batch with mu released, then runs
// every record's apply under mu, so the store's state only ever shows what the file holds.
type wal struct {
	mu       sync.Mutex
	cond     *sync.Cond
	path     string
	f        *os.File
	size     int64
	records  int
	cur      *walBatch
	flushing bool // a leader is writing, or the log is being compacted
	broken   error
	sync     func(*os.File) error // fsync; tests count calls
	syncs    atomic.Int64

	compacting  bool   // a background compaction is writing the new log (compactInBackground)
	tail        []byte // records committed since that compaction's snapshot, framed
	tailRecords int
}

type walBatch struct {
	buf     []byte
	applies []func()
	done    bool
	err     error
}

// openWAL reads the log at path (missing: empty) and returns its good payloads and how many bytes after them
// (a torn or damaged record and whatever follows) it left out. The caller replays the payloads, then calls rewrite to start appending.
func openWAL(path string, syncFn func(*os.File) error) (*wal, [][]byte, int, error) {
	if syncFn == nil {
		syncFn = (*os.File).Sync
	}
	w := &wal{path: path, cur: &walBatch{}, sync: syncFn}
	w.cond = sync.NewCond(&w.mu)
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, nil, 0, fmt.Errorf("nodestate: %w", err)
	}
	_ = os.Remove(path + tmpSuffix) // a compaction that did not finish
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return w, nil, 0, nil
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("nodestate: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("nodestate: reading %s: %w", path, err)
	}
	payloads, good := readRecords(data)
	return w, payloads, len(data) - good, nil
}

// commit adds a record and returns once its batch is written and fsynced (mu held; released while waiting
// or writing). apply runs under mu once the record is durable.
func (w *wal) commit(payload []byte, apply func()) error {
	if w.broken != nil {
		return w.broken
	}
	if w.f == nil {
		return ErrClosed
	}
	b := w.cur
	b.buf = appendRecord(b.buf, payload)
	b.applies = append(b.applies, apply)
	for !b.done {
		if w.flushing {
			w.cond.Wait()
			continue
		}
		w.flush()
	}
	return b.err
}

// flush writes the current batch as its leader. On failure it cuts the file back so no torn record stays
// before later ones; if that fails too the log takes no more records.
func (w *wal) flush() {
	b, f, size := w.cur, w.f, w.size
	w.cur, w.flushing = &walBatch{}, true
	w.mu.Unlock()
	var err error
	if f == nil {
		err = ErrClosed
	} else {
		if _, err = f.Write(b.buf); err == nil {
			w.syncs.Add(1)
			err = w.sync(f)
		}
		if err != nil {
			err = fmt.Errorf("nodestate: writing %s: %w", w.path, err)
			if terr := f.Truncate(size); terr != nil {
				w.mu.Lock()
				w.broken = fmt.Errorf("nodestate: %s unusable after a failed write: %w", w.path, err)
				w.mu.Unlock()
			}
		}
	}
	w.mu.Lock()
	if err == nil {
		w.size += int64(len(b.buf))
		w.records += len(b.applies)
		if w.compacting { // the new log must hold these too
			w.tail = append(w.tail, b.buf...)
			w.tailRecords += len(b.applies)
		}
		for _, apply := range b.applies {
			apply()
		}
	}
	b.buf, b.applies = nil, nil
	b.done, b.err, w.flushing = true, err, false
	w.cond.Broadcast()
}

// rewrite replaces the log with the given payloads (temporary file, fsync, rename, directory fsync) and
// reopens it for appending. mu is held; it waits for a batch being written and keeps writers out meanwhile.
func (w *wal) rewrite(payloads [][]byte) error {
	for w.flushing || w.compacting {
		w.cond.Wait()
	}
	var buf []byte
	for _, p := range payloads {
		buf = appendRecord(buf, p)
	}
	tmp := w.path + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, fileMode)
	if err != nil {
		return fmt.Errorf("nodestate: %w", err)
	}
	if _, err = f.Write(buf); err == nil {
		err = w.sync(f)
	}
	if err == nil {
		err = os.Rename(tmp, w.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(w.path))
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("nodestate: compacting %s: %w", w.path, err)
	}
	if w.f != nil {
		w.f.Close()
	}
	w.f, w.size, w.records, w.broken = f, int64(len(buf)), len(payloads), nil
	return nil
}

// compactInBackground replaces the log with payloads, a snapshot of the live records taken under mu (held),
// without holding mu while it writes them: commits go on into the old file meanwhile and are kept in tail,
// which is appended to the new file just before it takes the old one's place (under mu, briefly). A rewrite
// of a million records would otherwise stop every commit for seconds. No-op while one runs; report gets a
// failure (the old log then stays, whole).
func (w *wal) compactInBackground(payloads [][]byte, report func(error)) {
	if w.compacting || w.f == nil {
		return
	}
	w.compacting, w.tail, w.tailRecords = true, nil, 0
	go func() {
		if err := w.writeCompacted(payloads); err != nil && report != nil {
			report(err)
		}
	}()
}

func (w *wal) writeCompacted(payloads [][]byte) (err error) {
	var buf []byte
	for _, p := range payloads {
		buf = appendRecord(buf, p)
	}
	tmp := w.path + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, fileMode)
	if err == nil {
		if _, err = f.Write(buf); err == nil {
			err = w.sync(f)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() {
		if err != nil {
			if f != nil {
				f.Close()
			}
			os.Remove(tmp)
			err = fmt.Errorf("nodestate: compacting %s: %w", w.path, err)
		}
		w.compacting, w.tail, w.tailRecords = false, nil, 0
		w.cond.Broadcast()
	}()
	for w.flushing {
		w.cond.Wait()
	}
	if err != nil {
		return err
	}
	if w.f == nil {
		return ErrClosed
	}
	if len(w.tail) > 0 {
		if _, err = f.Write(w.tail); err == nil {
			err = w.sync(f)
		}
	}
	if err == nil {
		err = os.Rename(tmp, w.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(w.path))
	}
	if err != nil {
		return err
	}
	w.f.Close()
	w.f, w.size, w.records = f, int64(len(buf)+len(w.tail)), len(payloads)+w.tailRecords
	return nil
}

// close closes the file (mu held) once no batch is being written and no compaction runs.
func (w *wal) close() error {
	for w.flushing || w.compacting {
		w.cond.Wait()
	}
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return fmt.Errorf("nodestate: closing %s: %w", w.path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("nodestate: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("nodestate: sync %s: %w", dir, err)
	}
	return nil
}
