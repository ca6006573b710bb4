package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The binary record encoding, version 1: a version byte, then the fields in the order below. Texts are a
// uvarint length and the bytes; Amount is a zigzag varint; times are varint Unix nanoseconds (0 for the zero
// time); flags bit 0 is Posting. A later version appends fields and keeps decodeV1 for old segments.

// appendRecord appends the encoding of r to dst.
func appendRecord(dst []byte, r *Record) []byte {
	dst = append(dst, RecordVersion)
	dst = appendText(dst, r.TxnID)
	dst = append(dst, byte(r.Kind))
	dst = appendText(dst, r.OriginalTxnID)
	var flags byte
	if r.Posting {
		flags |= 1
	}
	dst = append(dst, flags)
	for _, s := range [...]string{r.Bureau, r.Station, r.Channel, r.Terminal, r.Merchant, r.Acquirer,
		r.MTI, r.ProcessingCode} {
		dst = appendText(dst, s)
	}
	dst = binary.AppendVarint(dst, r.Amount)
	for _, s := range [...]string{r.Currency, r.ResponseCode, r.AuthCode, r.RRN, r.TerminalSTAN,
		r.AcquirerSTAN, r.PAN.s, r.TerminalLocalTime} {
		dst = appendText(dst, s)
	}
	dst = appendTime(dst, r.ReceivedAt)
	dst = appendTime(dst, r.AnsweredAt)
	return dst
}

func appendText(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendTime(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(dst, 0)
	}
	return binary.AppendVarint(dst, t.UnixNano())
}

// errShortRecord reports a payload that ends inside a field.
var errShortRecord = errors.New("record payload ends inside a field")

// decodeRecord decodes a payload written by appendRecord of any version up to RecordVersion.
func decodeRecord(b []byte) (Record, error) {
	if len(b) == 0 {
		return Record{}, errShortRecord
	}
	switch b[0] {
	case 1:
		return decodeV1(b[1:])
	default:
		return Record{}, fmt.Errorf("unsupported record version %d (this build reads up to %d)", b[0], RecordVersion)
	}
}

func decodeV1(b []byte) (Record, error) {
	d := decoder{b: b}
	var r Record
	r.TxnID = d.text()
	r.Kind = Kind(d.byte())
	r.OriginalTxnID = d.text()
	r.Posting = d.byte()&1 != 0
	for _, p := range [...]*string{&r.Bureau, &r.Station, &r.Channel, &r.Terminal, &r.Merchant, &r.Acquirer,
		&r.MTI, &r.ProcessingCode} {
		*p = d.text()
	}
	r.Amount = d.varint()
	var pan string
	for _, p := range [...]*string{&r.Currency, &r.ResponseCode, &r.AuthCode, &r.RRN, &r.TerminalSTAN,
		&r.AcquirerSTAN, &pan, &r.TerminalLocalTime} {
		*p = d.text()
	}
	r.PAN = MaskPAN(pan) // stored masked already; masking again keeps the type's promise for any input
	r.ReceivedAt = d.time()
	r.AnsweredAt = d.time()
	if d.err != nil {
		return Record{}, d.err
	}
	if len(d.b) != 0 {
		return Record{}, fmt.Errorf("%d bytes after the last field of a version 1 record", len(d.b))
	}
	return r, nil
}

// decoder reads fields from b; the first error sticks and later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.err = errShortRecord
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShortRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) text() string {
	if d.err != nil {
		return ""
	}
	l, n := binary.Uvarint(d.b)
	if n <= 0 || l > uint64(len(d.b)-n) {
		d.err = errShortRecord
		return ""
	}
	s := string(d.b[n : n+int(l)])
	d.b = d.b[n+int(l):]
	return s
}

func (d *decoder) time() time.Time {
	ns := d.varint()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
