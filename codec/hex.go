package codec

const hexDigits = "0123456789ABCDEF"

// hexValue maps an ASCII hex digit to its value and anything else to 0xFF, so decoding is a table lookup.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	for i := 0; i < 10; i++ {
		t['0'+i] = byte(i)
	}
	for i := 0; i < 6; i++ {
		t['A'+i], t['a'+i] = byte(10+i), byte(10+i)
	}
	return t
}()

// appendHex writes b as uppercase hex.
func appendHex(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0x0F])
	}
	return dst
}

// appendUnhex decodes the hex characters in h (even length, checked by the caller with validHex).
func appendUnhex(dst, h []byte) []byte {
	for i := 0; i+1 < len(h); i += 2 {
		dst = append(dst, hexValue[h[i]]<<4|hexValue[h[i+1]]&0x0F)
	}
	return dst
}

// validHex reports whether h is an even number of hex digits.
func validHex(h []byte) bool {
	if len(h)%2 != 0 {
		return false
	}
	var bad byte
	for _, c := range h {
		bad |= hexValue[c] & 0xF0
	}
	return bad == 0
}

func isHex(c byte) bool { return hexValue[c] != 0xFF }
