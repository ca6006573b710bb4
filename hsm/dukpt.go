package hsm

import (
	"crypto/des"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// DUKPT errors. They never carry key material.
var (
	// ErrKSN reports a key serial number of the wrong length (10 bytes for TDES, 12 for AES DUKPT).
	ErrKSN = errors.New("hsm: invalid DUKPT key serial number")
	// ErrKSNCounter reports a transaction counter a device never uses: zero, or more one-bits than the
	// standard allows (10 of the 21 TDES counter bits, 16 of the 32 AES counter bits).
	ErrKSNCounter = errors.New("hsm: invalid DUKPT transaction counter")
)

// TDES DUKPT (ANSI X9.24-1:2009) sizes and limits.
const (
	// TDESKSNLen is the length of a TDES DUKPT key serial number: key set ID, device ID and a 21-bit counter.
	TDESKSNLen = 10
	// TDESMaxCounterBits is the most one-bits a valid TDES transaction counter has (so at most 0x1FF800).
	TDESMaxCounterBits = 10
	// AESKSNLen is the length of an AES DUKPT key serial number: 8-byte initial key ID and a 32-bit counter.
	AESKSNLen = 12
	// AESMaxCounterBits is the most one-bits a valid AES transaction counter has.
	AESMaxCounterBits = 16
)

const tdesCounterMask = 0x1FFFFF

// Variant masks of X9.24-1:2009 applied to the transaction key; each byte pair sits in both key halves.
var (
	variantPIN         = [16]byte{7: 0xFF, 15: 0xFF}
	variantMACRequest  = [16]byte{6: 0xFF, 14: 0xFF}
	variantMACResponse = [16]byte{4: 0xFF, 12: 0xFF}
	variantDataRequest = [16]byte{5: 0xFF, 13: 0xFF}
	variantDataResp    = [16]byte{3: 0xFF, 11: 0xFF}
	keyRegisterMask    = [8]byte{0xC0, 0xC0, 0xC0, 0xC0}
)

// DUKPTInitialKey derives the initial key (IPEK) of the device named by ksn from a 16-byte BDK: the left
// half is TDES_BDK(IKSN), the right half TDES_(BDK XOR C0C0C0C000000000C0C0C0C000000000)(IKSN), where IKSN
// is the leftmost 8 bytes of the KSN with the counter bits cleared. Any counter in ksn is ignored.
func DUKPTInitialKey(bdk, ksn []byte) ([]byte, error) {
	if len(bdk) != 16 {
		return nil, fmt.Errorf("%w: TDES DUKPT BDK must be 16 bytes, got %d", ErrKeyLength, len(bdk))
	}
	if len(ksn) != TDESKSNLen {
		return nil, fmt.Errorf("%w: TDES KSN must be %d bytes, got %d", ErrKSN, TDESKSNLen, len(ksn))
	}
	iksn := make([]byte, 8)
	copy(iksn, ksn[:8])
	iksn[7] &= 0xE0
	ik := make([]byte, 16)
	var k [16]byte
	copy(k[:], bdk)
	defer clear(k[:])
	for half := 0; half < 2; half++ {
		if half == 1 {
			xorBytes(k[0:4], keyRegisterMask[:4])
			xorBytes(k[8:12], keyRegisterMask[:4])
		}
		b, err := NewTDESCipher(k[:])
		if err != nil {
			return nil, err
		}
		b.Encrypt(ik[8*half:8*half+8], iksn)
	}
	return ik, nil
}

// tdesCounter returns the 21-bit transaction counter of a TDES KSN after checking the KSN's rules.
func tdesCounter(ksn []byte) (uint32, error) {
	if len(ksn) != TDESKSNLen {
		return 0, fmt.Errorf("%w: TDES KSN must be %d bytes, got %d", ErrKSN, TDESKSNLen, len(ksn))
	}
	c := uint32(ksn[7]&0x1F)<<16 | uint32(ksn[8])<<8 | uint32(ksn[9])
	if c == 0 || bits.OnesCount32(c) > TDESMaxCounterBits {
		return 0, ErrKSNCounter
	}
	return c, nil
}

// DUKPTTransactionKey derives the transaction key (the "current key" before any variant) for ksn from the
// initial key ik: for each one-bit of the counter, from the left, the bit is set in the key serial number
// register and the non-reversible key generation process runs on it. A counter of zero or with more than
// 10 one-bits gives ErrKSNCounter.
func DUKPTTransactionKey(ik, ksn []byte) ([]byte, error) {
	if len(ik) != 16 {
		return nil, fmt.Errorf("%w: TDES DUKPT initial key must be 16 bytes, got %d", ErrKeyLength, len(ik))
	}
	counter, err := tdesCounter(ksn)
	if err != nil {
		return nil, err
	}
	reg := binary.BigEndian.Uint64(ksn[2:10]) &^ tdesCounterMask
	var key [16]byte
	copy(key[:], ik)
	for bit := uint32(1 << 20); bit != 0; bit >>= 1 {
		if counter&bit == 0 {
			continue
		}
		reg |= uint64(bit)
		if err := nonReversibleKeyGen(&key, reg); err != nil {
			return nil, err
		}
	}
	out := make([]byte, 16)
	copy(out, key[:])
	clear(key[:])
	return out, nil
}

// nonReversibleKeyGen replaces key with the X9.24-1 non-reversible key generation of the register reg:
// right = DES_KL(reg XOR KR) XOR KR, then the same with both halves XOR C0C0C0C000000000 gives the left.
func nonReversibleKeyGen(key *[16]byte, reg uint64) error {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], reg)
	out := make([]byte, 16) // the cipher writes here; a stack buffer would move to the heap anyway
	defer clear(out)
	for half := 1; half >= 0; half-- {
		var kl, kr [8]byte
		copy(kl[:], key[:8])
		copy(kr[:], key[8:])
		if half == 0 {
			xorBytes(kl[:], keyRegisterMask[:])
			xorBytes(kr[:], keyRegisterMask[:])
		}
		b, err := des.NewCipher(kl[:])
		if err != nil {
			return err
		}
		r := out[8*half : 8*half+8]
		copy(r, msg[:])
		xorBytes(r, kr[:])
		b.Encrypt(r, r)
		xorBytes(r, kr[:])
		clear(kl[:])
		clear(kr[:])
	}
	copy(key[:], out)
	return nil
}

func dukptVariant(ik, ksn []byte, mask *[16]byte) ([]byte, error) {
	k, err := DUKPTTransactionKey(ik, ksn)
	if err != nil {
		return nil, err
	}
	xorBytes(k, mask[:])
	return k, nil
}

// DUKPTPINKey returns the PIN encryption key for ksn: the transaction key XOR
// 00000000000000FF00000000000000FF.
func DUKPTPINKey(ik, ksn []byte) ([]byte, error) { return dukptVariant(ik, ksn, &variantPIN) }

// DUKPTMACRequestKey returns the request (device to host) MAC key for ksn: the transaction key XOR
// 000000000000FF00000000000000FF00. DUKPT MACs are ANSI X9.19 (MACX919) truncated to 4 bytes.
func DUKPTMACRequestKey(ik, ksn []byte) ([]byte, error) {
	return dukptVariant(ik, ksn, &variantMACRequest)
}

// DUKPTMACResponseKey returns the response (host to device) MAC key for ksn: the transaction key XOR
// 00000000FF00000000000000FF000000.
func DUKPTMACResponseKey(ik, ksn []byte) ([]byte, error) {
	return dukptVariant(ik, ksn, &variantMACResponse)
}

// DUKPTDataRequestKey returns the request data encryption key for ksn: the variant
// 0000000000FF00000000000000FF0000 of the transaction key, then the one-way function of X9.24-1:2009
// (each half TDES-encrypted under the variant key itself).
func DUKPTDataRequestKey(ik, ksn []byte) ([]byte, error) {
	return dukptDataKey(ik, ksn, &variantDataRequest)
}

// DUKPTDataResponseKey returns the response data encryption key for ksn: the variant
// 000000FF00000000000000FF00000000 followed by the same one-way function as DUKPTDataRequestKey.
func DUKPTDataResponseKey(ik, ksn []byte) ([]byte, error) {
	return dukptDataKey(ik, ksn, &variantDataResp)
}

func dukptDataKey(ik, ksn []byte, mask *[16]byte) ([]byte, error) {
	k, err := dukptVariant(ik, ksn, mask)
	if err != nil {
		return nil, err
	}
	b, err := NewTDESCipher(k)
	if err != nil {
		return nil, err
	}
	if err := EncryptECB(b, k, k); err != nil {
		return nil, err
	}
	return k, nil
}

// AESKeyUsage is the key usage indicator of AES DUKPT derivation data (ANSI X9.24-3:2017, table 2).
type AESKeyUsage uint16

// The AES DUKPT working-key usages.
const (
	AESKeyEncryptionKey   AESKeyUsage = 0x0002
	AESPINEncryption      AESKeyUsage = 0x1000
	AESMACGeneration      AESKeyUsage = 0x2000
	AESMACVerification    AESKeyUsage = 0x2001
	AESMACBothWays        AESKeyUsage = 0x2002
	AESDataEncryption     AESKeyUsage = 0x3000
	AESDataDecryption     AESKeyUsage = 0x3001
	AESDataBothWays       AESKeyUsage = 0x3002
	aesKeyDerivation      AESKeyUsage = 0x8000
	aesInitialKeyDeriving AESKeyUsage = 0x8001
)

// aesDerivationData builds the 16-byte derivation data block for a key of keyLen bytes.
func aesDerivationData(usage AESKeyUsage, keyLen int, id []byte, counter uint32) [16]byte {
	var d [16]byte
	d[0] = 0x01 // version
	d[1] = 0x01 // key block counter, stepped by aesDerive for longer keys
	binary.BigEndian.PutUint16(d[2:4], uint16(usage))
	alg, bitLen := uint16(0x0002), uint16(128) // AES-128
	switch keyLen {
	case 24:
		alg, bitLen = 0x0003, 192
	case 32:
		alg, bitLen = 0x0004, 256
	}
	binary.BigEndian.PutUint16(d[4:6], alg)
	binary.BigEndian.PutUint16(d[6:8], bitLen)
	if usage == aesInitialKeyDeriving {
		copy(d[8:16], id) // the whole initial key ID
	} else {
		copy(d[8:12], id[4:8]) // derivation ID: right half of the initial key ID
		binary.BigEndian.PutUint32(d[12:16], counter)
	}
	return d
}

// aesDerive encrypts the derivation data under key, one block per 16 bytes of the output key.
func aesDerive(key []byte, data [16]byte) ([]byte, error) {
	b, err := NewAESCipher(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, (len(key)+15)/16*16)
	for i := 0; i < len(out); i += 16 {
		data[1] = byte(i/16 + 1)
		b.Encrypt(out[i:i+16], data[:])
	}
	return out[:len(key)], nil
}

// AESDUKPTInitialKey derives an AES DUKPT initial key from a BDK (16, 24 or 32 bytes) and the 8-byte
// initial key ID (the leftmost 8 bytes of the KSN). The initial key has the BDK's length.
func AESDUKPTInitialKey(bdk, ikID []byte) ([]byte, error) {
	if len(ikID) < 8 {
		return nil, fmt.Errorf("%w: AES DUKPT initial key ID must be 8 bytes, got %d", ErrKSN, len(ikID))
	}
	if _, err := NewAESCipher(bdk); err != nil {
		return nil, err
	}
	return aesDerive(bdk, aesDerivationData(aesInitialKeyDeriving, len(bdk), ikID[:8], 0))
}

func aesCounter(ksn []byte) (uint32, error) {
	if len(ksn) != AESKSNLen {
		return 0, fmt.Errorf("%w: AES KSN must be %d bytes, got %d", ErrKSN, AESKSNLen, len(ksn))
	}
	c := binary.BigEndian.Uint32(ksn[8:12])
	if c == 0 || bits.OnesCount32(c) > AESMaxCounterBits {
		return 0, ErrKSNCounter
	}
	return c, nil
}

// AESDUKPTDerivationKey returns the intermediate derivation key for the counter of ksn (12 bytes): starting
// from ik, one key derivation (usage 8000) per one-bit of the counter, from the left.
func AESDUKPTDerivationKey(ik, ksn []byte) ([]byte, error) {
	counter, err := aesCounter(ksn)
	if err != nil {
		return nil, err
	}
	if _, err := NewAESCipher(ik); err != nil {
		return nil, err
	}
	key := append([]byte(nil), ik...)
	var working uint32
	for bit := uint32(1 << 31); bit != 0; bit >>= 1 {
		if counter&bit == 0 {
			continue
		}
		working |= bit
		next, err := aesDerive(key, aesDerivationData(aesKeyDerivation, len(key), ksn, working))
		clear(key)
		if err != nil {
			return nil, err
		}
		key = next
	}
	return key, nil
}

// AESDUKPTWorkingKey derives the working key of the given usage for ksn (12 bytes) from the initial key ik.
// The working key is an AES key of ik's length (AES-128 from an AES-128 initial key).
func AESDUKPTWorkingKey(ik, ksn []byte, usage AESKeyUsage) ([]byte, error) {
	switch usage {
	case AESKeyEncryptionKey, AESPINEncryption, AESMACGeneration, AESMACVerification, AESMACBothWays,
		AESDataEncryption, AESDataDecryption, AESDataBothWays:
	default:
		return nil, fmt.Errorf("%w: AES DUKPT key usage %04X", ErrUnsupported, uint16(usage))
	}
	dk, err := AESDUKPTDerivationKey(ik, ksn)
	if err != nil {
		return nil, err
	}
	counter := binary.BigEndian.Uint32(ksn[8:12])
	wk, err := aesDerive(dk, aesDerivationData(usage, len(dk), ksn, counter))
	clear(dk)
	return wk, err
}
