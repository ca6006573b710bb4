package saf

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/railswitch/railswitch/hsm"
)

// Sealer encrypts queued messages at rest. Open must undo Seal; a Sealer is safe for concurrent use.
type Sealer interface {
	Seal(plain []byte) ([]byte, error)
	Open(sealed []byte) ([]byte, error)
}

// sealVersion starts every AES-GCM sealed message, so the format can change later (key rotation).
const sealVersion = 1

// ErrOpen means a sealed message could not be opened: wrong key, or damaged data.
var ErrOpen = errors.New("saf: cannot open sealed message")

// AESGCM seals with AES-256-GCM: a version byte, a random 12-byte nonce per message, then the ciphertext and
// its tag. The switch derives its 32-byte key from a data-encryption key in the security module (or the LMK
// file); the key never goes into the queue's files.
type AESGCM struct {
	aead cipher.AEAD
	rand io.Reader
}

// NewAESGCM returns a sealer for a 32-byte key. The key is copied into the cipher; the caller may wipe it.
func NewAESGCM(key []byte) (*AESGCM, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("saf: AES-256-GCM needs a 32-byte key, got %d bytes", len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &AESGCM{aead: aead, rand: rand.Reader}, nil
}

// Seal encrypts plain under a fresh random nonce.
func (s *AESGCM) Seal(plain []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := io.ReadFull(s.rand, out[1:]); err != nil {
		return nil, fmt.Errorf("saf: nonce: %w", err)
	}
	return s.aead.Seal(out, out[1:], plain, out[:1]), nil
}

// Open decrypts what Seal produced; it fails with ErrOpen on a wrong key or damaged data.
func (s *AESGCM) Open(sealed []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, ErrOpen
	}
	plain, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], sealed[:1])
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

// keyLabel names what the derived key is for; a new label gives a new key.
const keyLabel = "railswitch/saf/v1"

// KeyFromModule derives the queue's 32-byte sealing key from a data-encryption key (DEK) held by the security
// module, so the clear key is never configured or stored: it is SHA-256 of the label and of the label's
// digest encrypted under the DEK (ECB). Every node with the same DEK derives the same key, so a survivor can
// open a dead node's entries. The caller wipes the key once NewAESGCM has it.
func KeyFromModule(ctx context.Context, m hsm.Module, dek hsm.Key) ([]byte, error) {
	block := sha256.Sum256([]byte(keyLabel))
	enc, err := m.Encrypt(ctx, hsm.DataRequest{Key: dek, Mode: hsm.DataECB, Data: block[:]})
	if err != nil {
		return nil, fmt.Errorf("saf: deriving the queue key: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(keyLabel))
	h.Write(enc)
	clear(enc)
	return h.Sum(nil), nil
}
