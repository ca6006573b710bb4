package hsm

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"errors"
	"fmt"
)

// Errors of the block-cipher layer. Callers branch on them with errors.Is; none of them carries key material.
var (
	// ErrKeyLength reports a key whose length the requested algorithm does not accept.
	ErrKeyLength = errors.New("hsm: invalid key length")
	// ErrParity reports a DES key byte with even parity (see ParityError for the byte position).
	ErrParity = errors.New("hsm: key parity error")
	// ErrDataLength reports input that is not a whole number of cipher blocks, or a wrong IV or output size.
	ErrDataLength = errors.New("hsm: data length is not a multiple of the block size")
)

// ParityError says which byte of a DES key has even parity. It matches ErrParity with errors.Is.
type ParityError struct {
	Index int // position of the first byte with even parity
}

// Error describes the problem.
func (e *ParityError) Error() string { return fmt.Sprintf("hsm: key parity error at byte %d", e.Index) }

// Is makes errors.Is(err, ErrParity) true for a *ParityError.
func (e *ParityError) Is(target error) bool { return target == ErrParity }

// NewCipher returns the TDES block cipher for a payment key; it is NewTDESCipher, the default for keys
// whose algorithm is not stated. Use NewAESCipher for AES keys.
func NewCipher(key []byte) (cipher.Block, error) { return NewTDESCipher(key) }

// NewTDESCipher returns a DES-family block cipher for an 8-, 16- or 24-byte key:
// 8 bytes is single DES (identical to TDES with K1=K2=K3, at a third of the cost), 16 bytes is double-length
// TDES (K1,K2,K1) and 24 bytes is triple-length TDES (K1,K2,K3). Parity is not checked here (see CheckParity).
func NewTDESCipher(key []byte) (cipher.Block, error) {
	switch len(key) {
	case 8:
		return des.NewCipher(key)
	case 16:
		var k [24]byte
		copy(k[:16], key)
		copy(k[16:], key[:8])
		b, err := des.NewTripleDESCipher(k[:])
		clear(k[:])
		return b, err
	case 24:
		return des.NewTripleDESCipher(key)
	}
	return nil, fmt.Errorf("%w: TDES key of %d bytes (want 8, 16 or 24)", ErrKeyLength, len(key))
}

// NewAESCipher returns the AES block cipher for a 16-, 24- or 32-byte key.
func NewAESCipher(key []byte) (cipher.Block, error) {
	switch len(key) {
	case 16, 24, 32:
		return aes.NewCipher(key)
	}
	return nil, fmt.Errorf("%w: AES key of %d bytes (want 16, 24 or 32)", ErrKeyLength, len(key))
}

// CheckParity returns a *ParityError for the first byte of a DES key that does not have odd parity
// (payShield reports such keys with error 10/11), or nil when every byte has odd parity.
func CheckParity(key []byte) error {
	for i, b := range key {
		if !oddParity(b) {
			return &ParityError{Index: i}
		}
	}
	return nil
}

// FixParity sets the low bit of every byte of a DES key so that each byte has odd parity.
func FixParity(key []byte) {
	for i, b := range key {
		if !oddParity(b) {
			key[i] = b ^ 1
		}
	}
}

func oddParity(b byte) bool {
	b ^= b >> 4
	b ^= b >> 2
	b ^= b >> 1
	return b&1 == 1
}

// EncryptECB encrypts src into dst block by block (ECB). len(src) must be a multiple of the block size and
// dst at least as long; dst and src may be the same slice.
func EncryptECB(b cipher.Block, dst, src []byte) error {
	return ecb(b.Encrypt, b.BlockSize(), dst, src)
}

// DecryptECB decrypts src into dst block by block (ECB), with the same rules as EncryptECB.
func DecryptECB(b cipher.Block, dst, src []byte) error {
	return ecb(b.Decrypt, b.BlockSize(), dst, src)
}

func ecb(f func(dst, src []byte), bs int, dst, src []byte) error {
	if len(src)%bs != 0 || len(dst) < len(src) {
		return ErrDataLength
	}
	for i := 0; i < len(src); i += bs {
		f(dst[i:i+bs], src[i:i+bs])
	}
	return nil
}

// EncryptCBC encrypts src into dst in CBC mode from iv (one block, not modified). len(src) must be a multiple
// of the block size and dst at least as long; dst and src may be the same slice. No padding is added.
func EncryptCBC(b cipher.Block, iv, dst, src []byte) error {
	bs := b.BlockSize()
	if len(iv) != bs || len(src)%bs != 0 || len(dst) < len(src) {
		return ErrDataLength
	}
	var chain [aes.BlockSize]byte
	copy(chain[:], iv)
	for i := 0; i < len(src); i += bs {
		xorBytes(chain[:bs], src[i:i+bs])
		b.Encrypt(chain[:bs], chain[:bs])
		copy(dst[i:i+bs], chain[:bs])
	}
	return nil
}

// DecryptCBC decrypts src into dst in CBC mode from iv, with the same rules as EncryptCBC.
func DecryptCBC(b cipher.Block, iv, dst, src []byte) error {
	bs := b.BlockSize()
	if len(iv) != bs || len(src)%bs != 0 || len(dst) < len(src) {
		return ErrDataLength
	}
	var chain, next [aes.BlockSize]byte
	copy(chain[:], iv)
	for i := 0; i < len(src); i += bs {
		copy(next[:bs], src[i:i+bs]) // kept before dst may overwrite src
		b.Decrypt(dst[i:i+bs], src[i:i+bs])
		xorBytes(dst[i:i+bs], chain[:bs])
		chain = next
	}
	return nil
}

// xorBytes sets dst[i] ^= src[i] for every i < len(dst), a word at a time (crypto/subtle).
func xorBytes(dst, src []byte) {
	subtle.XORBytes(dst, dst, src[:len(dst)])
}
