package hsm

import (
	"bytes"
	"crypto/des"
	"encoding/hex"
	"errors"
	"testing"
)

// hexVec decodes a hex test vector or fails the test.
func hexVec(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// Published vectors: ANSI X9.24-1:2009 A.4 (reference/hsm.md section 4.1).
const (
	tdesBDK  = "0123456789ABCDEFFEDCBA9876543210"
	tdesIKSN = "FFFF9876543210E00000"
	tdesIK   = "6AC292FAA1315B4D858AB3A3D7D5933A"
	tdesKSN1 = "FFFF9876543210E00001"
)

func TestDUKPTInitialKeyMatchesX924Vector(t *testing.T) {
	for _, ksn := range []string{tdesIKSN, tdesKSN1} { // the counter bits must not matter
		ik, err := DUKPTInitialKey(hexVec(t, tdesBDK), hexVec(t, ksn))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(ik); !equalFoldHex(got, tdesIK) {
			t.Errorf("KSN %s: IK = %s, want %s", ksn, got, tdesIK)
		}
	}
}

func equalFoldHex(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }

func TestDUKPTCounterOneTransactionKeyAndPINBlock(t *testing.T) {
	ik := hexVec(t, tdesIK)
	ksn := hexVec(t, tdesKSN1)
	tk, err := DUKPTTransactionKey(ik, ksn)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(tk); !equalFoldHex(got, "042666B49184CFA368DE9628D0397BC9") {
		t.Errorf("transaction key = %s", got)
	}
	pk, err := DUKPTPINKey(ik, ksn)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewTDESCipher(pk)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := EncryptPINBlock(b, ISO0, "1234", "4012345678909", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(blk); !equalFoldHex(got, "1B9C1845EB993A7A") {
		t.Errorf("encrypted PIN block = %s, want 1B9C1845EB993A7A", got)
	}
}

// Variant keys of the X9.24-1:2009 example for counters 1 and 2, as published with the standard's test data
// (reproduced by several open implementations found with the search tool; see the report).
func TestDUKPTVariantsMatchPublishedKeys(t *testing.T) {
	tests := []struct {
		name, ksn, want string
		derive          func(ik, ksn []byte) ([]byte, error)
	}{
		{"PIN", tdesKSN1, "042666B49184CF5C68DE9628D0397B36", DUKPTPINKey},
		{"MAC request", tdesKSN1, "042666B4918430A368DE9628D03984C9", DUKPTMACRequestKey},
		{"MAC response", tdesKSN1, "042666B46E84CFA368DE96282F397BC9", DUKPTMACResponseKey},
		{"data request", tdesKSN1, "448D3F076D8304036A55A3D7E0055A78", DUKPTDataRequestKey},
		{"transaction key", "FFFF9876543210E00002", "C46551CEF9FD24B0AA9AD834130D3BC7", DUKPTTransactionKey},
		{"data request", "FFFF9876543210E00002", "F1BE73B36135C5C26CF937D50ABBE5AF", DUKPTDataRequestKey},
	}
	for _, tt := range tests {
		k, err := tt.derive(hexVec(t, tdesIK), hexVec(t, tt.ksn))
		if err != nil {
			t.Fatalf("%s %s: %v", tt.name, tt.ksn, err)
		}
		if got := hex.EncodeToString(k); !equalFoldHex(got, tt.want) {
			t.Errorf("%s key for %s = %s, want %s", tt.name, tt.ksn, got, tt.want)
		}
	}
	// The response data key has no published value here: build it by hand from the published transaction key
	// (variant bytes 3 and 11, then each half TDES-encrypted under the variant key) with crypto/des directly.
	variant := hexVec(t, "0426664B9184CFA368DE96D7D0397BC9")
	ede, err := des.NewTripleDESCipher(append(append([]byte{}, variant...), variant[:8]...))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 16)
	ede.Encrypt(want[:8], variant[:8])
	ede.Encrypt(want[8:], variant[8:])
	resp, err := DUKPTDataResponseKey(hexVec(t, tdesIK), hexVec(t, tdesKSN1))
	if err != nil || !bytes.Equal(resp, want) {
		t.Errorf("data response key = %X, %v; want %X", resp, err, want)
	}
}

// AES DUKPT: ANSI X9.24-3:2017 supplement test vectors, AES-128 BDK (IK in reference/hsm.md 4.2; the
// working keys and the format-4 PIN block of the supplement for KSN 123456789012345600000001).
const (
	aesBDK  = "FEDCBA9876543210F1F1F1F1F1F1F1F1"
	aesIKID = "1234567890123456"
	aesIK   = "1273671EA26AC29AFA4D1084127652A1"
	aesKSN1 = "123456789012345600000001"
)

func TestAESDUKPTInitialKeyMatchesSupplement(t *testing.T) {
	ik, err := AESDUKPTInitialKey(hexVec(t, aesBDK), hexVec(t, aesIKID))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(ik); !equalFoldHex(got, aesIK) {
		t.Errorf("IK = %s, want %s", got, aesIK)
	}
}

func TestAESDUKPTWorkingKeysMatchSupplement(t *testing.T) {
	tests := []struct {
		usage AESKeyUsage
		ksn   string
		want  string
	}{
		{AESPINEncryption, aesKSN1, "AF8CB133A78F8DC2D1359F18527593FB"},
		{AESMACGeneration, aesKSN1, "A2DC23DE6FDE0824A2BC321E08E4B8B7"},
		{AESMACVerification, aesKSN1, "DBB463945B286C07CD3AD82EE96FD9C9"},
		{AESMACBothWays, aesKSN1, "85675439D18D7F1158BD8E3EAA3D502B"},
		{AESDataEncryption, aesKSN1, "A35C412EFD41FDB98B69797C02DCD08F"},
		{AESDataDecryption, aesKSN1, "16292C6EA8F64C5420A0584BFBC577BE"},
		{AESDataBothWays, aesKSN1, "A308E080DD15A1B741F1721BF67DE11C"},
		{AESKeyEncryptionKey, aesKSN1, "36A724B7BEFA5A25F5E7B5782A4554A2"},
		{AESPINEncryption, "123456789012345600000008", "4D9DF3FBEE3448FC3E676D04320A90F5"},
		{AESMACGeneration, "123456789012345600000008", "6FD572E5D59E618875F193484F9178FB"},
		{AESDataEncryption, "123456789012345600000008", "650F34204ABD4E57764D61AC3D266FB1"},
	}
	ik := hexVec(t, aesIK)
	for _, tt := range tests {
		k, err := AESDUKPTWorkingKey(ik, hexVec(t, tt.ksn), tt.usage)
		if err != nil {
			t.Fatalf("%04X %s: %v", uint16(tt.usage), tt.ksn, err)
		}
		if got := hex.EncodeToString(k); !equalFoldHex(got, tt.want) {
			t.Errorf("usage %04X KSN %s: key = %s, want %s", uint16(tt.usage), tt.ksn, got, tt.want)
		}
	}
}

func TestAESDUKPTDerivationKeysMatchSupplement(t *testing.T) {
	tests := []struct{ counter, want string }{
		{"00000001", "4F21B565BAD9835E112B6465635EAE44"},
		{"00000002", "2F34D68DE10F68D38091A73B9E7C437C"},
		{"00000008", "718EE6CF0B27E53D5F7AF99C4D8146A2"},
		{"0001FFFE", "E21E8C8D347F8561A2BE752DAA85A111"},
		{"00020000", "F7AE9025468A25D37B7249CFFED224C8"},
		{"FFFF0000", "F6BA59389BD14A9855BE9727E7C52E3C"},
	}
	ik := hexVec(t, aesIK)
	for _, tt := range tests {
		k, err := AESDUKPTDerivationKey(ik, hexVec(t, aesIKID+tt.counter))
		if err != nil {
			t.Fatalf("counter %s: %v", tt.counter, err)
		}
		if got := hex.EncodeToString(k); !equalFoldHex(got, tt.want) {
			t.Errorf("counter %s: derivation key = %s, want %s", tt.counter, got, tt.want)
		}
	}
}

func TestAESDUKPT256MatchesSupplement(t *testing.T) {
	bdk := hexVec(t, aesBDK+aesBDK)
	ik, err := AESDUKPTInitialKey(bdk, hexVec(t, aesIKID))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(ik); !equalFoldHex(got, "CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F") {
		t.Errorf("AES-256 IK = %s", got)
	}
	pk, err := AESDUKPTWorkingKey(ik, hexVec(t, aesKSN1), AESPINEncryption)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(pk); !equalFoldHex(got, "8C1AB7BEE973829E30242E0BBBDD4946D540C98FC1B5BDCF94790001A23FD502") {
		t.Errorf("AES-256 PIN key = %s", got)
	}
}

func TestDUKPTRejectsBadKSNAndCounters(t *testing.T) {
	ik := hexVec(t, tdesIK)
	aik := hexVec(t, aesIK)
	tests := []struct {
		name string
		err  error
		call func() error
	}{
		{"TDES KSN of 8 bytes", ErrKSN, func() error { _, err := DUKPTPINKey(ik, hexVec(t, "FFFF9876543210E0")); return err }},
		{"TDES counter zero", ErrKSNCounter, func() error { _, err := DUKPTPINKey(ik, hexVec(t, tdesIKSN)); return err }},
		{"TDES counter with 11 one-bits", ErrKSNCounter, func() error { _, err := DUKPTPINKey(ik, hexVec(t, "FFFF9876543210E007FF")); return err }},
		{"TDES counter with 11 one-bits above 0x1FF800", ErrKSNCounter, func() error { _, err := DUKPTTransactionKey(ik, hexVec(t, "FFFF9876543210FFFC00")); return err }},
		{"TDES initial key of 8 bytes", ErrKeyLength, func() error { _, err := DUKPTPINKey(ik[:8], hexVec(t, tdesKSN1)); return err }},
		{"TDES BDK of 24 bytes", ErrKeyLength, func() error { _, err := DUKPTInitialKey(make([]byte, 24), hexVec(t, tdesKSN1)); return err }},
		{"AES KSN of 10 bytes", ErrKSN, func() error { _, err := AESDUKPTWorkingKey(aik, hexVec(t, tdesKSN1), AESPINEncryption); return err }},
		{"AES counter zero", ErrKSNCounter, func() error {
			_, err := AESDUKPTWorkingKey(aik, hexVec(t, aesIKID+"00000000"), AESPINEncryption)
			return err
		}},
		{"AES counter with 17 one-bits", ErrKSNCounter, func() error {
			_, err := AESDUKPTWorkingKey(aik, hexVec(t, aesIKID+"0001FFFF"), AESPINEncryption)
			return err
		}},
		{"AES unknown usage", ErrUnsupported, func() error { _, err := AESDUKPTWorkingKey(aik, hexVec(t, aesKSN1), 0x4000); return err }},
		{"AES initial key of 8 bytes", ErrKeyLength, func() error { _, err := AESDUKPTWorkingKey(aik[:8], hexVec(t, aesKSN1), AESPINEncryption); return err }},
	}
	for _, tt := range tests {
		if err := tt.call(); !errors.Is(err, tt.err) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.err)
		}
	}
}
