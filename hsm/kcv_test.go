package hsm

import (
	"bytes"
	"testing"
)

func TestKCV(t *testing.T) {
	// TDES: payShield shows 08D7B4 for the X9.24 test BDK (conformance contract of calc kcv).
	got, err := KCV(hexVec(t, tdesBDK), false, 3)
	if err != nil || upperHex(got) != "08D7B4" {
		t.Errorf("TDES KCV = %X, %v; want 08D7B4", got, err)
	}
	// A longer TDES check value extends the same encrypted zero block.
	long, _ := KCV(hexVec(t, tdesBDK), false, 8)
	if !bytes.HasPrefix(long, got) {
		t.Errorf("8-byte KCV %X does not start with %X", long, got)
	}
	// AES: CMAC of a zero block (X9.24-1:2017), not the ECB encryption of a zero block.
	aesKCV, err := KCV(hexVec(t, cmacK128), true, 16)
	if err != nil {
		t.Fatal(err)
	}
	cmac, _ := ComputeMAC(MACAESCMAC, hexVec(t, cmacK128), make([]byte, 16))
	if !bytes.Equal(aesKCV, cmac) {
		t.Errorf("AES KCV = %X, want CMAC(0^128) = %X", aesKCV, cmac)
	}
	ecb := make([]byte, 16)
	aesBlock(t, cmacK128).Encrypt(ecb, ecb)
	if bytes.Equal(aesKCV, ecb) {
		t.Error("AES KCV uses the legacy ECB method")
	}
}

func TestKCVRejectsBadLengths(t *testing.T) {
	tests := []struct {
		key    []byte
		aesKey bool
		n      int
	}{
		{make([]byte, 16), false, 0},
		{make([]byte, 16), false, 9},
		{make([]byte, 16), true, 17},
		{make([]byte, 10), false, 3},
		{make([]byte, 8), true, 3},
	}
	for _, tt := range tests {
		if _, err := KCV(tt.key, tt.aesKey, tt.n); err == nil {
			t.Errorf("KCV(%d-byte key, aes=%v, n=%d) succeeded", len(tt.key), tt.aesKey, tt.n)
		}
	}
}
