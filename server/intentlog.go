package server

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/railswitch/railswitch/saf"
	"go.uber.org/zap"
)

// The intent log: one append-only file, <dir>/intents.log, of records
//
//	length uint32 BE | CRC-32C of payload uint32 BE | payload
//
// with payload 'B' (begin) id acquirer link txn kind queued(varint Unix ns) sealed, or 'E' (end) id; texts and
// sealed are a uvarint length and the bytes.
//
// Begins are group-committed: concurrent Puts share one write and one fsync, and a Put returns once its record
// is fsynced, so a crash never loses a Begin. An End (Remove) returns once its record is written, without an
// fsync of its own: a process crash keeps it (the kernel has it), and the next Begin's fsync, or the lazy
// fsync intentSyncDelay after the write, makes it durable. Only a power loss (or a kernel crash) in that
// window can bring back an intent whose request had an outcome, and its reversal is then queued at the next
// start: the same outcome as a crash between the reply and the End, whose window this widens by at most
// intentSyncDelay, and for a power loss only.
//
// At open the log is replayed and rewritten with the open intents only (temporary file, fsync, rename,
// directory fsync), and it is rewritten the same way once it holds intentCompactAfter records and the open
// intents are under a quarter of them, so a start reads at most that many records besides the open intents.
// A torn or damaged record ends the log: the bytes from there on are moved to intents.log.discarded-<time>.
const (
	intentLogName      = "intents.log"
	intentRecHeader    = 8
	intentMaxRecord    = 1 << 20
	intentOpBegin      = 'B'
	intentOpEnd        = 'E'
	intentSyncDelay    = 10 * time.Millisecond
	intentCompactAfter = 1 << 16
	intentTmpSuffix    = ".tmp"
)

var intentCRC = crc32.MakeTable(crc32.Castagnoli)

// errIntentLogClosed is returned by the methods of a closed intentLog.
var errIntentLogClosed = errors.New("intent log closed")

// intentLog implements saf.Store for the intents (see the file layout above). It keeps the fields intents use:
// ID, Acquirer, Link, TxnID, Kind, Queued (Since is Queued) and Sealed; Seq is the order of the Begins.
type intentLog struct {
	dir, path    string
	log          *zap.Logger
	compactAfter int
	syncDelay    time.Duration

	mu        sync.Mutex
	cond      *sync.Cond // signalled when a batch or a lazy fsync is done
	f         *os.File
	size      int64
	records   int
	seq       uint64
	live      map[string]*saf.Entry // open intents by id
	cur       *intentBatch
	spare     intentBatch // buffers of the last written batch, reused by the next one
	flushing  bool        // a leader is writing, a lazy fsync runs, or the log is being compacted
	dirty     bool        // records written but not yet fsynced
	syncTimer *time.Timer // the lazy fsync, armed while dirty
	armed     bool
	broken    error // a failed write or fsync: the log takes no more records
	batches   int   // writes done, for tests
}

// intentBatch is a group of records written with one write, and one fsync when a Begin is among them.
type intentBatch struct {
	buf  []byte
	ops  []intentOp
	sync bool
	done bool
	err  error
}

// intentOp is what one record of a batch does to the open intents once written.
type intentOp struct {
	begin *saf.Entry // nil for an end
	id    string
}

// openIntentLog opens (creating it if needed) the intent log in dir, replays it and rewrites it with the open
// intents only. Intents a saf.FileStore kept in dir (the format before this log) are carried over and its
// files removed.
func openIntentLog(dir string, log *zap.Logger) (*intentLog, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("intents: %w", err)
	}
	l := &intentLog{dir: dir, path: filepath.Join(dir, intentLogName), log: log, compactAfter: intentCompactAfter,
		syncDelay: intentSyncDelay, live: map[string]*saf.Entry{}, cur: &intentBatch{}}
	l.cond = sync.NewCond(&l.mu)
	if err := os.Remove(l.path + intentTmpSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("intents: %w", err)
	}
	data, err := os.ReadFile(l.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("intents: %w", err)
	}
	off := l.replay(data)
	if off < len(data) {
		kept := fmt.Sprintf("%s.discarded-%d", l.path, time.Now().UnixNano())
		if err := os.WriteFile(kept, data[off:], 0o600); err != nil {
			return nil, fmt.Errorf("intents: keeping the damaged tail of %s: %w", l.path, err)
		}
		log.Warn("intent log: torn or damaged records discarded", zap.String("file", l.path),
			zap.Int64("offset", int64(off)), zap.Int("bytes", len(data)-off), zap.String("kept_in", kept))
	}
	old, err := l.importFileStore()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	err = l.compact()
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	for _, name := range old {
		if err := os.Remove(name); err != nil {
			return nil, fmt.Errorf("intents: %w", err)
		}
	}
	l.syncTimer = time.AfterFunc(time.Hour, l.lazySync)
	l.syncTimer.Stop()
	return l, nil
}

// replay applies the records of data to the open intents and returns where the valid records end.
func (l *intentLog) replay(data []byte) int {
	off := 0
	for len(data)-off >= intentRecHeader {
		n := int(binary.BigEndian.Uint32(data[off:]))
		if n > intentMaxRecord || len(data)-off-intentRecHeader < n {
			break
		}
		payload := data[off+intentRecHeader : off+intentRecHeader+n]
		if crc32.Checksum(payload, intentCRC) != binary.BigEndian.Uint32(data[off+4:]) {
			break
		}
		op, err := decodeIntentRecord(payload)
		if err != nil {
			break
		}
		if op.begin != nil {
			l.seq++
			op.begin.Seq = l.seq
			l.live[op.begin.ID] = op.begin
		} else {
			delete(l.live, op.id)
		}
		off += intentRecHeader + n
	}
	return off
}

// importFileStore adds the intents of the saf.FileStore files in the directory, if any, and returns those
// files (removed once the log holding their intents is durable).
func (l *intentLog) importFileStore() ([]string, error) {
	old, err := filepath.Glob(filepath.Join(l.dir, "*.saf"))
	if err != nil || len(old) == 0 {
		return nil, err
	}
	st, err := saf.OpenFileStore(l.dir, saf.FileStoreOptions{Log: l.log})
	if err != nil {
		return nil, fmt.Errorf("intents: reading the intents of the previous format: %w", err)
	}
	es, err := st.Load(context.Background())
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("intents: reading the intents of the previous format: %w", err)
	}
	for _, e := range es {
		l.seq++
		c := &saf.Entry{ID: e.ID, Seq: l.seq, Acquirer: e.Acquirer, Link: e.Link, TxnID: e.TxnID, Kind: e.Kind,
			Queued: e.Queued, Since: e.Queued, Sealed: e.Sealed}
		l.live[c.ID] = c
	}
	// OpenFileStore compacted them, and removed the logs without entries.
	return filepath.Glob(filepath.Join(l.dir, "*.saf"))
}

// Load implements saf.Store: copies of the open intents, in the order they began.
func (l *intentLog) Load(context.Context) ([]*saf.Entry, error) {
	l.mu.Lock()
	out := make([]*saf.Entry, 0, len(l.live))
	for _, e := range l.live {
		c := *e
		out = append(out, &c)
	}
	l.mu.Unlock()
	slices.SortFunc(out, func(a, b *saf.Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// Put implements saf.Store: it records the begin of an intent and returns once it is fsynced.
func (l *intentLog) Put(_ context.Context, e *saf.Entry) error {
	if e.ID == "" || len(e.Sealed) == 0 {
		return fmt.Errorf("intents: intent %q without an id or a message", e.ID)
	}
	c := &saf.Entry{ID: e.ID, Acquirer: e.Acquirer, Link: e.Link, TxnID: e.TxnID, Kind: e.Kind, Queued: e.Queued,
		Since: e.Queued, Sealed: e.Sealed}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.commit(intentOp{begin: c, id: c.ID}, true)
}

// Remove implements saf.Store: it records the end of an intent and returns once the record is written; it is
// fsynced with the next Begin, or intentSyncDelay later. An unknown id is no error.
func (l *intentLog) Remove(_ context.Context, _, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.live[id]; !ok {
		return nil
	}
	return l.commit(intentOp{id: id}, false)
}

// Close waits for the batch being written, fsyncs what is not yet durable and closes the file.
func (l *intentLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.flushing {
		l.cond.Wait()
	}
	if l.f == nil {
		return nil
	}
	if l.syncTimer != nil {
		l.syncTimer.Stop()
	}
	var err error
	if l.dirty && l.broken == nil {
		err = l.f.Sync()
	}
	err = errors.Join(err, l.f.Close())
	l.f = nil
	if err != nil {
		return fmt.Errorf("intents: closing %s: %w", l.path, err)
	}
	return nil
}

// commit adds op's record to the current batch and returns once that batch is written, and fsynced when sync
// is set (l.mu held; released while waiting or writing).
func (l *intentLog) commit(op intentOp, sync bool) error {
	if l.broken != nil {
		return l.broken
	}
	if l.f == nil {
		return errIntentLogClosed
	}
	b := l.cur
	start := len(b.buf)
	b.buf = append(b.buf, make([]byte, intentRecHeader)...)
	b.buf = appendIntentRecord(b.buf, op)
	payload := b.buf[start+intentRecHeader:]
	if len(payload) > intentMaxRecord {
		b.buf = b.buf[:start]
		return fmt.Errorf("intents: record of %s encodes to more than %d bytes", op.id, intentMaxRecord)
	}
	binary.BigEndian.PutUint32(b.buf[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b.buf[start+4:], crc32.Checksum(payload, intentCRC))
	b.ops = append(b.ops, op)
	b.sync = b.sync || sync
	for !b.done {
		if l.flushing {
			l.cond.Wait()
			continue
		}
		l.flush()
	}
	if b.err == nil {
		l.maybeCompact()
	}
	return b.err
}

// flush writes the current batch as its leader (l.mu held, released during the write). On failure it cuts the
// file back so no torn record stays before later ones; when that fails too, the log is broken.
func (l *intentLog) flush() {
	b, f, size := l.cur, l.f, l.size
	l.cur, l.flushing = &intentBatch{buf: l.spare.buf[:0], ops: l.spare.ops[:0]}, true
	l.mu.Unlock()
	_, err := f.Write(b.buf)
	if err == nil && b.sync {
		err = f.Sync()
	}
	broken := false
	if err != nil {
		err = fmt.Errorf("intents: writing %s: %w", l.path, err)
		// After a failed fsync what reached the disk is unknown (as for the journal): take no more records.
		// After a failed write, cut the file back so no torn record stays before later ones.
		if terr := f.Truncate(size); terr != nil || b.sync {
			broken = true
		}
	}
	l.mu.Lock()
	if broken {
		l.broken = err
		l.log.Error("intent log stopped; every request fails until the switch restarts", zap.Error(err))
	}
	if err == nil {
		l.batches++
		l.size += int64(len(b.buf))
		l.records += len(b.ops)
		for _, op := range b.ops {
			if op.begin != nil {
				l.seq++
				op.begin.Seq = l.seq
				l.live[op.id] = op.begin
			} else {
				delete(l.live, op.id)
			}
		}
		if b.sync {
			l.dirty = false
		} else {
			l.dirty = true
			if !l.armed && l.syncTimer != nil {
				l.armed = true
				l.syncTimer.Reset(l.syncDelay)
			}
		}
	}
	clear(b.ops)
	l.spare = intentBatch{buf: b.buf, ops: b.ops} // only done and err of b are read from here on
	b.buf, b.ops = nil, nil
	b.done, b.err, l.flushing = true, err, false
	l.cond.Broadcast()
}

// lazySync fsyncs records written without an fsync (ends) that no Begin has fsynced since.
func (l *intentLog) lazySync() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.armed = false
	for l.flushing {
		l.cond.Wait()
	}
	if !l.dirty || l.f == nil || l.broken != nil {
		return
	}
	f := l.f
	l.flushing = true
	l.mu.Unlock()
	err := f.Sync()
	l.mu.Lock()
	if err == nil {
		l.dirty = false
	} else {
		l.broken = fmt.Errorf("intents: fsync of %s: %w", l.path, err)
		l.log.Error("intent log stopped; every request fails until the switch restarts", zap.Error(l.broken))
	}
	l.flushing = false
	l.cond.Broadcast()
}

// maybeCompact rewrites the log when it holds many more records than open intents (l.mu held). A failure is
// only logged: the records are durable, and the log stays as it was.
func (l *intentLog) maybeCompact() {
	if l.records < l.compactAfter || l.records <= 4*len(l.live) {
		return
	}
	for l.flushing {
		l.cond.Wait()
	}
	if l.records < l.compactAfter || l.f == nil {
		return // another caller compacted, or the log was closed, while this one waited
	}
	l.flushing = true
	if err := l.compact(); err != nil {
		l.log.Error("intent log: compaction failed", zap.String("file", l.path), zap.Error(err))
	}
	l.flushing = false
	l.cond.Broadcast()
}

// compact writes the open intents to a new log (temporary file, fsync, rename, directory fsync) and makes it
// the one appended to (l.mu held, no batch being written).
func (l *intentLog) compact() error {
	es := make([]*saf.Entry, 0, len(l.live))
	for _, e := range l.live {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b *saf.Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	var buf []byte
	for _, e := range es {
		start := len(buf)
		buf = appendIntentRecord(append(buf, make([]byte, intentRecHeader)...), intentOp{begin: e, id: e.ID})
		payload := buf[start+intentRecHeader:]
		binary.BigEndian.PutUint32(buf[start:], uint32(len(payload)))
		binary.BigEndian.PutUint32(buf[start+4:], crc32.Checksum(payload, intentCRC))
	}
	tmp := l.path + intentTmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("intents: %w", err)
	}
	if _, err = f.Write(buf); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, l.path)
	}
	if err == nil {
		err = syncIntentDir(l.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("intents: rewriting %s: %w", l.path, err)
	}
	if l.f != nil {
		l.f.Close()
	}
	l.f, l.size, l.records, l.dirty, l.broken = f, int64(len(buf)), len(es), false, nil
	return nil
}

func syncIntentDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// appendIntentRecord appends the payload of op's record to dst.
func appendIntentRecord(dst []byte, op intentOp) []byte {
	if op.begin == nil {
		return appendIntentText(append(dst, intentOpEnd), op.id)
	}
	e := op.begin
	dst = append(dst, intentOpBegin)
	for _, s := range [...]string{e.ID, e.Acquirer, e.Link, e.TxnID, string(e.Kind)} {
		dst = appendIntentText(dst, s)
	}
	var queued int64
	if !e.Queued.IsZero() {
		queued = e.Queued.UnixNano()
	}
	dst = binary.AppendVarint(dst, queued)
	dst = binary.AppendUvarint(dst, uint64(len(e.Sealed)))
	return append(dst, e.Sealed...)
}

func appendIntentText(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

// errIntentRecord reports a record payload that does not decode.
var errIntentRecord = errors.New("intents: malformed record")

// decodeIntentRecord decodes one record payload; the strings and the sealed message are copies.
func decodeIntentRecord(p []byte) (intentOp, error) {
	if len(p) == 0 {
		return intentOp{}, errIntentRecord
	}
	d := intentDecoder{b: p[1:]}
	switch p[0] {
	case intentOpEnd:
		id := d.text()
		if d.err != nil || id == "" || len(d.b) != 0 {
			return intentOp{}, errIntentRecord
		}
		return intentOp{id: id}, nil
	case intentOpBegin:
		e := &saf.Entry{ID: d.text(), Acquirer: d.text(), Link: d.text(), TxnID: d.text(), Kind: saf.Kind(d.text())}
		queued := d.varint()
		e.Sealed = []byte(d.bytes())
		if d.err != nil || e.ID == "" || len(e.Sealed) == 0 || len(d.b) != 0 {
			return intentOp{}, errIntentRecord
		}
		if queued != 0 {
			e.Queued = time.Unix(0, queued)
			e.Since = e.Queued
		}
		return intentOp{begin: e, id: e.ID}, nil
	}
	return intentOp{}, fmt.Errorf("%w: unknown operation %s", errIntentRecord, strconv.QuoteRune(rune(p[0])))
}

// intentDecoder reads the fields of a payload; the first error sticks and makes later reads empty.
type intentDecoder struct {
	b   []byte
	err error
}

func (d *intentDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errIntentRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *intentDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errIntentRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns the next length-prefixed field as a string (a copy), refusing a length beyond the payload
// before allocating.
func (d *intentDecoder) bytes() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errIntentRecord
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *intentDecoder) text() string { return d.bytes() }

var _ saf.Store = (*intentLog)(nil)
