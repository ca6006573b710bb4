package journal

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Entry is a record read back from the journal with its place in it.
type Entry struct {
	Seq    uint64
	Record Record
	// End is the position just after this record: what a sink's checkpoint becomes once it is shipped.
	End Position
}

// Reader iterates over durable records in sequence order. It is not safe for concurrent use; any number of
// Readers may run beside Append.
type Reader struct {
	j    *Journal
	next uint64 // sequence number of the next record to return
	seg  segment
	f    *os.File
	fr   frameReader
}

// NewReader returns a Reader whose first record is from (1 for the beginning). from may be one past the last
// record, to wait for new ones; records deleted by retention cannot be read.
func (j *Journal) NewReader(from uint64) (*Reader, error) {
	if from == 0 {
		from = 1
	}
	if first := j.firstAvailable().Seq + 1; from < first {
		return nil, fmt.Errorf("journal: sequence %d was removed by retention; the oldest is %d", from, first)
	}
	if last := j.LastSeq(); from > last+1 {
		return nil, fmt.Errorf("journal: sequence %d is beyond the last record %d", from, last)
	}
	return &Reader{j: j, next: from}, nil
}

// Next returns the next durable record, or io.EOF when the reader has caught up with the journal (call Next
// again after more appends). A damaged frame is a *CorruptionError.
func (r *Reader) Next() (Entry, error) {
	if r.next > r.j.LastSeq() {
		return Entry{}, io.EOF
	}
	if r.f == nil || r.next >= r.nextSegmentFirst() {
		if err := r.open(); err != nil {
			return Entry{}, err
		}
	}
	name := filepath.Base(r.seg.path)
	for {
		off := r.fr.off
		seq, payload, err := r.fr.next()
		if err == io.EOF {
			return Entry{}, &CorruptionError{Segment: name, Offset: off, Reason: fmt.Sprintf("segment ends before sequence %d", r.next)}
		}
		if fe, ok := err.(*frameError); ok {
			return Entry{}, &CorruptionError{Segment: name, Offset: fe.off, Reason: fe.reason}
		}
		if err != nil {
			return Entry{}, err
		}
		if seq < r.next && seq >= r.seg.firstSeq { // positioning inside a segment after open
			continue
		}
		if seq != r.next {
			return Entry{}, &CorruptionError{Segment: name, Offset: off, Reason: fmt.Sprintf("sequence %d where %d was expected", seq, r.next)}
		}
		rec, err := decodeRecord(payload)
		if err != nil {
			return Entry{}, &CorruptionError{Segment: name, Offset: off, Reason: err.Error()}
		}
		r.next++
		return Entry{Seq: seq, Record: rec, End: Position{Seq: seq, Bytes: r.seg.basePos + r.fr.off - segHeaderSize}}, nil
	}
}

// nextSegmentFirst returns the first sequence number of the segment after the current one, or the maximum
// when the current one is the last.
func (r *Reader) nextSegmentFirst() uint64 {
	_, next, _ := r.j.segmentFor(r.seg.firstSeq)
	if next == nil {
		return ^uint64(0)
	}
	return next.firstSeq
}

// open switches to the segment that holds r.next, positioned at its first frame.
func (r *Reader) open() error {
	s, _, ok := r.j.segmentFor(r.next)
	if !ok {
		return fmt.Errorf("journal: sequence %d is not in any segment", r.next)
	}
	r.Close()
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if _, err := f.Seek(segHeaderSize, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("journal: %w", err)
	}
	r.seg, r.f = s, f
	r.fr = frameReader{r: bufio.NewReaderSize(f, 64<<10), name: filepath.Base(s.path), off: segHeaderSize, buf: r.fr.buf}
	return nil
}

// Close releases the open segment file. The Reader may be used again; it reopens what it needs.
func (r *Reader) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
