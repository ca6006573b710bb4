package hsm

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Environment variables that hold the local master key; the LMK never comes from the YAML configuration.
const (
	EnvLMK     = "SWITCH_LMK"      // the LMK itself, 64 hex digits
	EnvLMKFile = "SWITCH_LMK_FILE" // path of a file holding the LMK as 64 hex digits
)

// LMKLength is the length of a local master key: AES-256.
const LMKLength = 32

// Layout of a key cryptogram under the LMK ("R" form, see docs/hsm.md): the letter R, then hex of
// header(4) || nonce(12) || AES-256-GCM(clear key) || tag(16). The header is authenticated, so a key's type,
// algorithm and length cannot be changed without the LMK.
const (
	cryptogramPrefix  = 'R'
	cryptogramVersion = 1
	cryptogramHeader  = 4
	cryptogramNonce   = 12
	cryptogramTag     = 16
)

// LMK is the local master key of the software module: an AES-256 key under which every other key is kept.
// It lives only in memory; LMK.String never shows it.
type LMK struct {
	aead  cipher.AEAD
	check string
}

// NewLMK returns the LMK for a 32-byte key. The key slice is not retained.
func NewLMK(key []byte) (*LMK, error) {
	if len(key) != LMKLength {
		return nil, fmt.Errorf("%w: LMK of %d bytes (want %d)", ErrKeyLength, len(key), LMKLength)
	}
	// Key wrapping uses a key derived for that one purpose, so the LMK can later serve other purposes too.
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("railswitch hsm key wrapping v1"))
	wrapKey := mac.Sum(nil)
	block, err := aes.NewCipher(wrapKey)
	clear(wrapKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	check, err := KCV(key, true, 8)
	if err != nil {
		return nil, err
	}
	return &LMK{aead: aead, check: strings.ToUpper(hex.EncodeToString(check))}, nil
}

// GenerateLMK returns a new random LMK and its 64 hex digits (to be written to a 0600 file by the caller).
func GenerateLMK(rnd io.Reader) (*LMK, string, error) {
	key := make([]byte, LMKLength)
	defer clear(key)
	if _, err := io.ReadFull(rnd, key); err != nil {
		return nil, "", fmt.Errorf("hsm: generate LMK: %w", err)
	}
	l, err := NewLMK(key)
	if err != nil {
		return nil, "", err
	}
	return l, strings.ToUpper(hex.EncodeToString(key)), nil
}

// ParseLMK reads an LMK written as 64 hex digits (surrounding space ignored).
func ParseLMK(text string) (*LMK, error) {
	key, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return nil, errors.New("hsm: LMK is not hex")
	}
	defer clear(key)
	return NewLMK(key)
}

// LoadLMKFile reads an LMK from a file of 64 hex digits. It refuses a file that others can read.
func LoadLMKFile(path string) (*LMK, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("hsm: LMK file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("hsm: LMK file %s has mode %v; it must be readable by its owner only (chmod 600)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("hsm: LMK file: %w", err)
	}
	defer clear(b)
	l, err := ParseLMK(string(b))
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return l, nil
}

// LoadLMK finds the LMK: the file named by path when not empty, else $SWITCH_LMK, else the file named by
// $SWITCH_LMK_FILE.
func LoadLMK(path string) (*LMK, error) {
	if path != "" {
		return LoadLMKFile(path)
	}
	if v := os.Getenv(EnvLMK); v != "" {
		l, err := ParseLMK(v)
		if err != nil {
			return nil, fmt.Errorf("%w (from $%s)", err, EnvLMK)
		}
		return l, nil
	}
	if p := os.Getenv(EnvLMKFile); p != "" {
		return LoadLMKFile(p)
	}
	return nil, fmt.Errorf("hsm: no local master key: set $%s or $%s, or give an LMK file", EnvLMK, EnvLMKFile)
}

// WriteLMKFile writes an LMK's hex digits to a new file with mode 0600; it refuses to overwrite a file.
func WriteLMKFile(path, hexKey string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("hsm: write LMK file: %w", err)
	}
	if _, err = f.WriteString(hexKey + "\n"); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("hsm: write LMK file: %w", err)
	}
	return nil
}

// CheckValue identifies the LMK without revealing it: 16 hex digits (AES-CMAC check value, 8 bytes). The key
// store records it, so a store is never opened with another LMK; payShield's NC shows the same kind of value.
func (l *LMK) CheckValue() string { return l.check }

// String shows the check value only.
func (l *LMK) String() string { return "LMK(" + l.check + ")" }

// Wrap encrypts a clear key of the given spec under the LMK and returns its cryptogram ("R" form). rnd
// supplies the nonce; nil means crypto/rand.
func (l *LMK) Wrap(s Spec, clearKey []byte, rnd io.Reader) (string, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	if len(clearKey) != s.Length {
		return "", fmt.Errorf("%w: %d bytes for a %d-byte key", ErrKeyLength, len(clearKey), s.Length)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	n := cryptogramHeader + cryptogramNonce
	buf := make([]byte, n, n+len(clearKey)+cryptogramTag)
	buf[0], buf[1], buf[2], buf[3] = cryptogramVersion, byte(s.Type), byte(s.Algorithm), byte(s.Length)
	if _, err := io.ReadFull(rnd, buf[cryptogramHeader:n]); err != nil {
		return "", fmt.Errorf("hsm: wrap key: %w", err)
	}
	buf = l.aead.Seal(buf, buf[cryptogramHeader:n], clearKey, buf[:cryptogramHeader])
	return string(cryptogramPrefix) + strings.ToUpper(hex.EncodeToString(buf)), nil
}

// Unwrap opens a cryptogram made by Wrap under this LMK and returns the key's spec and clear value. The
// caller clears the returned key when done with it.
func (l *LMK) Unwrap(cryptogram string) (Spec, []byte, error) {
	if len(cryptogram) < 1+2*cryptogramHeader || cryptogram[0] != cryptogramPrefix {
		return Spec{}, nil, ErrCryptogram
	}
	raw, err := hex.DecodeString(cryptogram[1:])
	if err != nil || len(raw) < cryptogramHeader+cryptogramNonce+cryptogramTag || raw[0] != cryptogramVersion {
		return Spec{}, nil, ErrCryptogram
	}
	s := Spec{Type: KeyType(raw[1]), Algorithm: Algorithm(raw[2]), Length: int(raw[3])}
	if s.Validate() != nil || len(raw) != cryptogramHeader+cryptogramNonce+s.Length+cryptogramTag {
		return Spec{}, nil, ErrCryptogram
	}
	n := cryptogramHeader + cryptogramNonce
	clearKey, err := l.aead.Open(nil, raw[cryptogramHeader:n], raw[n:], raw[:cryptogramHeader])
	if err != nil {
		return Spec{}, nil, ErrCryptogram
	}
	return s, clearKey, nil
}

// CryptogramLen returns the number of characters of the LMK cryptogram that starts s: the "R" form of this
// module, payShield variant and X9.17 forms (Z/U/T/X/Y prefixes, or 16 hex digits unprefixed) and Thales key
// blocks ("S" + version + 4-digit length). It lets protocol code cut key fields out of a message.
func CryptogramLen(s string) (int, error) {
	if s == "" {
		return 0, ErrCryptogram
	}
	switch s[0] {
	case cryptogramPrefix:
		if len(s) < 1+2*cryptogramHeader {
			return 0, ErrCryptogram
		}
		h, err := hex.DecodeString(s[1 : 1+2*cryptogramHeader])
		if err != nil {
			return 0, ErrCryptogram
		}
		return 1 + 2*(cryptogramHeader+cryptogramNonce+int(h[3])+cryptogramTag), nil
	case 'Z':
		return 17, nil
	case 'U', 'X':
		return 33, nil
	case 'T', 'Y':
		return 49, nil
	case 'S':
		if len(s) < 6 {
			return 0, ErrCryptogram
		}
		var n int
		for _, c := range s[2:6] {
			if c < '0' || c > '9' {
				return 0, ErrCryptogram
			}
			n = n*10 + int(c-'0')
		}
		return 1 + n, nil
	}
	if isHex(s[0]) {
		return 16, nil
	}
	return 0, ErrCryptogram
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f' }
