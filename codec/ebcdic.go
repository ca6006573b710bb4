package codec

import "golang.org/x/text/encoding/charmap"

// EBCDIC is code page 037; the tables are built once from x/text so the hot path is a byte lookup.
var ebcdicToASCII, asciiToEBCDIC [256]byte

func init() {
	dec := charmap.CodePage037
	for i := 0; i < 256; i++ {
		r := dec.DecodeByte(byte(i))
		if r < 0x80 {
			ebcdicToASCII[i] = byte(r)
		} else {
			ebcdicToASCII[i] = '?'
		}
	}
	for i := 0; i < 128; i++ {
		if b, ok := dec.EncodeRune(rune(i)); ok {
			asciiToEBCDIC[i] = b
		} else {
			asciiToEBCDIC[i] = 0x6F // '?'
		}
	}
	for i := 128; i < 256; i++ {
		asciiToEBCDIC[i] = 0x6F
	}
}

func appendFromEBCDIC(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, ebcdicToASCII[c])
	}
	return dst
}

func appendToEBCDIC(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, asciiToEBCDIC[c])
	}
	return dst
}
