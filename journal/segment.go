package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Segment file layout (all integers little-endian):
//
//	header, 32 bytes: magic "RSJL", uint16 format version (1), 2 reserved bytes, uint64 first sequence
//	number, int64 base position (the stream position of the first frame), CRC32C of bytes 0-23, 4 reserved.
//	frames: uint32 payload length, uint32 CRC32C of (length, sequence, payload), uint64 sequence, payload.
const (
	segMagic        = "RSJL"
	segFormat       = 1
	segHeaderSize   = 32
	frameHeaderSize = 16
	// MaxRecordBytes bounds one encoded record; recovery treats a larger length as damage.
	MaxRecordBytes = 64 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segment is what the journal knows of one segment file.
type segment struct {
	index    int    // from the file name
	firstSeq uint64 // sequence number of its first frame
	basePos  int64  // stream position of its first frame
	path     string
}

func segmentName(index int) string { return fmt.Sprintf("journal-%06d.seg", index) }

// parseSegmentName returns the index in a segment file name, or false for any other file.
func parseSegmentName(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "journal-")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, ".seg")
	if !ok || len(s) < 6 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n > 0
}

// listSegments returns the indexes of the segment files in dir, in order.
func listSegments(dir string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var idx []int
	for _, e := range entries {
		if n, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			idx = append(idx, n)
		}
	}
	slices.Sort(idx)
	return idx, nil
}

func encodeSegmentHeader(firstSeq uint64, basePos int64) []byte {
	h := make([]byte, segHeaderSize)
	copy(h, segMagic)
	binary.LittleEndian.PutUint16(h[4:], segFormat)
	binary.LittleEndian.PutUint64(h[8:], firstSeq)
	binary.LittleEndian.PutUint64(h[16:], uint64(basePos))
	binary.LittleEndian.PutUint32(h[24:], crc32.Checksum(h[:24], castagnoli))
	return h
}

// errBadHeader reports a segment header that is short or fails its checks.
var errBadHeader = errors.New("bad segment header")

func decodeSegmentHeader(h []byte) (firstSeq uint64, basePos int64, err error) {
	if len(h) < segHeaderSize || string(h[:4]) != segMagic ||
		binary.LittleEndian.Uint32(h[24:]) != crc32.Checksum(h[:24], castagnoli) {
		return 0, 0, errBadHeader
	}
	if v := binary.LittleEndian.Uint16(h[4:]); v != segFormat {
		return 0, 0, fmt.Errorf("segment format %d not supported", v)
	}
	return binary.LittleEndian.Uint64(h[8:]), int64(binary.LittleEndian.Uint64(h[16:])), nil
}

// CorruptionError reports damaged journal data that recovery must not silently drop: a bad frame followed by
// more data, or a frame in a segment that is no longer written to.
type CorruptionError struct {
	Segment string // file name
	Offset  int64  // byte offset of the damaged frame in the file
	Reason  string
}

// Error names the segment, the offset and what is wrong; it holds no record content.
func (e *CorruptionError) Error() string {
	return fmt.Sprintf("journal: corrupt segment %s at offset %d: %s", e.Segment, e.Offset, e.Reason)
}

// putFrameHeader fills the 16 bytes in front of payload in frame.
func putFrameHeader(frame []byte, seq uint64) {
	binary.LittleEndian.PutUint32(frame[0:], uint32(len(frame)-frameHeaderSize))
	binary.LittleEndian.PutUint64(frame[8:], seq)
	binary.LittleEndian.PutUint32(frame[4:], frameCRC(frame[0:4], frame[8:]))
}

func frameCRC(length, seqAndPayload []byte) uint32 {
	return crc32.Update(crc32.Checksum(length, castagnoli), castagnoli, seqAndPayload)
}

// frameReader reads frames from a segment file, checking lengths, CRCs and sequence numbers.
type frameReader struct {
	r    io.Reader
	name string
	off  int64 // file offset of the next frame
	hdr  [frameHeaderSize]byte
	buf  []byte
}

// frameError is a frame that cannot be used; torn says the segment ended inside the frame.
type frameError struct {
	off    int64
	reason string
	torn   bool
}

func (e *frameError) Error() string { return e.reason }

// next returns the next frame's sequence number and payload (valid until the following call), io.EOF at a
// clean end of data, or a *frameError.
func (fr *frameReader) next() (uint64, []byte, error) {
	n, err := io.ReadFull(fr.r, fr.hdr[:])
	if err == io.EOF {
		return 0, nil, io.EOF
	}
	if err != nil {
		return 0, nil, fr.fail(err, n, "frame header")
	}
	length := binary.LittleEndian.Uint32(fr.hdr[0:])
	if length == 0 || length > MaxRecordBytes {
		return 0, nil, &frameError{off: fr.off, reason: fmt.Sprintf("frame length %d out of range", length)}
	}
	fr.buf = slices.Grow(fr.buf[:0], int(length))[:length]
	if n, err := io.ReadFull(fr.r, fr.buf); err != nil {
		return 0, nil, fr.fail(err, frameHeaderSize+n, "frame payload")
	}
	seq := binary.LittleEndian.Uint64(fr.hdr[8:])
	crc := crc32.Update(crc32.Checksum(fr.hdr[0:4], castagnoli), castagnoli, fr.hdr[8:16])
	if crc32.Update(crc, castagnoli, fr.buf) != binary.LittleEndian.Uint32(fr.hdr[4:]) {
		return 0, nil, &frameError{off: fr.off, reason: fmt.Sprintf("CRC mismatch in frame of sequence %d", seq)}
	}
	fr.off += frameHeaderSize + int64(length)
	return seq, fr.buf, nil
}

func (fr *frameReader) fail(err error, read int, what string) error {
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return &frameError{off: fr.off, reason: fmt.Sprintf("segment ends %d bytes into a %s", read, what), torn: true}
	}
	return fmt.Errorf("journal: reading %s at offset %d: %w", fr.name, fr.off, err)
}

// recoverSegment scans the last segment, truncates a torn tail and returns the sequence number of its last
// valid frame (firstSeq-1 when it has none) and the file size after truncation. A damaged frame counts as a
// torn tail only when nothing but zero bytes or the damaged frame itself follows it; anything else is a
// *CorruptionError.
func recoverSegment(s segment, sync func(*os.File) error) (lastSeq uint64, size int64, err error) {
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return 0, 0, err
	}
	name := filepath.Base(s.path)
	fr := frameReader{r: bytes.NewReader(data[segHeaderSize:]), name: name, off: segHeaderSize}
	lastSeq = s.firstSeq - 1
	for {
		seq, _, err := fr.next()
		if err == io.EOF {
			return lastSeq, fr.off, nil
		}
		var fe *frameError
		if errors.As(err, &fe) {
			if !fe.torn && !tornTail(data, fe.off) {
				return 0, 0, &CorruptionError{Segment: name, Offset: fe.off, Reason: fe.reason}
			}
			if err := f.Truncate(fe.off); err != nil {
				return 0, 0, err
			}
			if err := sync(f); err != nil {
				return 0, 0, err
			}
			return lastSeq, fe.off, nil
		}
		if err != nil {
			return 0, 0, err
		}
		if seq != lastSeq+1 {
			return 0, 0, &CorruptionError{Segment: name, Offset: fr.off, Reason: fmt.Sprintf("sequence %d after %d", seq, lastSeq)}
		}
		lastSeq = seq
	}
}

// tornTail reports whether the damaged frame at off is the end of what was written: its declared length is
// plausible and reaches the end of the file, or everything after its header is zero (blocks allocated but
// never written). A length out of range followed by data is damage, not a torn write.
func tornTail(data []byte, off int64) bool {
	rest := data[off:]
	if len(rest) >= frameHeaderSize {
		length := binary.LittleEndian.Uint32(rest)
		if length > 0 && length <= MaxRecordBytes && frameHeaderSize+int64(length) >= int64(len(rest)) {
			return true
		}
	}
	return !slices.ContainsFunc(rest[min(len(rest), frameHeaderSize):], func(b byte) bool { return b != 0 })
}
