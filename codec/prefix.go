package codec

// readPrefix decodes a length prefix of len(b) bytes. ok is false when the bytes are not digits of the
// prefix's encoding.
func readPrefix(enc PrefixEncoding, b []byte) (v int, ok bool) {
	switch enc {
	case PrefixASCII:
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
	case PrefixEBCDIC:
		for _, c := range b {
			if c < 0xF0 || c > 0xF9 {
				return 0, false
			}
			v = v*10 + int(c-0xF0)
		}
	case PrefixBCD:
		for _, c := range b {
			hi, lo := c>>4, c&0x0F
			if hi > 9 || lo > 9 {
				return 0, false
			}
			v = v*100 + int(hi)*10 + int(lo)
		}
	case PrefixBinary:
		for _, c := range b {
			v = v<<8 | int(c)
		}
	default:
		return 0, false
	}
	return v, true
}

// appendPrefix writes v as a prefix of n bytes. v fits: Compile bounded the maximum and Set checked it.
func appendPrefix(dst []byte, enc PrefixEncoding, n, v int) []byte {
	switch enc {
	case PrefixASCII, PrefixEBCDIC:
		var tmp [4]byte
		for i := n - 1; i >= 0; i-- {
			tmp[i] = byte('0' + v%10)
			v /= 10
		}
		if enc == PrefixEBCDIC {
			for i := 0; i < n; i++ {
				tmp[i] += 0xF0 - '0'
			}
		}
		return append(dst, tmp[:n]...)
	case PrefixBCD:
		if n == 2 {
			dst = append(dst, byte((v/1000)%10<<4|(v/100)%10))
		}
		return append(dst, byte((v/10)%10<<4|v%10))
	default: // binary
		if n == 2 {
			dst = append(dst, byte(v>>8))
		}
		return append(dst, byte(v))
	}
}
