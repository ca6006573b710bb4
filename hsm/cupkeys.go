package hsm

import (
	"bytes"
	"crypto/cipher"
	"errors"
	"fmt"
)

// ErrField62 reports a UnionPay sign-on field 62 whose length or content does not fit its 60.3 network
// management code, or a key set that cannot be laid out in it.
var ErrField62 = errors.New("hsm: invalid UnionPay field 62 key set")

// CUPKeySet is the working-key set a UnionPay POS terminal receives in field 62 of the sign-on reply 0810:
// keys encrypted under the terminal's TMK (ECB), each with the leftmost 4 bytes of its check value.
type CUPKeySet struct {
	PIK, MAK, TDK       []byte // keys under the TMK; TDK only with 60.3 = 004
	PIKCV, MAKCV, TDKCV []byte // 4-byte check values of the clear keys
}

// The 60.3 network management codes of the sign-on, which select the field 62 layout.
const (
	CUPSingleDES    = "001" // 24 bytes: PIK 8 + CV 4 + MAK 8 + CV 4
	CUPDoubleLength = "003" // 40 bytes: PIK 16 + CV 4 + MAK 8 + 8 zero bytes + CV 4
	CUPWithTDK      = "004" // 60 bytes: as 003 + TDK 16 + CV 4
)

const cupCVLen = 4

func cupLayoutLen(netCode string) (int, error) {
	switch netCode {
	case CUPSingleDES:
		return 24, nil
	case CUPDoubleLength:
		return 40, nil
	case CUPWithTDK:
		return 60, nil
	}
	return 0, fmt.Errorf("%w: 60.3 code %q (want 001, 003 or 004)", ErrField62, netCode)
}

// ParseCUPField62 splits field 62 of a sign-on reply into its key set, for the layout of netCode (60.3).
// In the 003/004 layouts the MAK is single length followed by 8 zero bytes; a non-zero second half is kept
// as a double-length MAK.
func ParseCUPField62(netCode string, b []byte) (CUPKeySet, error) {
	n, err := cupLayoutLen(netCode)
	if err != nil {
		return CUPKeySet{}, err
	}
	if len(b) != n {
		return CUPKeySet{}, fmt.Errorf("%w: %d bytes for 60.3 = %s, want %d", ErrField62, len(b), netCode, n)
	}
	cp := func(from, to int) []byte { return bytes.Clone(b[from:to]) }
	if netCode == CUPSingleDES {
		return CUPKeySet{PIK: cp(0, 8), PIKCV: cp(8, 12), MAK: cp(12, 20), MAKCV: cp(20, 24)}, nil
	}
	k := CUPKeySet{PIK: cp(0, 16), PIKCV: cp(16, 20), MAK: cp(20, 36), MAKCV: cp(36, 40)}
	if bytes.Equal(k.MAK[8:], make([]byte, 8)) {
		k.MAK = k.MAK[:8]
	}
	if netCode == CUPWithTDK {
		k.TDK, k.TDKCV = cp(40, 56), cp(56, 60)
	}
	return k, nil
}

// Field62 lays the key set out as field 62 for netCode (60.3): 24, 40 or 60 bytes.
func (k CUPKeySet) Field62(netCode string) ([]byte, error) {
	n, err := cupLayoutLen(netCode)
	if err != nil {
		return nil, err
	}
	bad := func(what string) ([]byte, error) {
		return nil, fmt.Errorf("%w: %s does not fit 60.3 = %s", ErrField62, what, netCode)
	}
	for _, cv := range [][]byte{k.PIKCV, k.MAKCV} {
		if len(cv) != cupCVLen {
			return bad("check value length")
		}
	}
	out := make([]byte, 0, n)
	if netCode == CUPSingleDES {
		if len(k.PIK) != 8 || len(k.MAK) != 8 {
			return bad("key length")
		}
		out = append(append(append(append(out, k.PIK...), k.PIKCV...), k.MAK...), k.MAKCV...)
		return out, nil
	}
	if len(k.PIK) != 16 || (len(k.MAK) != 8 && len(k.MAK) != 16) {
		return bad("key length")
	}
	out = append(append(append(out, k.PIK...), k.PIKCV...), k.MAK...)
	out = append(out, make([]byte, 16-len(k.MAK))...)
	out = append(out, k.MAKCV...)
	if netCode == CUPWithTDK {
		if len(k.TDK) != 16 || len(k.TDKCV) != cupCVLen {
			return bad("TDK or its check value")
		}
		out = append(append(out, k.TDK...), k.TDKCV...)
	}
	return out, nil
}

// EncryptCUPKeySet encrypts clear working keys under the TMK (ECB) and computes their 4-byte check values.
// tdk may be nil (layouts 001 and 003).
func EncryptCUPKeySet(tmk cipher.Block, pik, mak, tdk []byte) (CUPKeySet, error) {
	var k CUPKeySet
	var err error
	if k.PIK, k.PIKCV, err = wrapWithCV(tmk, pik); err != nil {
		return CUPKeySet{}, err
	}
	if k.MAK, k.MAKCV, err = wrapWithCV(tmk, mak); err != nil {
		return CUPKeySet{}, err
	}
	if tdk != nil {
		if k.TDK, k.TDKCV, err = wrapWithCV(tmk, tdk); err != nil {
			return CUPKeySet{}, err
		}
	}
	return k, nil
}

func wrapWithCV(tmk cipher.Block, key []byte) (enc, cv []byte, err error) {
	if cv, err = KCV(key, false, cupCVLen); err != nil {
		return nil, nil, err
	}
	enc = make([]byte, len(key))
	if err = EncryptECB(tmk, enc, key); err != nil {
		return nil, nil, err
	}
	return enc, cv, nil
}

// DecryptKeys decrypts the keys of the set under the TMK and checks each against its check value, as a
// terminal does after sign-on; a mismatch gives ErrKCV. tdk is nil when the set has no TDK.
func (k CUPKeySet) DecryptKeys(tmk cipher.Block) (pik, mak, tdk []byte, err error) {
	if pik, err = unwrapWithCV(tmk, k.PIK, k.PIKCV); err != nil {
		return nil, nil, nil, err
	}
	if mak, err = unwrapWithCV(tmk, k.MAK, k.MAKCV); err != nil {
		clear(pik)
		return nil, nil, nil, err
	}
	if k.TDK != nil {
		if tdk, err = unwrapWithCV(tmk, k.TDK, k.TDKCV); err != nil {
			clear(pik)
			clear(mak)
			return nil, nil, nil, err
		}
	}
	return pik, mak, tdk, nil
}

func unwrapWithCV(tmk cipher.Block, enc, cv []byte) ([]byte, error) {
	key := make([]byte, len(enc))
	if err := DecryptECB(tmk, key, enc); err != nil {
		return nil, err
	}
	got, err := KCV(key, false, cupCVLen)
	if err == nil && !bytes.Equal(got, cv) {
		err = ErrKCV
	}
	if err != nil {
		clear(key)
		return nil, err
	}
	return key, nil
}
