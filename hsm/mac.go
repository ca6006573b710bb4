package hsm

import (
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"fmt"
	"sync"
)

// MACAlgorithm names a message authentication code algorithm. See docs/calc.md for the exact inputs and
// outputs of each.
type MACAlgorithm string

// The supported MAC algorithms.
const (
	// MACCupECB is the UnionPay POS "ECB" MAC: XOR of the zero-padded 8-byte blocks, hex-expanded to 16
	// characters, E(first 8) XOR last 8, E again; the result is the 8 ASCII hex characters of UnionPay
	// field 64. Key: 8 bytes (single DES) or 16/24 bytes (TDES).
	MACCupECB MACAlgorithm = "cup-ecb"
	// MACX99 is ANSI X9.9: single-DES CBC-MAC, zero padding. Key: 8 bytes. Output: 8 bytes.
	MACX99 MACAlgorithm = "x9.9"
	// MACX919 is ANSI X9.19 (retail MAC): DES CBC-MAC with the left key half, zero padding, then decrypt
	// with the right half and encrypt with the left. Key: 16 bytes. Output: 8 bytes.
	MACX919 MACAlgorithm = "x9.19"
	// MACISO9797Alg1 is ISO 9797-1 MAC algorithm 1 (CBC-MAC) with padding method 1 (zeros) and the whole
	// key as the block cipher. Key: 8, 16 or 24 bytes. Output: 8 bytes.
	MACISO9797Alg1 MACAlgorithm = "iso9797-1-alg1"
	// MACISO9797Alg3 is ISO 9797-1 MAC algorithm 3 with padding method 1; the same computation as X9.19.
	// Key: 16 bytes. Output: 8 bytes.
	MACISO9797Alg3 MACAlgorithm = "iso9797-1-alg3"
	// MACPBOC is the PBOC MAC: ISO 9797-1 padding method 2 (0x80 then zeros, always added) with algorithm 3
	// for a 16-byte key, or algorithm 1 (single DES) for an 8-byte key. Output: 8 bytes.
	MACPBOC MACAlgorithm = "pboc"
	// MACAESCMAC is AES-CMAC (NIST SP 800-38B). Key: 16, 24 or 32 bytes. Output: 16 bytes.
	MACAESCMAC MACAlgorithm = "aes-cmac"
)

// MACAlgorithms lists every supported algorithm, in documentation order.
var MACAlgorithms = []MACAlgorithm{MACCupECB, MACX99, MACX919, MACISO9797Alg1, MACISO9797Alg3, MACPBOC, MACAESCMAC}

// minVerifyLen is the shortest MAC Verify accepts: 4 bytes, the usual truncation of X9.19 and DUKPT MACs.
const minVerifyLen = 4

// MACer computes and verifies one algorithm's MACs under one key. It holds prepared ciphers, so Sum and
// Verify allocate nothing; it is safe for concurrent use.
type MACer struct {
	alg    MACAlgorithm
	cbc    cipher.Block // the CBC cipher: left half for algorithm 3, the whole key otherwise
	right  cipher.Block // right key half for the algorithm 3 output transformation, or nil
	pad2   bool         // padding method 2 (0x80) instead of method 1 (zeros)
	k1, k2 [16]byte     // AES-CMAC subkeys
	size   int
}

// NewMACer prepares alg under key. A key of the wrong length gives ErrKeyLength; an unknown alg gives
// ErrUnsupported.
func NewMACer(alg MACAlgorithm, key []byte) (*MACer, error) {
	m := &MACer{alg: alg, size: 8}
	var err error
	switch alg {
	case MACCupECB, MACISO9797Alg1:
		m.cbc, err = NewTDESCipher(key)
	case MACX99:
		if len(key) != 8 {
			return nil, fmt.Errorf("%w: %s needs an 8-byte key, got %d", ErrKeyLength, alg, len(key))
		}
		m.cbc, err = des.NewCipher(key)
	case MACX919, MACISO9797Alg3:
		err = m.retail(alg, key)
	case MACPBOC:
		m.pad2 = true
		if len(key) == 8 {
			m.cbc, err = des.NewCipher(key)
		} else {
			err = m.retail(alg, key)
		}
	case MACAESCMAC:
		m.size = 16
		if m.cbc, err = NewAESCipher(key); err == nil {
			m.cmacSubkeys()
		}
	default:
		return nil, fmt.Errorf("%w: MAC algorithm %q", ErrUnsupported, alg)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// retail prepares ISO 9797-1 algorithm 3 from a double-length key.
func (m *MACer) retail(alg MACAlgorithm, key []byte) error {
	if len(key) != 16 {
		return fmt.Errorf("%w: %s needs a 16-byte key, got %d", ErrKeyLength, alg, len(key))
	}
	var err error
	if m.cbc, err = des.NewCipher(key[:8]); err != nil {
		return err
	}
	m.right, err = des.NewCipher(key[8:])
	return err
}

// cmacSubkeys derives K1 and K2 of SP 800-38B from L = E(0).
func (m *MACer) cmacSubkeys() {
	var l [16]byte
	m.cbc.Encrypt(m.k1[:], l[:])
	shiftXor(&m.k1, &m.k1)
	shiftXor(&m.k2, &m.k1)
}

// shiftXor sets dst to src doubled in GF(2^128): shifted left one bit, XOR 0x87 when the top bit was set.
func shiftXor(dst, src *[16]byte) {
	carry := src[0] >> 7
	for i := 0; i < 15; i++ {
		dst[i] = src[i]<<1 | src[i+1]>>7
	}
	dst[15] = src[15]<<1 ^ 0x87*carry
}

// Algorithm returns the algorithm the MACer computes.
func (m *MACer) Algorithm() MACAlgorithm { return m.alg }

// Size returns the length of Sum's output: 16 for aes-cmac, 8 otherwise (8 ASCII characters for cup-ecb).
func (m *MACer) Size() int { return m.size }

// Sum appends the MAC of data to dst and returns the result. Callers that send a truncated MAC (X9.19 and
// DUKPT links often use the leftmost 4 bytes) truncate the returned value themselves.
func (m *MACer) Sum(dst, data []byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, m.size)...) // no allocation when dst has room
	w := dst[n : n+m.size]                     // working state; the cipher writes here, not to the stack
	clear(w)
	switch m.alg {
	case MACCupECB:
		m.cupECB(w, data)
	case MACAESCMAC:
		m.cmac(w, data)
	default:
		m.cbcMAC(w, data)
		if m.right != nil {
			m.right.Decrypt(w, w)
			m.cbc.Encrypt(w, w)
		}
	}
	return dst
}

// cbcMAC runs CBC-MAC (IV zero) over data padded with method 1 or 2 into w (8 bytes, zeroed).
func (m *MACer) cbcMAC(w, data []byte) {
	const bs = 8
	full := len(data) / bs * bs
	for i := 0; i < full; i += bs {
		xorBytes(w, data[i:i+bs])
		m.cbc.Encrypt(w, w)
	}
	rem := len(data) - full
	if rem == 0 && len(data) > 0 && !m.pad2 {
		return // method 1 adds nothing to whole blocks
	}
	var last [bs]byte
	copy(last[:], data[full:])
	if m.pad2 {
		last[rem] = 0x80
	}
	xorBytes(w, last[:])
	m.cbc.Encrypt(w, w)
}

// cupECB computes the UnionPay POS MAC into w (8 bytes, zeroed) as 8 ASCII hex characters.
func (m *MACer) cupECB(w, data []byte) {
	var r [8]byte
	full := len(data) / 8 * 8
	for i := 0; i < full; i += 8 {
		xorBytes(r[:], data[i:i+8])
	}
	xorBytes(r[:len(data)-full], data[full:]) // zero padding leaves the rest of r as is
	var hex [16]byte
	hexUpper(hex[:], r[:])
	copy(w, hex[:8])
	m.cbc.Encrypt(w, w)
	xorBytes(w, hex[8:])
	m.cbc.Encrypt(w, w)
	var out [8]byte
	hexUpper(out[:], w[:4])
	copy(w, out[:])
}

// cmac computes AES-CMAC into w (16 bytes, zeroed).
func (m *MACer) cmac(w, data []byte) {
	const bs = 16
	n := (len(data) + bs - 1) / bs
	complete := n > 0 && len(data)%bs == 0
	if n == 0 {
		n = 1
	}
	for i := 0; i < (n-1)*bs; i += bs {
		xorBytes(w, data[i:i+bs])
		m.cbc.Encrypt(w, w)
	}
	var last [bs]byte
	tail := data[(n-1)*bs:]
	copy(last[:], tail)
	if complete {
		xorBytes(last[:], m.k1[:])
	} else {
		last[len(tail)] = 0x80
		xorBytes(last[:], m.k2[:])
	}
	xorBytes(w, last[:])
	m.cbc.Encrypt(w, w)
}

var verifyScratch = sync.Pool{New: func() any { return new([16]byte) }}

// Verify reports whether mac equals the leftmost len(mac) bytes of the MAC of data, comparing in constant
// time. mac must be 4 to Size() bytes long; other lengths never verify.
func (m *MACer) Verify(data, mac []byte) bool {
	if len(mac) < minVerifyLen || len(mac) > m.size {
		return false
	}
	s := verifyScratch.Get().(*[16]byte)
	sum := m.Sum(s[:0], data)
	ok := subtle.ConstantTimeCompare(sum[:len(mac)], mac) == 1
	verifyScratch.Put(s)
	return ok
}

// ComputeMAC returns the MAC of data under key with alg (see MACer.Sum for the output of each algorithm).
// For many messages under one key, keep a MACer instead.
func ComputeMAC(alg MACAlgorithm, key, data []byte) ([]byte, error) {
	m, err := NewMACer(alg, key)
	if err != nil {
		return nil, err
	}
	return m.Sum(nil, data), nil
}

const hexDigits = "0123456789ABCDEF"

// hexUpper writes the uppercase hex form of src into dst (2*len(src) bytes).
func hexUpper(dst, src []byte) {
	for i, b := range src {
		dst[2*i] = hexDigits[b>>4]
		dst[2*i+1] = hexDigits[b&0x0F]
	}
}
