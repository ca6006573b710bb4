package hsm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newTestStore(t *testing.T, lmk *LMK) *KeyStore {
	t.Helper()
	s, err := CreateKeyStore(filepath.Join(t.TempDir(), "keys.json"), lmk.CheckValue())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestKeyStoreKeepsEveryVersionAcrossReopen(t *testing.T) {
	lmk := newTestLMK(t)
	s := newTestStore(t, lmk)
	sw := NewSoftware(lmk, nil)
	ctx := context.Background()
	var made []Key
	for range 3 {
		g, err := sw.GenerateKey(ctx, GenerateKeyRequest{Name: "acq/ccb/zpk", Spec: Spec{KeyZPK, AlgTDES, 16}})
		if err != nil {
			t.Fatal(err)
		}
		k, err := s.Put(g.Key)
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, k)
	}
	if _, err := s.Put(Key{Name: "acq/ccb/zak", Type: KeyZAK, Algorithm: AlgTDES, Length: 16, Cryptogram: made[0].Cryptogram, KCV: "000000"}); err != nil {
		t.Fatal(err)
	}

	r, err := OpenKeyStore(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if r.Version() != 5 { // created + 4 saves
		t.Fatalf("store version %d; want 5", r.Version())
	}
	latest, err := r.Get("acq/ccb/zpk")
	if err != nil || latest.Version != 3 || latest.Cryptogram != made[2].Cryptogram {
		t.Fatalf("Get = v%d, %v; want version 3", latest.Version, err)
	}
	for i, want := range made {
		k, err := r.GetVersion("acq/ccb/zpk", i+1)
		if err != nil || k != want {
			t.Fatalf("GetVersion(%d) = %v, %v; want %v", i+1, k, err, want)
		}
	}
	if _, err := r.GetVersion("acq/ccb/zpk", 4); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("missing version: %v; want ErrKeyNotFound", err)
	}
	if _, err := r.Get("acq/icbc/zpk"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("missing name: %v; want ErrKeyNotFound", err)
	}
	if n := len(r.List()); n != 4 {
		t.Fatalf("List has %d keys; want 4", n)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(s.Path()), ".*tmp*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}
}

func TestKeyStoreFileHoldsNoClearKey(t *testing.T) {
	lmk := newTestLMK(t)
	s := newTestStore(t, lmk)
	sw := NewSoftware(lmk, nil)
	k, err := sw.ImportComponents(context.Background(), ComponentsRequest{
		Name: "zone/zmk", Spec: Spec{KeyZMK, AlgTDES, 16},
		Components: []Component{{Value: swHex(t, swKeyA)}, {Value: swHex(t, swKeyB)}},
		KCV:        kcvOf(t, xorHex(t, swKeyA, swKeyB)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(k); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(s.Path())
	clearHex := strings.ToUpper(xorHex(t, swKeyA, swKeyB))
	if strings.Contains(strings.ToUpper(string(b)), clearHex) {
		t.Fatal("key store file contains the clear key")
	}
	if fi, _ := os.Stat(s.Path()); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key store mode %v; want 0600", fi.Mode().Perm())
	}
}

func TestKeyStoreRefusesBadNamesAndExistingFiles(t *testing.T) {
	lmk := newTestLMK(t)
	s := newTestStore(t, lmk)
	for _, name := range []string{"", "a//b", "/a", "a/", "term/1 2", strings.Repeat("x", 129)} {
		if _, err := s.Put(Key{Name: name, Type: KeyZPK, Algorithm: AlgTDES, Length: 16, Cryptogram: "R00"}); err == nil {
			t.Errorf("Put accepted name %q", name)
		}
	}
	if _, err := CreateKeyStore(s.Path(), lmk.CheckValue()); err == nil {
		t.Fatal("CreateKeyStore overwrote an existing store")
	}
}

func TestKeyStoreCheckLMKRefusesAnotherLMK(t *testing.T) {
	lmk := newTestLMK(t)
	s := newTestStore(t, lmk)
	if err := s.CheckLMK(lmk.CheckValue()); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckLMK(newTestLMK(t).CheckValue()); !errors.Is(err, ErrWrongLMK) {
		t.Fatalf("CheckLMK with another LMK: %v; want ErrWrongLMK", err)
	}
}

func TestKeyStoreRotateLMKKeepsEveryCheckValue(t *testing.T) {
	oldLMK, newLMK := newTestLMK(t), newTestLMK(t)
	s := newTestStore(t, oldLMK)
	sw := NewSoftware(oldLMK, nil)
	ctx := context.Background()
	for _, spec := range []Spec{{KeyZPK, AlgTDES, 16}, {KeyTAK, AlgTDES, 8}, {KeyZMK, AlgTDES, 24}, {KeyDEK, AlgAES, 32}, {KeyBDK, AlgAES, 16}} {
		for range 2 {
			g, err := sw.GenerateKey(ctx, GenerateKeyRequest{Name: "k/" + spec.Type.String(), Spec: spec})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Put(g.Key); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := s.List()
	if err := s.RotateLMK(newLMK, newLMK, nil); !errors.Is(err, ErrWrongLMK) {
		t.Fatalf("rotation from the wrong old LMK: %v; want ErrWrongLMK", err)
	}
	if err := s.RotateLMK(oldLMK, newLMK, nil); err != nil {
		t.Fatal(err)
	}
	r, err := OpenKeyStore(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CheckLMK(newLMK.CheckValue()); err != nil {
		t.Fatal(err)
	}
	after := r.List()
	if len(after) != len(before) {
		t.Fatalf("%d keys after rotation; want %d", len(after), len(before))
	}
	swNew := NewSoftware(newLMK, nil)
	for i, k := range after {
		b := before[i]
		if k.Name != b.Name || k.Version != b.Version || k.KCV != b.KCV || k.Cryptogram == b.Cryptogram {
			t.Fatalf("key %d: %v after rotation, %v before", i, k, b)
		}
		kcv, err := swNew.KeyCheckValue(ctx, k)
		if err != nil || kcv != b.KCV {
			t.Fatalf("%v under the new LMK: check value %s, %v; want %s", k, kcv, err, b.KCV)
		}
		if _, err := sw.KeyCheckValue(ctx, Key{Name: k.Name, Cryptogram: k.Cryptogram}); !errors.Is(err, ErrCryptogram) {
			t.Fatalf("old LMK still opens the rotated %v: %v", k, err)
		}
	}
}
