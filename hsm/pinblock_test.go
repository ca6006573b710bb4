package hsm

import (
	"bytes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// Published PIN vectors: reference/unionpay-pos.md section 6 and hsm.md 4.1 (ISO 0), and the format-4
// example of the ANSI X9.24-3:2017 supplement (PIN 1234, PAN 4111111111111111, fill 2F69ADDE2E9E7ACE).
const (
	panX98   = "4012345678909"
	panISO4  = "4111111111111111"
	iso4Fill = "2F69ADDE2E9E7ACE"
	// Keys used as arbitrary test keys: published BDK and TMK values of the references.
	testTPK = tdesBDK
	testZPK = "70F2A84CCBC2AE8625CBB0F2C22AB923"
)

func tdes(t testing.TB, k string) cipher.Block {
	t.Helper()
	b, err := NewTDESCipher(hexVec(t, k))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func aesBlock(t testing.TB, k string) cipher.Block {
	t.Helper()
	b, err := NewAESCipher(hexVec(t, k))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func upperHex(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

func TestEncodePINBlockMatchesPublishedVectors(t *testing.T) {
	tests := []struct {
		f        PINBlockFormat
		pin, pan string
		rnd      string
		want     string
	}{
		{ISO0, "1234", panX98, "", "041274EDCBA9876F"},
		{ISO0, "123456", "123456789012345678", "", "061253DFFEDCBA98"},
		{ISO4, "1234", panISO4, iso4Fill, "441234AAAAAAAAAA2F69ADDE2E9E7ACE"},
	}
	for _, tt := range tests {
		got, err := EncodePINBlock(tt.f, tt.pin, tt.pan, bytes.NewReader(hexVec(t, tt.rnd)))
		if err != nil {
			t.Fatalf("%v: %v", tt.f, err)
		}
		if upperHex(got) != tt.want {
			t.Errorf("%v: block = %X, want %s", tt.f, got, tt.want)
		}
		pin, err := DecodePINBlock(tt.f, got, tt.pan)
		if err != nil || pin != tt.pin {
			t.Errorf("%v: decode = %q, %v", tt.f, pin, err)
		}
	}
}

func TestISO4PANFieldMatchesSupplement(t *testing.T) {
	var f [16]byte
	if err := iso4PANField(panISO4, &f); err != nil {
		t.Fatal(err)
	}
	if got := upperHex(f[:]); got != "44111111111111111000000000000000" {
		t.Errorf("PAN field = %s", got)
	}
}

func TestEncryptPINBlockISO4MatchesSupplement(t *testing.T) {
	// The PIN keys are those of KSN counters 1 and 2, derived here from the supplement's initial key.
	tests := []struct{ counter, pinKey, want string }{
		{"00000001", "AF8CB133A78F8DC2D1359F18527593FB", "A912150391AB65A67E52883D81CE2D15"},
		{"00000002", "D30BDC73EC9714B000BEC66BDB7B6D09", "52A00503BD34BA1383F6A7EE9FE2547F"},
	}
	for _, tt := range tests {
		k, err := AESDUKPTWorkingKey(hexVec(t, aesIK), hexVec(t, aesIKID+tt.counter), AESPINEncryption)
		if err != nil {
			t.Fatal(err)
		}
		if upperHex(k) != tt.pinKey {
			t.Fatalf("counter %s: PIN key = %X, want %s", tt.counter, k, tt.pinKey)
		}
		key := aesBlock(t, tt.pinKey)
		blk, err := EncryptPINBlockISO4(key, "1234", panISO4, bytes.NewReader(hexVec(t, iso4Fill)))
		if err != nil {
			t.Fatal(err)
		}
		if upperHex(blk) != tt.want {
			t.Errorf("counter %s: block = %X, want %s", tt.counter, blk, tt.want)
		}
		pin, err := DecryptPINBlockISO4(key, hexVec(t, tt.want), panISO4)
		if err != nil || pin != "1234" {
			t.Errorf("counter %s: decrypt = %q, %v", tt.counter, pin, err)
		}
	}
}

func TestPINBlockRoundTripsEveryFormatAndLength(t *testing.T) {
	pans := []string{panX98, panISO4, "123456789012345678", "4111111111111111111", "41111", "4"}
	for _, f := range []PINBlockFormat{ISO0, ISO1, ISO3, ISO4} {
		key := tdes(t, testTPK)
		if f == ISO4 {
			key = aesBlock(t, aesIK)
		}
		for n := 4; n <= 12; n++ {
			pin := "987654321098"[:n]
			for _, pan := range pans {
				clearBlk, err := EncodePINBlock(f, pin, pan, nil)
				if err != nil {
					t.Fatalf("%v len %d PAN len %d: %v", f, n, len(pan), err)
				}
				if got, err := DecodePINBlock(f, clearBlk, pan); err != nil || got != pin {
					t.Errorf("%v len %d PAN len %d: clear round trip = %q, %v", f, n, len(pan), got, err)
				}
				enc, err := EncryptPINBlock(key, f, pin, pan, nil)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := DecryptPINBlock(key, f, enc, pan); err != nil || got != pin {
					t.Errorf("%v len %d PAN len %d: encrypted round trip = %q, %v", f, n, len(pan), got, err)
				}
			}
		}
	}
}

func TestPINBlockFillFollowsFormat(t *testing.T) {
	for i := 0; i < 50; i++ {
		b3, _ := EncodePINBlock(ISO3, "1234", panX98, nil)
		var pf [8]byte
		_ = isoPANField(panX98, &pf)
		xorBytes(b3, pf[:])
		for n := 6; n < 16; n++ {
			if v := nibble(b3, n); v < 0xA {
				t.Fatalf("ISO 3 fill nibble %d = %X, want A-F", n, v)
			}
		}
	}
	// Two ISO 1 and ISO 3 blocks of the same PIN differ (random fill); ISO 0 blocks are equal.
	for _, f := range []PINBlockFormat{ISO1, ISO3, ISO4} {
		a, _ := EncodePINBlock(f, "1234", panX98, nil)
		b, _ := EncodePINBlock(f, "1234", panX98, nil)
		if bytes.Equal(a, b) {
			t.Errorf("%v: two encodings are equal; the fill is not random", f)
		}
	}
	// ISO 1 carries no PAN: any PAN decodes it.
	b1, _ := EncodePINBlock(ISO1, "1234", panX98, nil)
	if pin, err := DecodePINBlock(ISO1, b1, panISO4); err != nil || pin != "1234" {
		t.Errorf("ISO 1 decode with another PAN = %q, %v", pin, err)
	}
}

func TestPINBlockErrorsAreTypedAndRevealNothing(t *testing.T) {
	good := hexVec(t, "041274EDCBA9876F")
	corrupt := func(i int, x byte) []byte { b := bytes.Clone(good); b[i] ^= x; return b }
	tpk := tdes(t, testTPK)
	tests := []struct {
		name string
		err  error
		call func() error
	}{
		{"PIN of 3 digits", ErrPINLength, func() error { _, err := EncodePINBlock(ISO0, "123", panX98, nil); return err }},
		{"PIN of 13 digits", ErrPINLength, func() error { _, err := EncodePINBlock(ISO3, "1234567890123", panX98, nil); return err }},
		{"PIN with a letter", ErrPINDigits, func() error { _, err := EncodePINBlock(ISO0, "12a4", panX98, nil); return err }},
		{"PAN with a letter", ErrPAN, func() error { _, err := EncodePINBlock(ISO0, "1234", "40123456789A9", nil); return err }},
		{"PAN of 20 digits", ErrPAN, func() error { _, err := EncodePINBlock(ISO0, "1234", "40123456789090000000", nil); return err }},
		{"empty PAN", ErrPAN, func() error { _, err := EncryptPINBlockISO4(aesBlock(t, aesIK), "1234", "", nil); return err }},
		{"unknown format", ErrPINBlockFormat, func() error { _, err := EncodePINBlock(2, "1234", panX98, nil); return err }},
		{"control nibble altered", ErrPINBlock, func() error { _, err := DecodePINBlock(ISO0, corrupt(0, 0x10), panX98); return err }},
		{"PIN length nibble 3", ErrPINLength, func() error { _, err := DecodePINBlock(ISO0, corrupt(0, 0x07), panX98); return err }},
		{"PIN length nibble 13", ErrPINLength, func() error { _, err := DecodePINBlock(ISO0, corrupt(0, 0x09), panX98); return err }},
		{"fill altered", ErrPINBlock, func() error { _, err := DecodePINBlock(ISO0, corrupt(7, 0x01), panX98); return err }},
		{"PIN digit not decimal", ErrPINBlock, func() error { _, err := DecodePINBlock(ISO0, corrupt(1, 0x0C), panX98); return err }},
		{"wrong PAN", ErrPINBlock, func() error { _, err := DecodePINBlock(ISO0, good, panISO4); return err }},
		{"ISO 0 block decoded as ISO 3", ErrPINBlock, func() error { _, err := DecodePINBlock(ISO3, good, panX98); return err }},
		{"short block", ErrPINBlock, func() error { _, err := DecodePINBlock(ISO0, good[:7], panX98); return err }},
		{"wrong key", ErrPINBlock, func() error {
			enc, _ := EncryptPINBlock(tpk, ISO0, "1234", panX98, nil)
			_, err := DecryptPINBlock(tdes(t, testZPK), ISO0, enc, panX98)
			return err
		}},
		{"ISO 4 under a TDES key", ErrAlgorithm, func() error { _, err := EncryptPINBlockISO4(tpk, "1234", panISO4, nil); return err }},
		{"ISO 0 under an AES key", ErrAlgorithm, func() error { _, err := EncryptPINBlock(aesBlock(t, aesIK), ISO0, "1234", panX98, nil); return err }},
	}
	for _, tt := range tests {
		err := tt.call()
		if !errors.Is(err, tt.err) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.err)
			continue
		}
		for _, secret := range []string{"1234", panX98, panISO4, "041274EDCBA9876F"} {
			if strings.Contains(strings.ToUpper(err.Error()), secret) {
				t.Errorf("%s: error %q reveals %q", tt.name, err, secret)
			}
		}
	}
}

func TestTranslatePINBlockRoundTripsAndFollowsPayShieldRules(t *testing.T) {
	tpk, zpk, aesKey := tdes(t, testTPK), tdes(t, testZPK), aesBlock(t, aesIK)
	keyFor := func(f PINBlockFormat, tdesKey cipher.Block) cipher.Block {
		if f == ISO4 {
			return aesKey
		}
		return tdesKey
	}
	formats := []PINBlockFormat{ISO0, ISO1, ISO3, ISO4}
	for _, a := range formats {
		for _, b := range formats {
			src, err := EncryptPINBlock(keyFor(a, tpk), a, "24681357", panISO4, nil)
			if err != nil {
				t.Fatal(err)
			}
			mid, err := TranslatePINBlock(keyFor(a, tpk), a, keyFor(b, zpk), b, src, panISO4, nil, nil)
			if a.PANBound() && b == ISO1 {
				if !errors.Is(err, ErrFormatConversion) {
					t.Errorf("%v -> %v: err = %v, want ErrFormatConversion", a, b, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%v -> %v: %v", a, b, err)
			}
			if pin, err := DecryptPINBlock(keyFor(b, zpk), b, mid, panISO4); err != nil || pin != "24681357" {
				t.Errorf("%v -> %v: destination holds %q, %v", a, b, pin, err)
			}
			if a == ISO1 && b.PANBound() {
				continue // the way back to format 1 is the forbidden direction
			}
			back, err := TranslatePINBlock(keyFor(b, zpk), b, keyFor(a, tpk), a, mid, panISO4, nil, nil)
			if err != nil {
				t.Fatalf("%v -> %v -> %v: %v", a, b, a, err)
			}
			if a == ISO0 && !bytes.Equal(back, src) {
				t.Errorf("ISO 0 -> %v -> ISO 0 = %X, want the original %X", b, back, src)
			}
			if pin, err := DecryptPINBlock(keyFor(a, tpk), a, back, panISO4); err != nil || pin != "24681357" {
				t.Errorf("%v -> %v -> %v: PIN %q, %v", a, b, a, pin, err)
			}
		}
	}
}

func TestTranslatePINBlockZeroesOutOnErrorAndRejectsWrongKeys(t *testing.T) {
	tpk, zpk := tdes(t, testTPK), tdes(t, testZPK)
	src, _ := EncryptPINBlock(tpk, ISO0, "1234", panX98, nil)
	out := make([]byte, 16)
	// decrypting under the wrong key fails after the clear block passed through out
	if _, err := TranslatePINBlock(zpk, ISO0, tpk, ISO0, src, panX98, nil, out); !errors.Is(err, ErrPINBlock) {
		t.Fatalf("wrong source key: err = %v", err)
	}
	if !bytes.Equal(out, make([]byte, 16)) {
		t.Errorf("out not zeroed after a failed translation: %X", out)
	}
	if _, err := TranslatePINBlock(tpk, ISO0, aesBlock(t, aesIK), ISO0, src, panX98, nil, out); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("AES destination for ISO 0: err = %v", err)
	}
	if _, err := TranslatePINBlock(tpk, ISO0, zpk, 7, src, panX98, nil, out); !errors.Is(err, ErrPINBlockFormat) {
		t.Errorf("unknown destination format: err = %v", err)
	}
}

func TestTranslateISO0AllocatesNothing(t *testing.T) {
	tpk, zpk := tdes(t, testTPK), tdes(t, testZPK)
	src, _ := EncryptPINBlock(tpk, ISO0, "1234", panX98, nil)
	out := make([]byte, 0, 16)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := TranslatePINBlock(tpk, ISO0, zpk, ISO0, src, panX98, nil, out); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("TranslatePINBlock ISO0 -> ISO0 allocates %v times", n)
	}
}

func TestParsePINBlockFormat(t *testing.T) {
	tests := []struct {
		in   string
		want PINBlockFormat
		code string
	}{
		{"0", ISO0, "01"}, {"01", ISO0, "01"}, {"1", ISO1, "05"}, {"05", ISO1, "05"},
		{"3", ISO3, "47"}, {"47", ISO3, "47"}, {"4", ISO4, "48"}, {"48", ISO4, "48"},
	}
	for _, tt := range tests {
		f, err := ParsePINBlockFormat(tt.in)
		if err != nil || f != tt.want || f.PayShieldCode() != tt.code {
			t.Errorf("ParsePINBlockFormat(%q) = %v (%s), %v", tt.in, f, f.PayShieldCode(), err)
		}
	}
	for _, bad := range []string{"", "2", "02", "34", "iso0"} {
		if _, err := ParsePINBlockFormat(bad); !errors.Is(err, ErrPINBlockFormat) {
			t.Errorf("ParsePINBlockFormat(%q): err = %v", bad, err)
		}
	}
}

func TestPANFromAccountFieldGivesTheSameISO0Block(t *testing.T) {
	pan, err := PANFromAccountField(panX98[len(panX98)-13 : len(panX98)-1])
	if err != nil {
		t.Fatal(err)
	}
	got, _ := EncodePINBlock(ISO0, "1234", pan, nil)
	if upperHex(got) != "041274EDCBA9876F" {
		t.Errorf("block from account field = %X", got)
	}
	if _, err := PANFromAccountField("12345"); !errors.Is(err, ErrPAN) {
		t.Errorf("short account field: err = %v", err)
	}
}

// Any 8 or 16 bytes either decode to a PIN that re-encodes to a block the decoder accepts again, or fail
// with a typed error; nothing panics.
func FuzzDecodePINBlock(f *testing.F) {
	f.Add(hexVec(f, "041274EDCBA9876F"), byte(0))
	f.Add(hexVec(f, "441234AAAAAAAAAA2F69ADDE2E9E7ACE"), byte(4))
	f.Fuzz(func(t *testing.T, block []byte, fb byte) {
		format := []PINBlockFormat{ISO0, ISO1, ISO3, ISO4}[fb%4]
		pin, err := DecodePINBlock(format, block, panX98)
		if err != nil {
			if !errors.Is(err, ErrPINBlock) && !errors.Is(err, ErrPINLength) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		again, err := EncodePINBlock(format, pin, panX98, nil)
		if err != nil {
			t.Fatalf("decoded PIN does not encode: %v", err)
		}
		if format == ISO0 && !bytes.Equal(again, block) {
			t.Fatalf("ISO 0 decode/encode changed the block")
		}
		if back, err := DecodePINBlock(format, again, panX98); err != nil || back != pin {
			t.Fatalf("re-encoded block decodes to %q, %v", back, err)
		}
	})
}
