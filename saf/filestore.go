package saf

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// File layout: one log per acquirer, <dir>/<acquirer>.saf, of records
//
//	length uint32 BE | CRC-32C of payload uint32 BE | payload (JSON of a fileRecord)
//
// Records are fsynced before Put or Remove returns. At open a torn or damaged record ends the log: the bytes
// from there on are moved to <log>.discarded-<time> and reported.
const (
	fileExt    = ".saf"
	recHeader  = 8
	maxRecord  = 1 << 20
	defCompact = 4096
	opPut      = "put" // a new entry, with its sealed message
	opSet      = "set" // a new state of a known entry
	opDel      = "del" // the entry was acknowledged
	fileMode   = 0o600
	dirMode    = 0o700
	tmpSuffix  = ".tmp"
	hexPrefix  = "x-" // log names of acquirers whose name is not a plain file name: x-<hex>
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type fileRecord struct {
	Op string `json:"op"`
	ID string `json:"id,omitempty"` // opDel
	E  *Entry `json:"e,omitempty"`  // opPut, opSet
}

// FileStoreOptions tune a FileStore.
type FileStoreOptions struct {
	// CompactAfter is how many records a log may hold before it is rewritten with its live entries only,
	// once acknowledged entries make up most of it (default 4096).
	CompactAfter int
	// Log receives reports of torn records discarded at open (default: none).
	Log *zap.Logger
}

// FileStore is the embedded Store: an append-only log per acquirer in one directory, replayed and compacted
// when opened. It is safe for concurrent use; acquirers do not share a lock.
type FileStore struct {
	dir  string
	opts FileStoreOptions

	mu     sync.Mutex
	files  map[string]*logFile // by acquirer
	closed bool
}

// logFile is the log of one acquirer and the latest state of its entries. Records are group-committed:
// callers add theirs to the batch being filled; one of them (the leader) writes and fsyncs the whole batch
// while the next one fills, then applies every record of the batch to entries, so entries always matches
// what the file holds.
type logFile struct {
	mu       sync.Mutex
	cond     *sync.Cond // signalled when a batch is done
	path     string
	f        *os.File
	size     int64
	records  int
	entries  map[string]*Entry
	cur      *batch
	flushing bool  // a leader is writing, or the log is being compacted
	spare    batch // buffers of the last written batch, reused by the next one
	broken   error // a failed write that could not be undone: the log takes no more records
}

// batch is a group of records written with one write and one fsync.
type batch struct {
	buf     []byte
	applies []func()
	done    bool
	err     error
}

func newLogFile(path string, f *os.File, entries map[string]*Entry) *logFile {
	lf := &logFile{path: path, f: f, entries: entries, cur: &batch{}}
	lf.cond = sync.NewCond(&lf.mu)
	return lf
}

// OpenFileStore opens (creating it if needed) the queue directory dir, replays every acquirer's log,
// truncates a torn last record and compacts each log.
func OpenFileStore(dir string, opts FileStoreOptions) (*FileStore, error) {
	if opts.CompactAfter <= 0 {
		opts.CompactAfter = defCompact
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("saf: %w", err)
	}
	s := &FileStore{dir: dir, opts: opts, files: map[string]*logFile{}}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("saf: %w", err)
	}
	for _, de := range names {
		name := de.Name()
		if strings.HasSuffix(name, fileExt+tmpSuffix) { // a compaction that did not finish
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("saf: %w", err)
			}
			continue
		}
		if de.IsDir() || !strings.HasSuffix(name, fileExt) {
			continue
		}
		if err := s.openLog(filepath.Join(dir, name)); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// openLog replays one log, then rewrites it with its live entries (or removes it when it has none).
func (s *FileStore) openLog(path string) error {
	entries, tail, err := replay(path)
	if err != nil {
		return err
	}
	if len(tail) > 0 {
		// Usually a record torn by a crash; after disk damage it may hold later records: keep a copy (their
		// messages are sealed) for an operator.
		kept := fmt.Sprintf("%s.discarded-%d", path, time.Now().UnixNano())
		if err := os.WriteFile(kept, tail, fileMode); err != nil {
			return fmt.Errorf("saf: keeping the damaged end of %s: %w", path, err)
		}
		s.opts.Log.Warn("saf: torn or damaged end of a queue log discarded and kept aside",
			zap.String("file", path), zap.Int("bytes", len(tail)), zap.String("kept", kept))
	}
	if len(entries) == 0 {
		return removeSynced(path)
	}
	var acquirer string
	for _, e := range entries {
		acquirer = e.Acquirer
		break
	}
	lf := newLogFile(path, nil, entries)
	if err := lf.compact(); err != nil {
		return err
	}
	s.files[acquirer] = lf
	return nil
}

// replay reads a log and returns its live entries and the bytes after its last good record.
func replay(path string) (map[string]*Entry, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("saf: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, fmt.Errorf("saf: %s: %w", path, err)
	}
	entries := map[string]*Entry{}
	off := 0
	for len(data)-off >= recHeader {
		n := int(binary.BigEndian.Uint32(data[off:]))
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n > maxRecord || len(data)-off-recHeader < n {
			break
		}
		payload := data[off+recHeader : off+recHeader+n]
		if crc32.Checksum(payload, crcTable) != sum {
			break
		}
		var r fileRecord
		if json.Unmarshal(payload, &r) != nil || !apply(entries, &r) {
			break
		}
		off += recHeader + n
	}
	return entries, data[off:], nil
}

// apply replays one record; false means it does not fit the log (damage).
func apply(entries map[string]*Entry, r *fileRecord) bool {
	switch r.Op {
	case opPut:
		if r.E == nil || r.E.ID == "" || len(r.E.Sealed) == 0 {
			return false
		}
		entries[r.E.ID] = r.E
	case opSet:
		if r.E == nil {
			return false
		}
		old, ok := entries[r.E.ID]
		if !ok {
			return false
		}
		r.E.Sealed = old.Sealed
		entries[r.E.ID] = r.E
	case opDel:
		delete(entries, r.ID)
	default:
		return false
	}
	return true
}

// Load returns copies of every entry, ordered by acquirer then Seq.
func (s *FileStore) Load(context.Context) ([]*Entry, error) {
	s.mu.Lock()
	files := make([]*logFile, 0, len(s.files))
	for _, lf := range s.files {
		files = append(files, lf)
	}
	s.mu.Unlock()
	var out []*Entry
	for _, lf := range files {
		lf.mu.Lock()
		for _, e := range lf.entries {
			c := *e
			out = append(out, &c)
		}
		lf.mu.Unlock()
	}
	sortEntries(out)
	return out, nil
}

func sortEntries(es []*Entry) {
	slices.SortFunc(es, func(a, b *Entry) int {
		if c := strings.Compare(a.Acquirer, b.Acquirer); c != 0 {
			return c
		}
		return cmpUint(a.Seq, b.Seq)
	})
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Put appends the entry's state to its acquirer's log and returns once it is fsynced.
func (s *FileStore) Put(_ context.Context, e *Entry) error {
	lf, err := s.log(e.Acquirer, true)
	if err != nil {
		return err
	}
	lf.mu.Lock()
	defer lf.mu.Unlock()
	c := *e
	r := fileRecord{Op: opPut, E: &c}
	old, known := lf.entries[e.ID]
	if known {
		r.Op, c.Sealed = opSet, nil // the message is in the entry's put record already
	} else if len(e.Sealed) == 0 {
		return fmt.Errorf("saf: new entry %s has no message", e.ID)
	}
	payload, err := marshalRecord(&r)
	if err != nil {
		return fmt.Errorf("saf: %w", err)
	}
	if known {
		c.Sealed = old.Sealed
	}
	if err := lf.commit(payload, func() { lf.entries[c.ID] = &c }); err != nil {
		return err
	}
	s.maybeCompact(lf)
	return nil
}

// Remove appends the acknowledgement of an entry and returns once it is fsynced.
func (s *FileStore) Remove(_ context.Context, acquirer, id string) error {
	lf, err := s.log(acquirer, false)
	if err != nil {
		return err
	}
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if _, ok := lf.entries[id]; !ok {
		return nil
	}
	payload, err := marshalRecord(&fileRecord{Op: opDel, ID: id})
	if err != nil {
		return fmt.Errorf("saf: %w", err)
	}
	if err := lf.commit(payload, func() { delete(lf.entries, id) }); err != nil {
		return err
	}
	s.maybeCompact(lf)
	return nil
}

// maybeCompact rewrites a log (lf.mu held) that holds many more records than live entries. A failure is
// only logged: the record that led here is durable, and the log stays as it was.
func (s *FileStore) maybeCompact(lf *logFile) {
	if lf.records < s.opts.CompactAfter || lf.records <= 4*len(lf.entries) {
		return
	}
	for lf.flushing {
		lf.cond.Wait()
	}
	lf.flushing = true
	if err := lf.compact(); err != nil {
		s.opts.Log.Error("saf: compaction failed", zap.String("file", lf.path), zap.Error(err))
	}
	lf.flushing = false
	lf.cond.Broadcast()
}

// Close closes every log.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	for _, lf := range s.files {
		lf.mu.Lock()
		for lf.flushing {
			lf.cond.Wait()
		}
		if lf.f != nil {
			errs = append(errs, lf.f.Close())
			lf.f = nil
		}
		lf.mu.Unlock()
	}
	return errors.Join(errs...)
}

// log returns the log of an acquirer, creating it when create is set.
func (s *FileStore) log(acquirer string, create bool) (*logFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if lf, ok := s.files[acquirer]; ok {
		return lf, nil
	}
	if !create {
		return nil, fmt.Errorf("saf: no queue for acquirer %q", acquirer)
	}
	path := filepath.Join(s.dir, fileName(acquirer))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, fileMode)
	if err != nil {
		return nil, fmt.Errorf("saf: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return nil, err
	}
	lf := newLogFile(path, f, map[string]*Entry{})
	s.files[acquirer] = lf
	return lf, nil
}

// fileName is the log file of an acquirer: its name when that is a plain file name, else x-<hex>.
func fileName(acquirer string) string {
	plain := acquirer != "" && !strings.HasPrefix(acquirer, hexPrefix) && acquirer[0] != '.'
	for _, c := range acquirer {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			plain = false
		}
	}
	if plain {
		return acquirer + fileExt
	}
	return hexPrefix + hex.EncodeToString([]byte(acquirer)) + fileExt
}

// appendRecord appends the framed record of payload to dst.
func appendRecord(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(payload, crcTable))
	return append(dst, payload...)
}

// commit adds a record to the current batch and returns once that batch is written and fsynced (lf.mu
// held; it is released while waiting or writing). apply runs, under lf.mu, once the record is durable.
func (lf *logFile) commit(payload []byte, apply func()) error {
	if lf.broken != nil {
		return lf.broken
	}
	if lf.f == nil {
		return ErrClosed
	}
	b := lf.cur
	b.buf = appendRecord(b.buf, payload)
	b.applies = append(b.applies, apply)
	for !b.done {
		if lf.flushing {
			lf.cond.Wait()
			continue
		}
		lf.flush()
	}
	return b.err
}

// flush writes the current batch as its leader (lf.mu held, released during the write). On failure it
// cuts the file back so no torn record stays before later ones.
func (lf *logFile) flush() {
	b, f, size, err := lf.cur, lf.f, lf.size, lf.broken
	lf.cur, lf.flushing = &batch{buf: lf.spare.buf[:0], applies: lf.spare.applies[:0]}, true
	lf.mu.Unlock()
	broken := false
	switch {
	case err != nil:
	case f == nil:
		err = ErrClosed
	default:
		if _, err = f.Write(b.buf); err == nil {
			err = f.Sync()
		}
		if err != nil {
			err = fmt.Errorf("saf: %s: %w", lf.path, err)
			if terr := f.Truncate(size); terr != nil {
				broken, err = true, fmt.Errorf("saf: %s unusable after a failed write: %w", lf.path, err)
			}
		}
	}
	lf.mu.Lock()
	if err == nil {
		lf.size += int64(len(b.buf))
		lf.records += len(b.applies)
		for _, apply := range b.applies {
			apply()
		}
	} else if broken {
		lf.broken = err
	}
	clear(b.applies)
	lf.spare = batch{buf: b.buf, applies: b.applies} // only done and err of b are read from here on
	b.buf, b.applies = nil, nil
	b.done, b.err, lf.flushing = true, err, false
	lf.cond.Broadcast()
}

// compact rewrites the log with one put record per live entry (temporary file, fsync, rename, directory
// fsync) and reopens it for appending. The caller holds lf.mu and keeps other writers out.
func (lf *logFile) compact() error {
	es := make([]*Entry, 0, len(lf.entries))
	for _, e := range lf.entries {
		es = append(es, e)
	}
	sortEntries(es)
	var buf []byte
	for _, e := range es {
		payload, err := marshalRecord(&fileRecord{Op: opPut, E: e})
		if err != nil {
			return fmt.Errorf("saf: %w", err)
		}
		buf = appendRecord(buf, payload)
	}
	tmp := lf.path + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, fileMode)
	if err != nil {
		return fmt.Errorf("saf: %w", err)
	}
	if _, err = f.Write(buf); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, lf.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(lf.path))
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("saf: compacting %s: %w", lf.path, err)
	}
	if lf.f != nil {
		lf.f.Close()
	}
	lf.f, lf.size, lf.records, lf.broken = f, int64(len(buf)), len(es), nil
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("saf: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("saf: sync %s: %w", dir, err)
	}
	return nil
}

func removeSynced(path string) error {
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("saf: %w", err)
	}
	return syncDir(filepath.Dir(path))
}
