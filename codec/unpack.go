package codec

import (
	"encoding/binary"
	"math/bits"
)

// Unpack decodes b, from the MTI on, into m, which then references b: b must not change while m is in use.
// On error m keeps what was decoded before the bad element (the MTI and earlier fields such as 11, 41 and 42),
// so the caller can still answer with response code 30. The error is a *FieldError.
func (m *Message) Unpack(b []byte) error {
	m.Reset()
	m.buf = b
	s := m.spec
	off := 0
	switch s.def.MTI {
	case MTIBCD:
		if len(b) < 2 {
			return fieldErr(0, 0, ErrShort, "needs 2 bytes, %d left", len(b))
		}
		if !checkBCD(b[:2], 4, false, false) {
			return fieldErr(0, 0, ErrBadValue, "not BCD digits")
		}
		appendUnBCD(m.mti[:0], b[:2], 4, false)
		off = 2
	default:
		if len(b) < 4 {
			return fieldErr(0, 0, ErrShort, "needs 4 bytes, %d left", len(b))
		}
		copy(m.mti[:], b[:4])
		if s.def.MTI == MTIEBCDIC {
			appendFromEBCDIC(m.mti[:0], b[:4])
		}
		if !allDigits(m.mti[:]) {
			return fieldErr(0, 0, ErrBadValue, "not 4 digits")
		}
		off = 4
	}
	m.hasMTI = true

	var words [3]uint64
	var err error
	mapsStart := off
	if words[0], off, err = m.readBitmap(b, off); err != nil {
		return err
	}
	nmaps := 1
	if words[0]&(1<<63) != 0 {
		if words[1], off, err = m.readBitmap(b, off); err != nil {
			return err
		}
		nmaps = 2
		if s.def.Tertiary && words[1]&(1<<63) != 0 {
			if words[2], off, err = m.readBitmap(b, off); err != nil {
				return err
			}
			nmaps = 3
		}
	}
	m.read, m.mapsAt = words, [2]uint32{uint32(mapsStart), uint32(off)}
	m.read[0] &^= 1 << 63
	if s.def.Tertiary {
		m.read[1] &^= 1 << 63
	}
	for w := 0; w < nmaps; w++ {
		for bs := words[w]; bs != 0; bs &^= 1 << (63 - uint(bits.LeadingZeros64(bs))) {
			n := w*64 + bits.LeadingZeros64(bs) + 1
			if n == 1 || (n == 65 && s.def.Tertiary) {
				continue
			}
			if off, err = m.unpackField(n, b, off); err != nil {
				return err
			}
		}
	}
	if off != len(b) {
		return fieldErr(-1, off, ErrTrailing, "%d bytes after the last field of the bitmap", len(b)-off)
	}
	return nil
}

// readBitmap reads one 64-bit bitmap at off.
func (m *Message) readBitmap(b []byte, off int) (uint64, int, error) {
	if m.spec.def.Bitmap == BitmapHex {
		if len(b)-off < 16 {
			return 0, off, fieldErr(-1, off, ErrShort, "needs 16 hex characters, %d bytes left", len(b)-off)
		}
		var v uint64
		for _, c := range b[off : off+16] {
			if !isHex(c) {
				return 0, off, fieldErr(-1, off, ErrBadValue, "not hex")
			}
			v = v<<4 | uint64(charNibble(c))
		}
		return v, off + 16, nil
	}
	if len(b)-off < 8 {
		return 0, off, fieldErr(-1, off, ErrShort, "needs 8 bytes, %d left", len(b)-off)
	}
	return binary.BigEndian.Uint64(b[off:]), off + 8, nil
}

// unpackField decodes field n at off and returns the offset after it.
func (m *Message) unpackField(n int, b []byte, off int) (int, error) {
	f := &m.spec.fields[n]
	if !f.defined {
		return off, fieldErr(n, off, ErrUnknownField, "present in the bitmap but not defined in spec %s", m.spec.def.Name)
	}
	start := off
	l, w := f.size, f.fixedWire
	if f.ltype != Fixed {
		if len(b)-off < f.plen {
			return start, fieldErr(n, start, ErrShort, "length prefix needs %d bytes, %d left", f.plen, len(b)-off)
		}
		v, ok := readPrefix(f.prefix, b[off:off+f.plen])
		if !ok {
			return start, fieldErr(n, start, ErrBadValue, "length prefix is not %s digits", prefixName(f.prefix))
		}
		off += f.plen
		if f.counting == CountBytes {
			w = v
			if f.enc == EncHex && w%2 != 0 {
				return start, fieldErr(n, start, ErrBadValue, "odd hex length %d", w)
			}
			l = f.unitsOfWire(w)
		} else {
			l = v
		}
		if l > f.size {
			return start, fieldErr(n, start, ErrTooLong, "length %d exceeds maximum %d", l, f.size)
		}
		if f.counting != CountBytes {
			w = f.wireLen(l)
		}
	}
	if len(b)-off < w {
		return start, fieldErr(n, start, ErrShort, "length %d needs %d bytes, %d left", l, w, len(b)-off)
	}
	data := b[off : off+w]
	if msg := checkWire(f, data, l); msg != "" {
		return start, fieldErr(n, start, ErrBadValue, "%s", msg)
	}
	m.refs[n] = ref{start: uint32(start), data: uint32(off), end: uint32(off + w), n: uint16(l), src: srcInput}
	m.present[(n-1)/64] |= 1 << (63 - uint(n-1)%64)
	return off + w, nil
}

// unitsOfWire is the number of logical units in w wire bytes, for fields whose prefix counts bytes.
func (f *field) unitsOfWire(w int) int {
	switch f.enc {
	case EncBCD, EncBCDLeft:
		return 2 * w
	case EncHex:
		return w / 2
	}
	return w
}

// checkWire checks the encoded bytes of a field against its kind.
func checkWire(f *field, data []byte, l int) string {
	switch f.enc {
	case EncBCD, EncBCDLeft:
		if !checkBCD(data, l, f.enc == EncBCDLeft, f.kind == KindTrack) {
			if f.kind == KindTrack {
				return "bad pad nibble"
			}
			return "not BCD digits"
		}
	case EncASCII:
		if f.kind == KindNumeric && !allDigits(data) {
			return "numeric field holds a non-digit"
		}
		if f.kind == KindTrack && !trackChars(data, nil) {
			return "track field holds a character other than 0-9, '=' or A-F"
		}
	case EncEBCDIC:
		switch f.kind {
		case KindNumeric:
			for _, c := range data {
				if c < 0xF0 || c > 0xF9 {
					return "numeric field holds a non-digit"
				}
			}
		case KindTrack:
			if !trackChars(data, &ebcdicToASCII) {
				return "track field holds a character other than 0-9, '=' or A-F"
			}
		case KindText:
			for _, c := range data {
				if ebcdicToASCII[c] == '?' && c != 0x6F {
					return "byte with no ASCII equivalent in EBCDIC text"
				}
			}
		}
	case EncHex:
		if !validHex(data) {
			return "not hex"
		}
	}
	return ""
}

func prefixName(p PrefixEncoding) string {
	switch p {
	case PrefixASCII:
		return "ASCII"
	case PrefixBCD:
		return "BCD"
	case PrefixEBCDIC:
		return "EBCDIC"
	}
	return "binary"
}
