package hsm

import (
	"crypto/cipher"
	"errors"
	"fmt"
)

// ErrTrackLength reports a track too short for UnionPay TDK encryption (fewer than 9 packed bytes).
var ErrTrackLength = errors.New("hsm: track data too short for TDK encryption (needs 17 digits or more)")

// EncryptTrackTDK encrypts (or, with decrypt, decrypts) UnionPay track data in place under the TDK, as
// UnionPay POS terminals do for fields 35 and 36 when 53.3 = '1' (60.3 = 004). track is the packed BCD
// value of the field without its length prefix: left-aligned, '=' as nibble D, a trailing pad nibble when
// the digit count is odd. One TDES block is transformed: the 8 bytes just before the last byte, that is
// the 16 digits that end just before the last digit. The length does not change.
func EncryptTrackTDK(tdk cipher.Block, track []byte, decrypt bool) error {
	if tdk == nil || tdk.BlockSize() != 8 {
		return fmt.Errorf("%w: track encryption needs a TDES key", ErrAlgorithm)
	}
	if len(track) < 9 {
		return ErrTrackLength
	}
	blk := track[len(track)-9 : len(track)-1]
	if decrypt {
		tdk.Decrypt(blk, blk)
	} else {
		tdk.Encrypt(blk, blk)
	}
	return nil
}
