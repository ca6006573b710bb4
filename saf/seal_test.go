package saf

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
)

// plainSealer stores messages as they are: the negative control of the at-rest scan.
type plainSealer struct{}

func (plainSealer) Seal(p []byte) ([]byte, error) { return append([]byte(nil), p...), nil }
func (plainSealer) Open(s []byte) ([]byte, error) { return append([]byte(nil), s...), nil }

// panForms are the test PAN as ASCII, as hex text, and packed BCD (left and right aligned).
func panForms() map[string][]byte {
	left, _ := hex.DecodeString(testPAN + "0")
	right, _ := hex.DecodeString("0" + testPAN)
	return map[string][]byte{
		"ASCII":           []byte(testPAN),
		"hex of ASCII":    []byte(hex.EncodeToString([]byte(testPAN))),
		"BCD left":        left[:6],
		"BCD right":       right[1:],
		"hex of BCD text": []byte(hex.EncodeToString(left[:6])),
	}
}

func TestMessagesEncryptedAtRest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sealer Sealer
		leaks  bool
	}{
		{"AES-256-GCM", nil, false},
		{"plain sealer (control: the scan finds the PAN)", plainSealer{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clock := newClock()
			clock.gate = make(chan struct{}) // keep entries on disk
			for _, specName := range []string{"iso87-ascii", "iso87-binary"} {
				spec := testSpec(t, specName)
				q := openQueue(t, dir, newSender(t, spec, func(string, int) (string, error) { return "", errNoAnswer }),
					clock, Policy{}, func(c *Config) {
						if tc.sealer != nil {
							c.Sealer = tc.sealer
						}
						c.Spec = func(string) *codec.Spec { return spec }
					})
				if err := q.Enqueue(context.Background(), specName, "", "t1", packed(t, spec, "0420", "000001")); err != nil {
					t.Fatal(err)
				}
				if err := q.Enqueue(context.Background(), specName, "", "t2", packed(t, spec, "0220", "000002")); err != nil {
					t.Fatal(err)
				}
				if err := q.Close(); err != nil {
					t.Fatal(err)
				}
			}
			files, _ := filepath.Glob(filepath.Join(dir, "*"))
			if len(files) != 2 {
				t.Fatalf("files %v, want one log per acquirer", files)
			}
			var found []string
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				// The raw bytes, and each stored message as decoded from its record (JSON holds it in base64).
				blobs := [][]byte{data}
				entries, _, err := replay(f)
				if err != nil || len(entries) != 2 {
					t.Fatalf("replay %s: %d entries, %v", f, len(entries), err)
				}
				for _, e := range entries {
					blobs = append(blobs, e.Sealed)
				}
				for form, b := range panForms() {
					for _, blob := range blobs {
						if bytes.Contains(blob, b) {
							found = append(found, fmt.Sprintf("%s in %s", form, filepath.Base(f)))
						}
					}
				}
			}
			if leaks := len(found) > 0; leaks != tc.leaks {
				t.Errorf("PAN found in queue files: %v; want found=%t", found, tc.leaks)
			}
		})
	}
}

func TestAESGCMSealer(t *testing.T) {
	s, err := NewAESGCM(testKey)
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("0420 reversal body")
	a, _ := s.Seal(plain)
	b, _ := s.Seal(plain)
	if bytes.Equal(a, b) {
		t.Error("two seals of one message are equal: the nonce is not fresh")
	}
	if got, err := s.Open(a); err != nil || !bytes.Equal(got, plain) {
		t.Errorf("Open(Seal(p)) = %q, %v", got, err)
	}
	other, _ := NewAESGCM(bytes.Repeat([]byte{7}, 32))
	damaged := append([]byte(nil), a...)
	damaged[len(damaged)-1] ^= 1
	for name, tc := range map[string]struct {
		s      Sealer
		sealed []byte
	}{"wrong key": {other, a}, "damaged": {s, damaged}, "short": {s, a[:10]}} {
		if _, err := tc.s.Open(tc.sealed); err != ErrOpen {
			t.Errorf("%s: Open error %v, want ErrOpen", name, err)
		}
	}
	if _, err := NewAESGCM(testKey[:16]); err == nil {
		t.Error("a 16-byte key was accepted for AES-256")
	}
}

func TestKeyFromModuleIsStablePerDEK(t *testing.T) {
	lmk, err := hsm.NewLMK(bytes.Repeat([]byte{0x11, 0x22}, 16))
	if err != nil {
		t.Fatal(err)
	}
	sw := hsm.NewSoftware(lmk, nil)
	ctx := context.Background()
	gen := func(typ hsm.KeyType) hsm.Key {
		k, err := sw.GenerateKey(ctx, hsm.GenerateKeyRequest{Name: "saf", Spec: hsm.Spec{Type: typ, Algorithm: hsm.AlgTDES, Length: 16}})
		if err != nil {
			t.Fatal(err)
		}
		return k.Key
	}
	dek1, dek2 := gen(hsm.KeyDEK), gen(hsm.KeyDEK)
	a, err := KeyFromModule(ctx, sw, dek1)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := KeyFromModule(ctx, sw, dek1)
	other, _ := KeyFromModule(ctx, sw, dek2)
	if len(a) != 32 || !bytes.Equal(a, again) || bytes.Equal(a, other) {
		t.Errorf("keys %x / %x / %x: want 32 bytes, the same for one DEK, another for another DEK", a, again, other)
	}
	if _, err := KeyFromModule(ctx, sw, gen(hsm.KeyZPK)); err == nil {
		t.Error("a PIN key was accepted as the queue's DEK")
	}
}
