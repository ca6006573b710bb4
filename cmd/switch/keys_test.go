package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/railswitch/railswitch/hsm"
)

// Published keys (reference/hsm.md), used as ceremony components.
const (
	keysCompA = "0123456789ABCDEFFEDCBA9876543210"
	keysCompB = "70F2A84CCBC2AE8625CBB0F2C22AB923"
)

// ceremonyZMK is the key formed from the two components: their XOR with odd parity set.
func ceremonyZMK() []byte {
	a, _ := hex.DecodeString(keysCompA)
	b, _ := hex.DecodeString(keysCompB)
	for i := range a {
		a[i] ^= b[i]
	}
	hsm.FixParity(a)
	return a
}

func kcvHex(t *testing.T, key []byte) string {
	t.Helper()
	kcv, err := hsm.KCV(key, false, 3)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToUpper(hex.EncodeToString(kcv))
}

func listKeys(t *testing.T, store string) []keyListing {
	t.Helper()
	out, err := runCmd(newKeysCmd(), "", "list", "--keystore", store, "--json")
	if err != nil {
		t.Fatalf("keys list: %v\n%s", err, out)
	}
	var v struct{ Keys []keyListing }
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("keys list --json: %v\n%s", err, out)
	}
	return v.Keys
}

func TestKeysCeremonyInitImportListRotate(t *testing.T) {
	dir := t.TempDir()
	store, lmk := filepath.Join(dir, "keys.json"), filepath.Join(dir, "lmk.key")
	t.Setenv(hsm.EnvLMK, "")
	t.Setenv(hsm.EnvLMKFile, "")

	out, err := runCmd(newKeysCmd(), "", "init", "--keystore", store)
	if err != nil {
		t.Fatalf("keys init: %v\n%s", err, out)
	}
	if fi, err := os.Stat(lmk); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("LMK file: %v, %v", fi, err)
	}
	if _, err := runCmd(newKeysCmd(), "", "init", "--keystore", store); err == nil {
		t.Fatal("keys init overwrote an existing store")
	}

	zmk := ceremonyZMK()
	zmkKCV := kcvHex(t, zmk)
	// Two components, the second from standard input, with component check values.
	out, err = runCmd(newKeysCmd(), keysCompB+"\n", "import", "--keystore", store, "--lmk-file", lmk,
		"--name", "acq/ccb/zmk", "--type", "zmk", "--component", keysCompA, "--component", "-",
		"--component-kcv", kcvHex(t, keysUnhex(keysCompA)), "--component-kcv", kcvHex(t, keysUnhex(keysCompB)), "--kcv", zmkKCV)
	if err != nil || !strings.Contains(out, zmkKCV) {
		t.Fatalf("keys import (components): %v\n%s", err, out)
	}
	// A ZPK received from the bank under that ZMK, via $SWITCH_LMK_FILE.
	t.Setenv(hsm.EnvLMKFile, lmk)
	zpk := keysUnhex(keysCompB)
	zmkCipher, _ := hsm.NewTDESCipher(zmk)
	enc := make([]byte, 16)
	hsm.EncryptECB(zmkCipher, enc, zpk)
	for range 2 {
		out, err = runCmd(newKeysCmd(), "", "import", "--keystore", store, "--name", "acq/ccb/zpk", "--type", "ZPK",
			"--under", "acq/ccb/zmk", "--key", hex.EncodeToString(enc), "--kcv", kcvHex(t, zpk))
		if err != nil {
			t.Fatalf("keys import --under: %v\n%s", err, out)
		}
	}

	before := listKeys(t, store)
	want := []keyListing{
		{"acq/ccb/zmk", 1, "ZMK", "TDES", 128, zmkKCV},
		{"acq/ccb/zpk", 1, "ZPK", "TDES", 128, kcvHex(t, zpk)},
		{"acq/ccb/zpk", 2, "ZPK", "TDES", 128, kcvHex(t, zpk)},
	}
	if len(before) != len(want) {
		t.Fatalf("keys list: %+v; want %+v", before, want)
	}
	for i := range want {
		if before[i] != want[i] {
			t.Fatalf("keys list row %d: %+v; want %+v", i, before[i], want[i])
		}
	}
	text, _ := runCmd(newKeysCmd(), "", "list", "--keystore", store)
	file, _ := os.ReadFile(store)
	for _, secret := range []string{keysCompA, keysCompB, strings.ToUpper(hex.EncodeToString(zmk))} {
		if strings.Contains(strings.ToUpper(text+out+string(file)), secret) {
			t.Fatal("a clear key or component shows in the output or the store file")
		}
	}

	newLMK := filepath.Join(dir, "lmk2.key")
	out, err = runCmd(newKeysCmd(), "", "rotate-lmk", "--keystore", store, "--lmk-file", lmk, "--new-lmk-file", newLMK)
	if err != nil {
		t.Fatalf("keys rotate-lmk: %v\n%s", err, out)
	}
	after := listKeys(t, store)
	for i := range before {
		if after[i] != before[i] {
			t.Fatalf("after rotation %+v; before %+v", after[i], before[i])
		}
	}
	// The old LMK no longer opens the store; the new one does.
	_, err = runCmd(newKeysCmd(), "", "import", "--keystore", store, "--lmk-file", lmk, "--name", "x", "--type", "ZPK",
		"--under", "acq/ccb/zmk", "--key", hex.EncodeToString(enc), "--kcv", kcvHex(t, zpk))
	if !errors.Is(err, hsm.ErrWrongLMK) {
		t.Fatalf("import with the old LMK after rotation: %v; want ErrWrongLMK", err)
	}
	if out, err := runCmd(newKeysCmd(), "", "import", "--keystore", store, "--lmk-file", newLMK, "--name", "x", "--type", "ZPK",
		"--under", "acq/ccb/zmk", "--key", hex.EncodeToString(enc), "--kcv", kcvHex(t, zpk)); err != nil {
		t.Fatalf("import with the new LMK: %v\n%s", err, out)
	}
}

func TestKeysImportRefusesBadCeremonies(t *testing.T) {
	dir := t.TempDir()
	store, lmk := filepath.Join(dir, "keys.json"), filepath.Join(dir, "lmk.key")
	if out, err := runCmd(newKeysCmd(), "", "init", "--keystore", store); err != nil {
		t.Fatalf("keys init: %v\n%s", err, out)
	}
	even := []byte(keysUnhex(keysCompA))
	even[0] ^= 1
	good := kcvHex(t, ceremonyZMK())
	for _, tc := range []struct {
		name string
		args []string
		want error
	}{
		{"wrong check value", []string{"--component", keysCompA, "--component", keysCompB, "--kcv", "000000"}, hsm.ErrKCV},
		{"component with even parity", []string{"--component", hex.EncodeToString(even), "--component", keysCompB, "--kcv", good}, hsm.ErrParity},
		{"one component", []string{"--component", keysCompA, "--kcv", good}, hsm.ErrComponents},
		{"wrong component check value", []string{"--component", keysCompA, "--component", keysCompB, "--component-kcv", "000000", "--component-kcv", "000000", "--kcv", good}, hsm.ErrKCV},
		{"unknown ZMK", []string{"--under", "acq/none/zmk", "--key", keysCompA, "--kcv", good}, hsm.ErrKeyNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"import", "--keystore", store, "--lmk-file", lmk, "--name", "acq/ccb/zmk", "--type", "ZMK"}, tc.args...)
			out, err := runCmd(newKeysCmd(), "", args...)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v; want %v\n%s", err, tc.want, out)
			}
			if strings.Contains(strings.ToUpper(err.Error()), keysCompA) {
				t.Fatal("the error shows a component")
			}
		})
	}
	if keys := listKeys(t, store); len(keys) != 0 {
		t.Fatalf("refused imports left keys: %+v", keys)
	}
}

func keysUnhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
