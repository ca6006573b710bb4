package hsm

import (
	"bytes"
	"errors"
	"testing"
)

// Field 62 of the real 0810 sign-on reply F2 in ../shared/conformance/checks.py (60.3 = 003, 40 bytes).
const f2Field62 = "E01B3E860949EE4C0BDDD573168ED6BA097575553945990F875BA4EB0000000000000000EDE09D04"

func TestParseCUPField62OfRealSignOnReply(t *testing.T) {
	k, err := ParseCUPField62(CUPDoubleLength, hexVec(t, f2Field62))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ got, want string }{
		"PIK":   {upperHex(k.PIK), "E01B3E860949EE4C0BDDD573168ED6BA"},
		"PIKCV": {upperHex(k.PIKCV), "09757555"},
		"MAK":   {upperHex(k.MAK), "3945990F875BA4EB"},
		"MAKCV": {upperHex(k.MAKCV), "EDE09D04"},
	}
	for name, v := range want {
		if v.got != v.want {
			t.Errorf("%s = %s, want %s", name, v.got, v.want)
		}
	}
	if k.TDK != nil {
		t.Errorf("TDK = %X in a 003 layout", k.TDK)
	}
	back, err := k.Field62(CUPDoubleLength)
	if err != nil || upperHex(back) != f2Field62 {
		t.Errorf("Field62 = %X, %v; want the original", back, err)
	}
}

func TestCUPKeySetUnderVectorBTMK(t *testing.T) {
	tmk := tdes(t, vecBTMK)
	pik, tdk := hexVec(t, tdesBDK), hexVec(t, tdesIK) // published keys used as test PIK/TDK
	k, err := EncryptCUPKeySet(tmk, pik, hexVec(t, vecBTAKClear), tdk)
	if err != nil {
		t.Fatal(err)
	}
	if upperHex(k.MAK) != vecBTAKEnc {
		t.Errorf("MAK under TMK = %X, want %s", k.MAK, vecBTAKEnc)
	}
	for _, code := range []string{CUPDoubleLength, CUPWithTDK} {
		f62, err := k.Field62(code)
		if err != nil {
			t.Fatal(err)
		}
		wantLen := map[string]int{CUPDoubleLength: 40, CUPWithTDK: 60}[code]
		if len(f62) != wantLen || !bytes.Equal(f62[28:36], make([]byte, 8)) {
			t.Errorf("%s: %d bytes, MAK padding %X", code, len(f62), f62[28:36])
		}
		parsed, err := ParseCUPField62(code, f62)
		if err != nil {
			t.Fatal(err)
		}
		p, m, d, err := parsed.DecryptKeys(tmk)
		if err != nil {
			t.Fatalf("%s: %v", code, err)
		}
		if !bytes.Equal(p, pik) || upperHex(m) != vecBTAKClear || (code == CUPWithTDK) != bytes.Equal(d, tdk) {
			t.Errorf("%s: decrypted keys differ", code)
		}
	}
	// Layout 001: single-length PIK and MAK.
	single, _ := EncryptCUPKeySet(tmk, pik[:8], hexVec(t, vecBTAKClear), nil)
	f62, err := single.Field62(CUPSingleDES)
	if err != nil || len(f62) != 24 {
		t.Fatalf("001 layout: %d bytes, %v", len(f62), err)
	}
	if parsed, err := ParseCUPField62(CUPSingleDES, f62); err != nil || !bytes.Equal(parsed.MAK, single.MAK) {
		t.Errorf("001 round trip: %v", err)
	}
}

func TestCUPKeySetRejectsBadInput(t *testing.T) {
	tmk := tdes(t, vecBTMK)
	k, _ := ParseCUPField62(CUPDoubleLength, hexVec(t, f2Field62))
	tampered := k
	tampered.MAKCV = []byte{0, 0, 0, 0}
	if _, _, _, err := tampered.DecryptKeys(tmk); !errors.Is(err, ErrKCV) {
		t.Errorf("wrong TMK or check value: err = %v, want ErrKCV", err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"unknown 60.3 code", func() error { _, err := ParseCUPField62("002", hexVec(t, f2Field62)); return err }},
		{"003 data of 24 bytes", func() error { _, err := ParseCUPField62(CUPDoubleLength, hexVec(t, f2Field62)[:24]); return err }},
		{"004 data of 40 bytes", func() error { _, err := ParseCUPField62(CUPWithTDK, hexVec(t, f2Field62)); return err }},
		{"004 layout without a TDK", func() error { _, err := k.Field62(CUPWithTDK); return err }},
		{"001 layout with a double-length PIK", func() error { _, err := k.Field62(CUPSingleDES); return err }},
	}
	for _, tt := range tests {
		if err := tt.call(); !errors.Is(err, ErrField62) {
			t.Errorf("%s: err = %v, want ErrField62", tt.name, err)
		}
	}
}

// Whatever parses lays out again byte for byte.
func FuzzParseCUPField62(f *testing.F) {
	f.Add(hexVec(f, f2Field62), byte(1))
	f.Fuzz(func(t *testing.T, b []byte, code byte) {
		netCode := []string{CUPSingleDES, CUPDoubleLength, CUPWithTDK}[code%3]
		k, err := ParseCUPField62(netCode, b)
		if err != nil {
			if !errors.Is(err, ErrField62) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		out, err := k.Field62(netCode)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("Field62 = %X, %v; want %X", out, err, b)
		}
	})
}
