package codec

const hexDigits = "0123456789ABCDEF"

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
		dst = append(dst, charNibble(h[i])<<4|charNibble(h[i+1]))
	}
	return dst
}

// validHex reports whether h is an even number of hex digits.
func validHex(h []byte) bool {
	if len(h)%2 != 0 {
		return false
	}
	for _, c := range h {
		if !isHex(c) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f')
}
