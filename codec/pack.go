package codec

import (
	"encoding/binary"
	"math/bits"
	"slices"
)

// Pack appends the message, from the MTI on, to dst and returns the extended slice. Fields still referencing
// an unpacked input are copied as they came, byte for byte; fields set by the caller are encoded.
func (m *Message) Pack(dst []byte) ([]byte, error) {
	s := m.spec
	if !m.hasMTI {
		return dst, fieldErr(0, -1, ErrBadValue, "MTI not set")
	}
	// One allocation up front for a dst without room (Pack(nil), say) instead of several while appending: the
	// packed message is at most about its parsed bytes, its set values and the bitmaps and length prefixes.
	if need := len(m.buf) + len(m.arena) + 128; cap(dst)-len(dst) < need {
		dst = slices.Grow(dst, need)
	}
	switch s.def.MTI {
	case MTIBCD:
		dst = appendBCD(dst, m.mti[:], false, 0)
	case MTIEBCDIC:
		dst = appendToEBCDIC(dst, m.mti[:])
	default:
		dst = append(dst, m.mti[:]...)
	}
	words := m.present
	words[0] &^= 1 << 63
	nmaps := 1
	if s.def.Tertiary {
		words[1] &^= 1 << 63
		if words[2] != 0 {
			words[1] |= 1 << 63
		}
	}
	if words[1] != 0 || words[2] != 0 {
		words[0] |= 1 << 63
		nmaps = 2
		if words[2] != 0 {
			nmaps = 3
		}
	}
	for w := 0; w < nmaps; w++ {
		if m.buf != nil && m.present == m.read {
			dst = append(dst, m.buf[m.mapsAt[0]:m.mapsAt[1]]...)
			break
		}
		if s.def.Bitmap == BitmapHex {
			for i := 60; i >= 0; i -= 4 {
				dst = append(dst, hexDigits[words[w]>>uint(i)&0xF])
			}
		} else {
			dst = binary.BigEndian.AppendUint64(dst, words[w])
		}
	}
	for w := 0; w < nmaps; w++ {
		for bs := words[w]; bs != 0; bs &^= 1 << (63 - uint(bits.LeadingZeros64(bs))) {
			n := w*64 + bits.LeadingZeros64(bs) + 1
			if n == 1 || (n == 65 && s.def.Tertiary) {
				continue
			}
			r := m.refs[n]
			if r.src == srcInput {
				dst = append(dst, m.buf[r.start:r.end]...)
				continue
			}
			dst = m.packValue(dst, n, m.arena[r.data:r.end])
		}
	}
	return dst, nil
}

// packValue encodes the logical value v (checked by Set) of field n.
func (m *Message) packValue(dst []byte, n int, v []byte) []byte {
	f := &m.spec.fields[n]
	if f.ltype != Fixed {
		count := len(v)
		if f.counting == CountBytes {
			count = f.wireLen(len(v))
		}
		dst = appendPrefix(dst, f.prefix, f.plen, count)
	}
	switch f.enc {
	case EncBCD, EncBCDLeft:
		return appendBCD(dst, v, f.enc == EncBCDLeft, f.pad)
	case EncEBCDIC:
		return appendToEBCDIC(dst, v)
	case EncHex:
		return appendHex(dst, v)
	}
	return append(dst, v...)
}
