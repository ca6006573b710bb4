package codec

// Packed BCD: two decimal digits a byte, high nibble first. Right-aligned values of odd length start with a
// pad nibble; left-aligned ones end with it. Track data ('z') uses nibble D for '=' and, once encrypted, any
// hex digit.

// nibbleChar maps a nibble to the character it stands for in a track field.
const nibbleChar = "0123456789ABC=EF"

// appendBCD packs the logical characters in v into dst. left selects left alignment; pad is the pad nibble.
// v has already been checked by checkChars, so every character maps to a nibble.
func appendBCD(dst, v []byte, left bool, pad byte) []byte {
	i := 0
	if len(v)%2 == 1 && !left {
		dst = append(dst, pad<<4|charNibble(v[0]))
		i = 1
	}
	for ; i+1 < len(v); i += 2 {
		dst = append(dst, charNibble(v[i])<<4|charNibble(v[i+1]))
	}
	if i < len(v) {
		dst = append(dst, charNibble(v[i])<<4|pad)
	}
	return dst
}

// appendUnBCD unpacks n logical characters from the packed bytes b into dst.
func appendUnBCD(dst, b []byte, n int, left bool) []byte {
	skip := 0
	if n%2 == 1 && !left {
		skip = 1
	}
	for i := skip; i < skip+n; i++ {
		c := b[i/2]
		if i%2 == 0 {
			c >>= 4
		}
		dst = append(dst, nibbleChar[c&0x0F])
	}
	return dst
}

// bcdPair marks the bytes whose two nibbles are both decimal digits.
var bcdPair = func() (t [256]bool) {
	for i := range t {
		t[i] = i>>4 <= 9 && i&0x0F <= 9
	}
	return t
}()

// checkBCD checks packed bytes b holding n logical units: decimal nibbles for numeric fields, any nibble for
// track fields, and a pad nibble of 0 or F. It reports whether they are good.
func checkBCD(b []byte, n int, left, track bool) bool {
	if len(b) == 0 {
		return true
	}
	if n%2 == 1 {
		var pad, digit byte
		if left {
			last := b[len(b)-1]
			pad, digit = last&0x0F, last>>4
			b = b[:len(b)-1]
		} else {
			pad, digit = b[0]>>4, b[0]&0x0F
			b = b[1:]
		}
		if (pad != 0 && pad != 0xF) || (digit > 9 && !track) {
			return false
		}
	}
	if track {
		return true
	}
	for _, c := range b {
		if !bcdPair[c] {
			return false
		}
	}
	return true
}

// charNibble maps a digit, hex letter or '=' to its nibble.
func charNibble(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c == '=':
		return 0xD
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return 0
}

// PackTrack packs track characters (digits, '=' and A-F) as left-aligned BCD with a 0 pad nibble, as
// UnionPay terminals send fields 35 and 36; it checks nothing (see Message.Set for checked values).
func PackTrack(dst, track []byte) []byte { return appendBCD(dst, track, true, 0) }

// UnpackTrack is the inverse of PackTrack for n characters.
func UnpackTrack(dst, packed []byte, n int) []byte {
	if (n+1)/2 > len(packed) {
		n = 2 * len(packed)
	}
	return appendUnBCD(dst, packed, n, true)
}
