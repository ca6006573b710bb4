package hsm

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// KeyType is what a key is for. The security module enforces it: a key is used only for the operations its
// type allows (a MAC key cannot decrypt a PIN block), and the type is bound into the key's LMK cryptogram.
type KeyType uint8

// Key types, named as in payShield. Terminal keys start with T, zone (bank link) keys with Z.
const (
	KeyZMK KeyType = iota + 1 // zone master key: wraps keys exchanged with a bank
	KeyTMK                    // terminal master key: wraps the working keys sent at sign-on
	KeyTPK                    // terminal PIN key (UnionPay PIK)
	KeyZPK                    // zone PIN key
	KeyTAK                    // terminal MAC key (UnionPay MAK)
	KeyZAK                    // zone MAC key
	KeyTDK                    // terminal data key: track data (UnionPay TDK)
	KeyDEK                    // data encryption key: records at rest, zone data (payShield ZEK)
	KeyBDK                    // DUKPT base derivation key
)

var keyTypeNames = [...]string{
	KeyZMK: "ZMK", KeyTMK: "TMK", KeyTPK: "TPK", KeyZPK: "ZPK", KeyTAK: "TAK",
	KeyZAK: "ZAK", KeyTDK: "TDK", KeyDEK: "DEK", KeyBDK: "BDK",
}

// String returns the type's short name (ZPK, TAK, ...).
func (t KeyType) String() string {
	if t.Valid() {
		return keyTypeNames[t]
	}
	return fmt.Sprintf("KeyType(%d)", uint8(t))
}

// Valid reports whether t is one of the defined key types.
func (t KeyType) Valid() bool { return t >= KeyZMK && t <= KeyBDK }

// ParseKeyType reads a key type name such as "zpk" or "TAK" (case-insensitive).
func ParseKeyType(s string) (KeyType, error) {
	for t := KeyZMK; t <= KeyBDK; t++ {
		if strings.EqualFold(s, keyTypeNames[t]) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("hsm: unknown key type %q (want one of ZMK TMK TPK ZPK TAK ZAK TDK DEK BDK)", s)
}

// MarshalText writes the type's name, so key stores and JSON show "ZPK" rather than a number.
func (t KeyType) MarshalText() ([]byte, error) {
	if !t.Valid() {
		return nil, fmt.Errorf("hsm: invalid key type %d", uint8(t))
	}
	return []byte(t.String()), nil
}

// UnmarshalText reads a type written by MarshalText.
func (t *KeyType) UnmarshalText(b []byte) error {
	v, err := ParseKeyType(string(b))
	*t = v
	return err
}

// Usage is one kind of operation a key may take part in.
type Usage uint8

// Usages checked by the module before it uses a key.
const (
	UsagePIN   Usage = iota + 1 // encrypt, decrypt or translate PIN blocks
	UsageMAC                    // generate or verify MACs
	UsageData                   // encrypt or decrypt data
	UsageWrap                   // wrap (export) or unwrap (import) other keys
	UsageDUKPT                  // derive DUKPT transaction keys
)

var usageNames = [...]string{UsagePIN: "PIN", UsageMAC: "MAC", UsageData: "data", UsageWrap: "key wrapping", UsageDUKPT: "DUKPT derivation"}

// String names the usage for error messages.
func (u Usage) String() string {
	if u >= UsagePIN && u <= UsageDUKPT {
		return usageNames[u]
	}
	return fmt.Sprintf("Usage(%d)", uint8(u))
}

// Allows reports whether a key of type t may be used for u.
func (t KeyType) Allows(u Usage) bool {
	switch t {
	case KeyZMK, KeyTMK:
		return u == UsageWrap
	case KeyTPK, KeyZPK:
		return u == UsagePIN
	case KeyTAK, KeyZAK:
		return u == UsageMAC
	case KeyTDK, KeyDEK:
		return u == UsageData
	case KeyBDK:
		return u == UsageDUKPT
	}
	return false
}

// Algorithm is the block cipher a key belongs to; a key is used only with its own algorithm.
type Algorithm uint8

// Key algorithms.
const (
	AlgTDES Algorithm = iota + 1 // DES family: 8 (single), 16 (double) or 24 (triple) bytes
	AlgAES                       // AES: 16, 24 or 32 bytes
)

// String returns "TDES" or "AES".
func (a Algorithm) String() string {
	switch a {
	case AlgTDES:
		return "TDES"
	case AlgAES:
		return "AES"
	}
	return fmt.Sprintf("Algorithm(%d)", uint8(a))
}

// ParseAlgorithm reads "tdes" (also "des", "3des") or "aes", case-insensitive.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch strings.ToLower(s) {
	case "tdes", "des", "3des":
		return AlgTDES, nil
	case "aes":
		return AlgAES, nil
	}
	return 0, fmt.Errorf("hsm: unknown key algorithm %q (want tdes or aes)", s)
}

// MarshalText writes the algorithm's name.
func (a Algorithm) MarshalText() ([]byte, error) {
	if a != AlgTDES && a != AlgAES {
		return nil, fmt.Errorf("hsm: invalid algorithm %d", uint8(a))
	}
	return []byte(a.String()), nil
}

// UnmarshalText reads an algorithm written by MarshalText.
func (a *Algorithm) UnmarshalText(b []byte) error {
	v, err := ParseAlgorithm(string(b))
	*a = v
	return err
}

// ValidLength reports whether n bytes is a key length of the algorithm.
func (a Algorithm) ValidLength(n int) bool {
	switch a {
	case AlgTDES:
		return n == 8 || n == 16 || n == 24
	case AlgAES:
		return n == 16 || n == 24 || n == 32
	}
	return false
}

// BlockSize is the cipher block size of the algorithm in bytes.
func (a Algorithm) BlockSize() int {
	if a == AlgAES {
		return 16
	}
	return 8
}

// Spec says which key to generate or import: its type, algorithm and length in bytes.
type Spec struct {
	Type      KeyType
	Algorithm Algorithm
	Length    int // bytes: 8, 16 or 24 for TDES; 16, 24 or 32 for AES
}

// Validate checks that the spec describes a key the module can hold.
func (s Spec) Validate() error {
	if !s.Type.Valid() {
		return fmt.Errorf("%w: %v", ErrUnknownKeyType, s.Type)
	}
	if !s.Algorithm.ValidLength(s.Length) {
		return fmt.Errorf("%w: %d-byte %v key", ErrKeyLength, s.Length, s.Algorithm)
	}
	if s.Type == KeyBDK && s.Algorithm == AlgTDES && s.Length == 8 {
		return fmt.Errorf("%w: a TDES BDK is double or triple length", ErrKeyLength)
	}
	return nil
}

// Key is a key as the switch holds it: never clear, but as the module's cryptogram under its local master key
// (LMK), plus what the switch may know about it. The switch stores Key values (key store, terminal sessions)
// and passes them back to the module; only the module can use Cryptogram.
type Key struct {
	Name       string    `json:"name"`       // e.g. "term/22003600/mak", "acq/ccb/zpk"; for people and logs
	Version    int       `json:"version"`    // 1 for the first key under Name, then one more per replacement
	Type       KeyType   `json:"type"`       // what the key is for
	Algorithm  Algorithm `json:"algorithm"`  // TDES or AES
	Length     int       `json:"length"`     // clear key length in bytes
	Cryptogram string    `json:"cryptogram"` // the key under the LMK, in the module's text form (see LMK docs)
	KCV        string    `json:"kcv"`        // check value, 6 hex digits
}

// Spec returns the key's type, algorithm and length.
func (k Key) Spec() Spec { return Spec{Type: k.Type, Algorithm: k.Algorithm, Length: k.Length} }

// String names the key without its cryptogram, for logs and errors.
func (k Key) String() string {
	name := k.Name
	if name == "" {
		name = "(unnamed)"
	}
	return fmt.Sprintf("%s v%d (%v %v-%d, kcv %s)", name, k.Version, k.Type, k.Algorithm, k.Length*8, k.KCV)
}

// checkValue returns a clear key's check value as 6 hex digits: TDES encrypts a zero block, AES uses the
// CMAC method of ANSI X9.24-1:2017 (see KCV).
func checkValue(s Spec, clearKey []byte) (string, error) {
	kcv, err := KCV(clearKey, s.Algorithm == AlgAES, 3)
	if err != nil {
		return "", err
	}
	return strings.ToUpper(hex.EncodeToString(kcv)), nil
}
