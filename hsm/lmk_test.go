package hsm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Keys from the published vectors of reference/hsm.md (the only literal keys allowed in tests).
const (
	swKeyA   = "0123456789ABCDEFFEDCBA9876543210" // X9.24-1 A.4 BDK; KCV 08D7B4
	swKeyB   = "70F2A84CCBC2AE8625CBB0F2C22AB923" // CSDN TMK
	swKeyAES = "FEDCBA9876543210F1F1F1F1F1F1F1F1" // X9.24-3 AES-128 BDK
)

func swHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newTestLMK(t testing.TB) *LMK {
	t.Helper()
	l, _, err := GenerateLMK(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLMKWrapUnwrapReturnsTheSameKeyAndSpec(t *testing.T) {
	l := newTestLMK(t)
	for _, tc := range []struct {
		name string
		spec Spec
		key  string
	}{
		{"single TDES TAK", Spec{KeyTAK, AlgTDES, 8}, swKeyA[:16]},
		{"double TDES ZPK", Spec{KeyZPK, AlgTDES, 16}, swKeyA},
		{"triple TDES ZMK", Spec{KeyZMK, AlgTDES, 24}, swKeyA + swKeyA[:16]},
		{"AES-128 BDK", Spec{KeyBDK, AlgAES, 16}, swKeyAES},
		{"AES-256 DEK", Spec{KeyDEK, AlgAES, 32}, swKeyAES + swKeyB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := l.Wrap(tc.spec, swHex(t, tc.key), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(c, tc.key) {
				t.Fatal("cryptogram contains the clear key")
			}
			n, err := CryptogramLen(c + "trailing")
			if err != nil || n != len(c) {
				t.Fatalf("CryptogramLen = %d, %v; want %d", n, err, len(c))
			}
			spec, k, err := l.Unwrap(c)
			if err != nil {
				t.Fatal(err)
			}
			if spec != tc.spec || !strings.EqualFold(hex.EncodeToString(k), tc.key) {
				t.Fatalf("Unwrap = %+v; want %+v and the same key", spec, tc.spec)
			}
		})
	}
}

func TestLMKUnwrapRefusesAlteredCryptogramsAndOtherLMKs(t *testing.T) {
	l := newTestLMK(t)
	c, err := l.Wrap(Spec{KeyTAK, AlgTDES, 16}, swHex(t, swKeyA), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	retyped := c[:3] + "4" + c[4:] // header byte 1: type TAK (5) -> ZPK (4)
	for _, tc := range []struct {
		name string
		lmk  *LMK
		c    string
	}{
		{"type relabelled in the header", l, retyped},
		{"ciphertext bit flipped", l, c[:len(c)-1] + string("0123456789ABCDEF"[(strings.IndexByte("0123456789ABCDEF", c[len(c)-1])+1)%16])},
		{"truncated", l, c[:len(c)-2]},
		{"not hex", l, "R01050210ZZ"},
		{"payShield variant form", l, "U" + swKeyA},
		{"another LMK", newTestLMK(t), c},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := tc.lmk.Unwrap(tc.c); !errors.Is(err, ErrCryptogram) {
				t.Fatalf("Unwrap error = %v; want ErrCryptogram", err)
			}
		})
	}
}

func TestCryptogramLenCutsEveryKeyForm(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		bad  bool
	}{
		{in: "U" + swKeyA + "XYZ", want: 33},
		{in: "X" + swKeyA, want: 33},
		{in: "T" + swKeyA + swKeyA[:16], want: 49},
		{in: "Z" + swKeyA[:16], want: 17},
		{in: swKeyA, want: 16},
		{in: "S10096P0TE00E0000", want: 97},
		{in: "S1X96", bad: true},
		{in: "Q123", bad: true},
		{in: "", bad: true},
	} {
		n, err := CryptogramLen(tc.in)
		if tc.bad != (err != nil) || !tc.bad && n != tc.want {
			t.Errorf("CryptogramLen(%.8q...) = %d, %v; want %d (error %v)", tc.in, n, err, tc.want, tc.bad)
		}
	}
}

func TestLMKCheckValueIdentifiesTheKey(t *testing.T) {
	a, hexA, err := GenerateLMK(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseLMK(hexA)
	if err != nil {
		t.Fatal(err)
	}
	if a.CheckValue() != again.CheckValue() || len(a.CheckValue()) != 16 {
		t.Fatalf("check values %s and %s differ for one key", a.CheckValue(), again.CheckValue())
	}
	if b := newTestLMK(t); b.CheckValue() == a.CheckValue() {
		t.Fatal("two LMKs share a check value")
	}
	if strings.Contains(a.String(), hexA) {
		t.Fatal("LMK.String shows the key")
	}
}

func TestLoadLMKFindsFileThenEnvironment(t *testing.T) {
	dir := t.TempDir()
	_, hexKey, err := GenerateLMK(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ParseLMK(hexKey)
	file := filepath.Join(dir, "lmk")
	if err := WriteLMKFile(file, hexKey); err != nil {
		t.Fatal(err)
	}
	if err := WriteLMKFile(file, hexKey); err == nil {
		t.Fatal("WriteLMKFile overwrote an existing file")
	}
	fi, _ := os.Stat(file)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("LMK file mode %v; want 0600", fi.Mode().Perm())
	}
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte(hexKey), 0o644)

	t.Setenv(EnvLMK, "")
	t.Setenv(EnvLMKFile, "")
	for _, tc := range []struct {
		name, path, env, envFile string
		ok                       bool
	}{
		{name: "explicit file", path: file, ok: true},
		{name: "SWITCH_LMK", env: hexKey, ok: true},
		{name: "SWITCH_LMK_FILE", envFile: file, ok: true},
		{name: "nothing configured"},
		{name: "file readable by others", path: loose},
		{name: "SWITCH_LMK too short", env: hexKey[:32]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvLMK, tc.env)
			t.Setenv(EnvLMKFile, tc.envFile)
			l, err := LoadLMK(tc.path)
			if tc.ok != (err == nil) {
				t.Fatalf("LoadLMK error = %v; want ok=%v", err, tc.ok)
			}
			if err != nil && strings.Contains(err.Error(), hexKey[:16]) {
				t.Fatal("error shows key material")
			}
			if tc.ok && l.CheckValue() != want.CheckValue() {
				t.Fatal("loaded another LMK")
			}
		})
	}
}

// FuzzUnwrap feeds arbitrary text to the cryptogram decoders: errors, never panics, and never a key from
// anything but a real cryptogram.
func FuzzUnwrap(f *testing.F) {
	l := newTestLMK(f)
	c, err := l.Wrap(Spec{KeyZPK, AlgTDES, 16}, swHex(f, swKeyA), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{c, "U" + swKeyA, "S1009", "R01", "R0104FF", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := CryptogramLen(s); err == nil && n <= 0 {
			t.Fatalf("CryptogramLen(%q) = %d", s, n)
		}
		if _, _, err := l.Unwrap(s); err == nil && !strings.EqualFold(s, c) {
			t.Fatalf("Unwrap accepted %q", s)
		}
	})
}
