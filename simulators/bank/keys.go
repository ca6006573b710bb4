package bank

import (
	"crypto/cipher"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
)

// Keys are the bank's zone keys in clear: the simulator plays the bank and its HSM. A missing key disables
// what needs it: without a ZMK key change answers 96, without a ZPK PINs are not checked, without a ZAK MACs
// are neither checked nor sent.
type Keys struct {
	ZMK []byte // zone master key (double or triple DES): key change sends new keys under it
	ZPK []byte // zone PIN key (TDES): PIN blocks in field 52, ISO format 0
	ZAK []byte // zone MAC key (double DES): ANSI X9.19 MAC in field 64, or 128 with a secondary bitmap
}

// Key types in the first two digits of field 53 of a key change request.
const (
	KeyTypePIN = "01" // ZPK (the default when field 53 is absent)
	KeyTypeMAC = "02" // ZAK
)

// keyState holds the working keys. A key change keeps the previous key valid for checking, since requests
// already in flight were made under it.
type keyState struct {
	mu      sync.RWMutex
	zmk     cipher.Block
	zpk     cipher.Block
	prevZPK cipher.Block
	zak     *hsm.MACer
	prevZAK *hsm.MACer
	rnd     io.Reader // key material
	macLen  int       // wire length of the MAC field in this spec
}

func newKeyState(k Keys, spec *codec.Spec, rnd io.Reader) (*keyState, error) {
	s := &keyState{rnd: rnd}
	var err error
	if len(k.ZMK) > 0 {
		if s.zmk, err = hsm.NewTDESCipher(k.ZMK); err != nil {
			return nil, fmt.Errorf("ZMK: %w", err)
		}
	}
	if len(k.ZPK) > 0 {
		if s.zpk, err = hsm.NewTDESCipher(k.ZPK); err != nil {
			return nil, fmt.Errorf("ZPK: %w", err)
		}
	}
	if len(k.ZAK) > 0 {
		if s.zak, err = hsm.NewMACer(hsm.MACX919, k.ZAK); err != nil {
			return nil, fmt.Errorf("ZAK: %w", err)
		}
	}
	if s.macLen, err = macWireLen(spec); err != nil {
		return nil, err
	}
	return s, nil
}

// ParseKeyHex reads a clear key given in hex (test keys only); empty gives nil.
func ParseKeyHex(name, s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	k, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || (len(k) != 16 && len(k) != 24) {
		return nil, fmt.Errorf("%s must be 32 or 48 hex digits", name)
	}
	return k, nil
}

// macWireLen is how many bytes field 64 takes on the wire: the difference between a message with it and one
// without.
func macWireLen(spec *codec.Spec) (int, error) {
	m := codec.NewMessage(spec)
	if err := m.SetMTI("0800"); err != nil {
		return 0, err
	}
	without, err := m.Pack(nil)
	if err != nil {
		return 0, err
	}
	if err := m.Set(64, make([]byte, 8)); err != nil {
		return 0, fmt.Errorf("spec %s cannot carry a MAC in field 64: %w", spec.Name(), err)
	}
	with, err := m.Pack(nil)
	if err != nil {
		return 0, err
	}
	return len(with) - len(without), nil
}

// macField is where a message's MAC goes: 128 when the secondary bitmap is present, else 64.
func macField(m *codec.Message) int {
	for n := 65; n <= 128; n++ {
		if m.Has(n) {
			return 128
		}
	}
	return 64
}

// verifyMAC checks the MAC of an unpacked request: X9.19 under the ZAK (or the previous one) over every
// byte from the MTI up to the MAC field. It reports whether the request carried a MAC to check and whether
// it is good.
func (k *keyState) verifyMAC(m *codec.Message) (present, ok bool) {
	k.mu.RLock()
	zak, prev := k.zak, k.prevZAK
	k.mu.RUnlock()
	if zak == nil {
		return false, true // no MAC key: nothing is checked or sent
	}
	n := macField(m)
	mac, has := m.Value(n)
	if !has {
		return false, true
	}
	data, _ := m.BytesBefore(n)
	return true, zak.Verify(data, mac) || (prev != nil && prev.Verify(data, mac))
}

// signMAC sets the MAC of m under the ZAK, if there is one; corrupt flips a bit of it (the wrong-MAC
// fault).
func (k *keyState) signMAC(m *codec.Message, corrupt bool) error {
	k.mu.RLock()
	zak := k.zak
	k.mu.RUnlock()
	if zak == nil {
		return nil
	}
	n := macField(m)
	if err := m.Set(n, make([]byte, 8)); err != nil {
		return err
	}
	packed, err := m.Pack(nil)
	if err != nil {
		return err
	}
	sum := zak.Sum(nil, packed[:len(packed)-k.macLen])
	if corrupt {
		sum[0] ^= 0x01
	}
	return m.Set(n, sum[:8])
}

// pinVerifier returns the PIN check of a request carrying the encrypted PIN block block, or nil when there
// is no ZPK. The PIN stays inside the closure and is never logged.
func (k *keyState) pinVerifier(block []byte, pan string) func([]byte) bool {
	k.mu.RLock()
	zpk, prev := k.zpk, k.prevZPK
	k.mu.RUnlock()
	if zpk == nil || block == nil {
		return nil
	}
	blk := append([]byte(nil), block...)
	return func(hash []byte) bool {
		for _, key := range []cipher.Block{zpk, prev} {
			if key == nil {
				continue
			}
			if pin, err := hsm.DecryptPINBlock(key, hsm.ISO0, blk, pan); err == nil && equalHash(HashPIN(pin), hash) {
				return true
			}
		}
		return false
	}
}

// newKey is a key change under way: the new key in clear and in field 48's form.
type newKey struct {
	keyType string
	clear   []byte
	field48 string // 32 hex digits of the key under the ZMK (TDES ECB), then 6 of its check value
}

// makeKey makes a new ZPK (keyType 01) or ZAK (02) and its field 48 under the ZMK; install puts it in force.
func (k *keyState) makeKey(keyType string) (newKey, error) {
	if keyType != KeyTypePIN && keyType != KeyTypeMAC {
		return newKey{}, fmt.Errorf("unknown key type %q (want %s or %s)", keyType, KeyTypePIN, KeyTypeMAC)
	}
	if k.zmk == nil {
		return newKey{}, fmt.Errorf("no ZMK")
	}
	key := make([]byte, 16)
	if _, err := io.ReadFull(k.rnd, key); err != nil {
		return newKey{}, err
	}
	hsm.FixParity(key)
	under := make([]byte, 16)
	if err := hsm.EncryptECB(k.zmk, under, key); err != nil {
		return newKey{}, err
	}
	kcv, err := hsm.KCV(key, false, 3)
	if err != nil {
		return newKey{}, err
	}
	return newKey{keyType: keyType, clear: key, field48: strings.ToUpper(hex.EncodeToString(under) + hex.EncodeToString(kcv))}, nil
}

// install puts a new key in force; the previous one is still accepted on requests, since some were in flight
// under it.
func (k *keyState) install(nk newKey) error {
	defer clear(nk.clear)
	k.mu.Lock()
	defer k.mu.Unlock()
	if nk.keyType == KeyTypePIN {
		b, err := hsm.NewTDESCipher(nk.clear)
		if err != nil {
			return err
		}
		k.prevZPK, k.zpk = k.zpk, b
		return nil
	}
	m, err := hsm.NewMACer(hsm.MACX919, nk.clear)
	if err != nil {
		return err
	}
	k.prevZAK, k.zak = k.zak, m
	return nil
}
