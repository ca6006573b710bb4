package hsm

import "fmt"

// KCV returns the leftmost n bytes of a key check value. TDES (aesKey false; 8-, 16- or 24-byte key,
// n 1-8): encrypt a zero block. AES (n 1-16): AES-CMAC over a 16-byte zero block, the ANSI X9.24-1:2017
// method; the older "AES-encrypt a zero block" convention gives a different value for the same key.
// payShield shows 3 bytes (6 hex digits); UnionPay field 62 carries 4.
func KCV(key []byte, aesKey bool, n int) ([]byte, error) {
	if aesKey {
		if n < 1 || n > 16 {
			return nil, fmt.Errorf("hsm: AES check value length %d out of range 1-16", n)
		}
		m, err := NewMACer(MACAESCMAC, key)
		if err != nil {
			return nil, err
		}
		return m.Sum(nil, make([]byte, 16))[:n], nil
	}
	if n < 1 || n > 8 {
		return nil, fmt.Errorf("hsm: TDES check value length %d out of range 1-8", n)
	}
	b, err := NewTDESCipher(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 8)
	b.Encrypt(out, out)
	return out[:n], nil
}
