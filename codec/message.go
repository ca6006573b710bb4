package codec

import "math/bits"

// Where a field's value lives.
const (
	srcNone  uint8 = iota
	srcInput       // wire bytes in the unpacked input buffer
	srcArena       // logical value set by the caller, in the message's arena
)

// ref locates one field. For srcInput, start is the offset of the length prefix (or of the data for a fixed
// field) and data..end the encoded data; for srcArena, data..end is the logical value in the arena.
type ref struct {
	start, data, end uint32
	n                uint16 // logical length
	src              uint8
}

// Message is one ISO 8583 message. Unpack makes it reference the input buffer without copying or allocating
// per field; Set stores caller values in an arena that Reset keeps for reuse. A Message is not safe for
// concurrent use; reuse one per goroutine (or take one from a pool) to avoid allocations.
type Message struct {
	spec    *Spec
	buf     []byte
	mti     [4]byte
	hasMTI  bool
	present [3]uint64 // bit (63 - (n-1)%64) of word (n-1)/64 is field n
	read    [3]uint64 // the bitmaps as unpacked, and where they were in buf, so an unchanged message
	mapsAt  [2]uint32 // packs them back byte for byte (hex bitmaps may come in lower case)
	refs    [MaxField + 1]ref
	arena   []byte // values set by the caller
	scratch []byte // decoded logical values handed out by Value

	tpdu      [5]byte
	hasTPDU   bool
	header    [64]byte
	headerLen int
}

// NewMessage returns an empty message of the spec.
func NewMessage(s *Spec) *Message { return &Message{spec: s} }

// Spec returns the message's spec.
func (m *Message) Spec() *Spec { return m.spec }

// Reset empties the message for reuse with the same spec, keeping its buffers.
func (m *Message) Reset() {
	for w := range m.present {
		for bs := m.present[w]; bs != 0; bs &^= 1 << (63 - uint(bits.LeadingZeros64(bs))) {
			m.refs[w*64+bits.LeadingZeros64(bs)+1] = ref{}
		}
		m.present[w] = 0
	}
	m.buf = nil
	m.read = [3]uint64{}
	m.hasMTI = false
	m.arena = m.arena[:0]
	m.scratch = m.scratch[:0]
	m.hasTPDU = false
	m.headerLen = 0
}

// MTI returns the message type indicator, or "" if it is not set.
func (m *Message) MTI() string {
	if !m.hasMTI {
		return ""
	}
	return string(m.mti[:])
}

// MTIBytes returns the four MTI digits without allocating (nil if not set).
func (m *Message) MTIBytes() []byte {
	if !m.hasMTI {
		return nil
	}
	return m.mti[:]
}

// SetMTI sets the message type indicator: four decimal digits.
func (m *Message) SetMTI(mti string) error {
	if len(mti) != 4 || !allDigits([]byte(mti)) {
		return fieldErr(0, -1, ErrBadValue, "MTI must be 4 digits")
	}
	copy(m.mti[:], mti)
	m.hasMTI = true
	return nil
}

// Has reports whether field n is present.
func (m *Message) Has(n int) bool {
	return n >= 1 && n <= MaxField && m.present[(n-1)/64]&(1<<(63-uint(n-1)%64)) != 0
}

// Fields returns the numbers of the present fields in ascending order.
func (m *Message) Fields() []int {
	n := 0
	for _, w := range m.present {
		n += bits.OnesCount64(w)
	}
	if n == 0 {
		return nil
	}
	out := make([]int, 0, n)
	for w := range m.present {
		for bs := m.present[w]; bs != 0; bs &^= 1 << (63 - uint(bits.LeadingZeros64(bs))) {
			out = append(out, w*64+bits.LeadingZeros64(bs)+1)
		}
	}
	return out
}

// Value returns the logical value of field n: digits for n and z fields ('=' for nibble D), the bytes of a
// text field in its character set (ASCII for EBCDIC fields), raw bytes for binary fields. It does not
// allocate once the message's buffers have grown; the slice is valid until the next Reset or Unpack.
func (m *Message) Value(n int) ([]byte, bool) {
	if !m.Has(n) {
		return nil, false
	}
	r := m.refs[n]
	if r.src == srcArena {
		return m.arena[r.data:r.end], true
	}
	f := &m.spec.fields[n]
	raw := m.buf[r.data:r.end]
	start := len(m.scratch)
	switch f.enc {
	case EncASCII, EncBinary:
		return raw, true
	case EncEBCDIC:
		m.scratch = appendFromEBCDIC(m.scratch, raw)
	case EncBCD, EncBCDLeft:
		m.scratch = appendUnBCD(m.scratch, raw, int(r.n), f.enc == EncBCDLeft)
	case EncHex:
		m.scratch = appendUnhex(m.scratch, raw)
	}
	return m.scratch[start:], true
}

// String returns the logical value of field n as a string ("" if absent).
func (m *Message) String(n int) string {
	v, _ := m.Value(n)
	return string(v)
}

// Raw returns the wire bytes of field n as unpacked, without its length prefix (nil for a value set by the
// caller).
func (m *Message) Raw(n int) []byte {
	if !m.Has(n) || m.refs[n].src != srcInput {
		return nil
	}
	r := m.refs[n]
	return m.buf[r.data:r.end]
}

// Amount returns a numeric field as an integer (amounts are in minor units), without allocating.
func (m *Message) Amount(n int) (int64, error) {
	v, ok := m.Value(n)
	if !ok {
		return 0, fieldErr(n, -1, ErrBadValue, "absent")
	}
	if len(v) > 18 || !allDigits(v) {
		return 0, fieldErr(n, -1, ErrBadValue, "not an amount")
	}
	var a int64
	for _, c := range v {
		a = a*10 + int64(c-'0')
	}
	return a, nil
}

// Subfield returns fixed-position subfield id of field n as a view of its logical value; a subfield past the
// end of a shorter value is absent, one that is cut short is returned as far as it goes.
func (m *Message) Subfield(n, id int) ([]byte, bool) {
	v, ok := m.Value(n)
	if !ok {
		return nil, false
	}
	f := &m.spec.fields[n]
	for i, sf := range f.meta.def.Subfields {
		if sf.ID != id {
			continue
		}
		start := f.meta.subStart[i]
		if start >= len(v) {
			return nil, false
		}
		end := len(v)
		if sf.Length > 0 && start+sf.Length < end {
			end = start + sf.Length
		}
		return v[start:end], true
	}
	return nil, false
}

// Set stores the logical value v in field n (see Value for the forms). Fixed numeric fields shorter than their
// length are left-padded with zeros, fixed text fields right-padded with spaces.
func (m *Message) Set(n int, v []byte) error {
	if n < 2 || n > MaxField || !m.spec.fields[n].defined {
		return fieldErr(n, -1, ErrUnknownField, "not defined in spec %s", m.spec.def.Name)
	}
	f := &m.spec.fields[n]
	if len(v) > f.size {
		return fieldErr(n, -1, ErrTooLong, "length %d exceeds maximum %d", len(v), f.size)
	}
	if msg := checkChars(f, v); msg != "" {
		return fieldErr(n, -1, ErrBadValue, "%s", msg)
	}
	start := len(m.arena)
	if f.ltype == Fixed && len(v) < f.size {
		switch f.kind {
		case KindNumeric:
			for i := len(v); i < f.size; i++ {
				m.arena = append(m.arena, '0')
			}
			m.arena = append(m.arena, v...)
		case KindText:
			m.arena = append(m.arena, v...)
			for i := len(v); i < f.size; i++ {
				m.arena = append(m.arena, ' ')
			}
		default:
			return fieldErr(n, -1, ErrBadValue, "length %d, want %d", len(v), f.size)
		}
	} else {
		m.arena = append(m.arena, v...)
	}
	m.refs[n] = ref{data: uint32(start), end: uint32(len(m.arena)), n: uint16(len(m.arena) - start), src: srcArena}
	m.present[(n-1)/64] |= 1 << (63 - uint(n-1)%64)
	return nil
}

// SetString is Set with a string value.
func (m *Message) SetString(n int, v string) error {
	start := len(m.scratch)
	m.scratch = append(m.scratch, v...)
	err := m.Set(n, m.scratch[start:])
	m.scratch = m.scratch[:start]
	return err
}

// SetAmount stores a non-negative amount in minor units in numeric field n.
func (m *Message) SetAmount(n int, amount int64) error {
	if amount < 0 {
		return fieldErr(n, -1, ErrBadValue, "negative amount")
	}
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + amount%10)
		amount /= 10
		if amount == 0 {
			break
		}
	}
	return m.Set(n, tmp[i:])
}

// Unset removes field n.
func (m *Message) Unset(n int) {
	if m.Has(n) {
		m.refs[n] = ref{}
		m.present[(n-1)/64] &^= 1 << (63 - uint(n-1)%64)
	}
}

// CopyField copies field n from another message with the same or another spec, re-encoding when the specs
// differ.
func (m *Message) CopyField(n int, from *Message) error {
	v, ok := from.Value(n)
	if !ok {
		m.Unset(n)
		return nil
	}
	return m.Set(n, v)
}

// TPDU returns the 5-byte TPDU read from or to be written to the frame (nil if none).
func (m *Message) TPDU() []byte {
	if !m.hasTPDU {
		return nil
	}
	return m.tpdu[:]
}

// SetTPDU sets the TPDU (5 bytes) written by AppendFrame.
func (m *Message) SetTPDU(t []byte) error {
	if len(t) != len(m.tpdu) {
		return fieldErr(-2, -1, ErrBadValue, "TPDU must be 5 bytes, got %d", len(t))
	}
	copy(m.tpdu[:], t)
	m.hasTPDU = true
	return nil
}

// SwapTPDU exchanges the TPDU's destination and source addresses, as a reply to the frame does.
func (m *Message) SwapTPDU() {
	t := &m.tpdu
	t[1], t[2], t[3], t[4] = t[3], t[4], t[1], t[2]
}

// Header returns the fixed message header (UnionPay: 6 bytes) as a writable view, or nil.
func (m *Message) Header() []byte {
	if m.headerLen == 0 {
		return nil
	}
	return m.header[:m.headerLen]
}

// SetHeader sets the fixed message header written by AppendFrame.
func (m *Message) SetHeader(h []byte) error {
	if len(h) > len(m.header) {
		return fieldErr(-2, -1, ErrTooLong, "header of %d bytes exceeds %d", len(h), len(m.header))
	}
	m.headerLen = copy(m.header[:], h)
	return nil
}

// SetCUPProcessingRequirement sets digit 6 (处理要求) of a UnionPay POS header: 0 none, 1 download
// parameters, 2 upload status, 3 sign on again, 4 update public keys, 5 download IC parameters, 6 TMS.
func (m *Message) SetCUPProcessingRequirement(d byte) error {
	if m.headerLen < 3 || d > 9 {
		return fieldErr(-2, -1, ErrBadValue, "no UnionPay header or digit out of range")
	}
	m.header[2] = m.header[2]&0xF0 | d
	return nil
}

// CUPProcessingRequirement returns digit 6 of a UnionPay POS header.
func (m *Message) CUPProcessingRequirement() (byte, bool) {
	if m.headerLen < 3 {
		return 0, false
	}
	return m.header[2] & 0x0F, true
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// checkChars checks a logical value against its field's kind; it returns what is wrong, without the value.
func checkChars(f *field, v []byte) string {
	switch f.kind {
	case KindNumeric:
		if !allDigits(v) {
			return "numeric field holds a non-digit"
		}
	case KindTrack:
		if !trackChars(v, nil) {
			return "track field holds a character other than 0-9, '=' or A-F"
		}
	case KindText:
		if f.enc == EncEBCDIC {
			for _, c := range v {
				if c >= 0x80 {
					return "EBCDIC text field holds a non-ASCII byte"
				}
			}
		}
	}
	return ""
}

// trackChars reports whether every character of a track value is a digit, '=' or A-F, after mapping each
// byte through table when one is given (EBCDIC).
func trackChars(v []byte, table *[256]byte) bool {
	for _, c := range v {
		if table != nil {
			c = table[c]
		}
		if !(c >= '0' && c <= '9') && c != '=' && !(c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// BytesBefore returns the unpacked input from the MTI up to where field n starts: the MAC block of a message
// whose MAC is field n (UnionPay POS: 64; bank links: 64 or 128). ok is false when field n was not unpacked
// from the input (absent, or set by the caller).
func (m *Message) BytesBefore(n int) ([]byte, bool) {
	if !m.Has(n) || m.refs[n].src != srcInput {
		return nil, false
	}
	return m.buf[:m.refs[n].start], true
}
