package hsm

import (
	"bytes"
	"crypto/cipher"
	"errors"
	"testing"
)

// Test vector B (reference/unionpay-pos.md section 5): the TAK under the TMK.
const (
	vecBTMK      = "70F2A84CCBC2AE8625CBB0F2C22AB923"
	vecBTAKEnc   = "96D605EA176B7E9E"
	vecBTAKClear = "C24A8FB57AA20123"
)

func TestDecryptECBMatchesVectorB(t *testing.T) {
	out := make([]byte, 8)
	if err := DecryptECB(tdes(t, vecBTMK), out, hexVec(t, vecBTAKEnc)); err != nil {
		t.Fatal(err)
	}
	if upperHex(out) != vecBTAKClear {
		t.Errorf("clear TAK = %X, want %s", out, vecBTAKClear)
	}
	if err := EncryptECB(tdes(t, vecBTMK), out, out); err != nil || upperHex(out) != vecBTAKEnc {
		t.Errorf("re-encrypted TAK = %X, %v", out, err)
	}
}

func TestNewTDESCipherKeyLengthsMapToTripleDES(t *testing.T) {
	k := hexVec(t, vecBTMK) // K1 K2
	block := hexVec(t, vecBTAKClear)
	enc := func(key []byte) []byte {
		b, err := NewTDESCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 8)
		b.Encrypt(out, block)
		return out
	}
	k1k2k1 := append(append([]byte{}, k...), k[:8]...)
	if !bytes.Equal(enc(k), enc(k1k2k1)) {
		t.Error("16-byte key is not K1 K2 K1")
	}
	k1k1k1 := append(append(append([]byte{}, k[:8]...), k[:8]...), k[:8]...)
	if !bytes.Equal(enc(k[:8]), enc(k1k1k1)) {
		t.Error("8-byte key is not K1 K1 K1")
	}
	for _, n := range []int{0, 7, 15, 17, 32} {
		if _, err := NewTDESCipher(make([]byte, n)); !errors.Is(err, ErrKeyLength) {
			t.Errorf("TDES key of %d bytes: err = %v", n, err)
		}
	}
	for _, n := range []int{8, 15, 33} {
		if _, err := NewAESCipher(make([]byte, n)); !errors.Is(err, ErrKeyLength) {
			t.Errorf("AES key of %d bytes: err = %v", n, err)
		}
	}
	if b, err := NewCipher(k); err != nil || b.BlockSize() != 8 {
		t.Errorf("NewCipher is not TDES: %v", err)
	}
}

func TestCheckParityAndFixParity(t *testing.T) {
	key := hexVec(t, vecBTMK)
	if err := CheckParity(key); err != nil {
		t.Fatalf("published key rejected: %v", err)
	}
	bad := bytes.Clone(key)
	bad[5] ^= 0x01
	bad[9] ^= 0x01
	err := CheckParity(bad)
	var pe *ParityError
	if !errors.Is(err, ErrParity) || !errors.As(err, &pe) || pe.Index != 5 {
		t.Fatalf("CheckParity = %v, want ParityError at byte 5", err)
	}
	FixParity(bad)
	if !bytes.Equal(bad, key) {
		t.Errorf("FixParity = %X, want %X", bad, key)
	}
}

func TestCBCMatchesStandardLibraryAndRoundTrips(t *testing.T) {
	for _, b := range []cipher.Block{tdes(t, vecBTMK), aesBlock(t, aesBDK)} {
		bs := b.BlockSize()
		src := []byte("forty-eight bytes of plain text for the CBC test")[:3*bs]
		iv := bytes.Repeat([]byte{0x5A}, bs)
		got := make([]byte, len(src))
		if err := EncryptCBC(b, iv, got, src); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, len(src))
		cipher.NewCBCEncrypter(b, iv).CryptBlocks(want, src)
		if !bytes.Equal(got, want) {
			t.Errorf("block size %d: EncryptCBC differs from crypto/cipher", bs)
		}
		if err := DecryptCBC(b, iv, got, got); err != nil || !bytes.Equal(got, src) {
			t.Errorf("block size %d: in-place DecryptCBC = %q, %v", bs, got, err)
		}
	}
}

func TestBlockModesRejectPartialBlocks(t *testing.T) {
	b := tdes(t, vecBTMK)
	buf := make([]byte, 16)
	checks := map[string]error{
		"ECB 7 bytes":        EncryptECB(b, buf, buf[:7]),
		"ECB short dst":      DecryptECB(b, buf[:8], buf),
		"CBC 12 bytes":       EncryptCBC(b, make([]byte, 8), buf, buf[:12]),
		"CBC IV of 16 bytes": DecryptCBC(b, make([]byte, 16), buf, buf),
		"CBC short dst":      EncryptCBC(b, make([]byte, 8), buf[:8], buf),
	}
	for name, err := range checks {
		if !errors.Is(err, ErrDataLength) {
			t.Errorf("%s: err = %v, want ErrDataLength", name, err)
		}
	}
}
