package codec

import "fmt"

// BER-TLV as EMV uses it in field 55: tags of one or more bytes (low five bits 11111 announce more bytes; bit 8
// of each further byte announces another), lengths in short form (< 0x80) or long form (0x81, 0x82: one or
// two length bytes follow).

// TLV is one element of BER-TLV data. Value references the parsed input.
type TLV struct {
	Tag   uint32 // the tag bytes as a big-endian number, e.g. 0x9F26
	Value []byte
}

// TLVError is malformed BER-TLV data at Offset.
type TLVError struct {
	Offset int
	Detail string
}

// Error describes the problem.
func (e *TLVError) Error() string { return fmt.Sprintf("tlv: %s at offset %d", e.Detail, e.Offset) }

// NextTLV reads the element at the start of b and returns it with the bytes that follow. Padding bytes 0x00
// and 0xFF between elements are skipped. off is b's offset in the whole data, for errors.
func NextTLV(b []byte, off int) (TLV, []byte, error) {
	i := 0
	for i < len(b) && (b[i] == 0x00 || b[i] == 0xFF) {
		i++
	}
	if i == len(b) {
		return TLV{}, nil, nil
	}
	start := i
	tag := uint32(b[i])
	i++
	if tag&0x1F == 0x1F {
		for {
			if i >= len(b) {
				return TLV{}, nil, &TLVError{off + start, "tag cut short"}
			}
			if i-start >= 4 {
				return TLV{}, nil, &TLVError{off + start, "tag longer than 4 bytes"}
			}
			tag = tag<<8 | uint32(b[i])
			i++
			if b[i-1]&0x80 == 0 {
				break
			}
		}
	}
	if i >= len(b) {
		return TLV{}, nil, &TLVError{off + i, "length missing"}
	}
	l := int(b[i])
	i++
	if l&0x80 != 0 {
		nb := l & 0x7F
		if nb == 0 || nb > 2 {
			return TLV{}, nil, &TLVError{off + i - 1, "unsupported length form"}
		}
		if len(b)-i < nb {
			return TLV{}, nil, &TLVError{off + i, "length cut short"}
		}
		l = 0
		for ; nb > 0; nb-- {
			l = l<<8 | int(b[i])
			i++
		}
	}
	if len(b)-i < l {
		return TLV{}, nil, &TLVError{off + i, fmt.Sprintf("value of %d bytes, %d left", l, len(b)-i)}
	}
	return TLV{Tag: tag, Value: b[i : i+l]}, b[i+l:], nil
}

// ParseTLV calls fn for each top-level element of b, in order, stopping at the first error.
func ParseTLV(b []byte, fn func(TLV) error) error {
	off := 0
	for len(b) > 0 {
		t, rest, err := NextTLV(b, off)
		if err != nil {
			return err
		}
		if t.Tag == 0 && rest == nil {
			return nil
		}
		if err := fn(t); err != nil {
			return err
		}
		off += len(b) - len(rest)
		b = rest
	}
	return nil
}

// FindTLV returns the value of the first top-level element with the tag.
func FindTLV(b []byte, tag uint32) ([]byte, bool) {
	var found []byte
	ok := false
	_ = ParseTLV(b, func(t TLV) error {
		if t.Tag == tag {
			found, ok = t.Value, true
			return errStop
		}
		return nil
	})
	return found, ok
}

var errStop = fmt.Errorf("stop")

// AppendTLV appends one element with the given tag and value.
func AppendTLV(dst []byte, tag uint32, value []byte) []byte {
	switch {
	case tag > 0xFFFFFF:
		dst = append(dst, byte(tag>>24), byte(tag>>16), byte(tag>>8), byte(tag))
	case tag > 0xFFFF:
		dst = append(dst, byte(tag>>16), byte(tag>>8), byte(tag))
	case tag > 0xFF:
		dst = append(dst, byte(tag>>8), byte(tag))
	default:
		dst = append(dst, byte(tag))
	}
	switch l := len(value); {
	case l < 0x80:
		dst = append(dst, byte(l))
	case l <= 0xFF:
		dst = append(dst, 0x81, byte(l))
	default:
		dst = append(dst, 0x82, byte(l>>8), byte(l))
	}
	return append(dst, value...)
}
