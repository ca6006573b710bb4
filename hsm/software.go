package hsm

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
)

// SoftwareFirmware is the version the software module reports in Info (and payShield NC).
const SoftwareFirmware = "RSIM-0001"

// maxOpenKeys bounds the cache of opened keys; past it the cache starts again empty.
const maxOpenKeys = 1 << 16

// Software is the security module in software: keys are opened from their LMK cryptograms in memory only.
// It serves development, tests and the simulators. PCI PIN requires PIN translation in a hardware HSM, so
// production uses a networked HSM (payshield.Client) behind the same Module interface.
//
// Opened keys (clear key, prepared ciphers and MACers) are cached by cryptogram, so the hot path pays for the
// LMK decryption once per key. It is safe for concurrent use.
type Software struct {
	lmk *LMK
	rnd io.Reader

	open  sync.Map // cryptogram -> *openKey
	names sync.Map // key name -> the cryptogram last opened under that name
	nOpen atomic.Int64
}

// openKey is a key opened from its cryptogram: the authenticated spec and the clear key, kept in memory only.
type openKey struct {
	spec  Spec
	clear []byte
	block cipher.Block
	macs  sync.Map // MACAlgorithm -> *MACer
}

var _ Module = (*Software)(nil)

// NewSoftware returns a software module under lmk. rnd supplies key material and PIN block fill, and must be
// safe for concurrent use; nil means crypto/rand. Cryptogram nonces always come from crypto/rand.
func NewSoftware(lmk *LMK, rnd io.Reader) *Software {
	if rnd == nil {
		rnd = rand.Reader
	}
	return &Software{lmk: lmk, rnd: rnd}
}

// LMK returns the module's local master key.
func (s *Software) LMK() *LMK { return s.lmk }

// openKey returns the opened key of k, checking that its type (as bound in the cryptogram) allows u.
func (s *Software) openKey(k Key, u Usage) (*openKey, error) {
	var ok *openKey
	if v, found := s.open.Load(k.Cryptogram); found {
		ok = v.(*openKey)
	} else {
		spec, clearKey, err := s.lmk.Unwrap(k.Cryptogram)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k.Name, err)
		}
		ok = &openKey{spec: spec, clear: clearKey}
		if spec.Algorithm == AlgAES {
			ok.block, err = NewAESCipher(clearKey)
		} else {
			ok.block, err = NewTDESCipher(clearKey)
		}
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k.Name, err)
		}
		if s.nOpen.Add(1) > maxOpenKeys {
			s.open.Clear()
			s.names.Clear()
			s.nOpen.Store(1)
		}
		s.open.Store(k.Cryptogram, ok)
		// A new key under a known name (a terminal's working keys after its next sign-on, a zone key after
		// a key exchange) replaces the old one: its clear key leaves the cache instead of staying until the
		// cache is full, so sign-ons cannot grow the heap.
		if k.Name != "" {
			if prev, loaded := s.names.Swap(k.Name, k.Cryptogram); loaded && prev != k.Cryptogram {
				if _, was := s.open.LoadAndDelete(prev); was {
					s.nOpen.Add(-1)
				}
			}
		}
	}
	if u != 0 && !ok.spec.Type.Allows(u) {
		return nil, &UsageError{Key: k.Name, Type: ok.spec.Type, Usage: u}
	}
	return ok, nil
}

// macer returns the prepared MACer of alg under the key, after checking the key's algorithm fits.
func (ok *openKey) macer(name string, alg MACAlgorithm) (*MACer, error) {
	if v, found := ok.macs.Load(alg); found {
		return v.(*MACer), nil
	}
	if (alg == MACAESCMAC) != (ok.spec.Algorithm == AlgAES) {
		return nil, fmt.Errorf("%w: %s with %v key %q", ErrAlgorithm, alg, ok.spec.Algorithm, name)
	}
	m, err := NewMACer(alg, ok.clear)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", name, err)
	}
	ok.macs.Store(alg, m)
	return m, nil
}

// TranslatePIN implements Module.
func (s *Software) TranslatePIN(_ context.Context, req PINTranslation) (PINResult, error) {
	dst, err := s.openKey(req.Dest, UsagePIN)
	if err != nil {
		return PINResult{}, err
	}
	if dst.spec.Type != KeyZPK {
		return PINResult{}, fmt.Errorf("the destination of a PIN translation is a ZPK: %w", &UsageError{Key: req.Dest.Name, Type: dst.spec.Type, Usage: UsagePIN})
	}
	var src cipher.Block
	if req.KSN != nil {
		if src, err = s.dukptPINKey(req.Source, req.KSN); err != nil {
			return PINResult{}, err
		}
	} else {
		ok, err := s.openKey(req.Source, UsagePIN)
		if err != nil {
			return PINResult{}, err
		}
		src = ok.block
	}
	out, err := TranslatePINBlock(src, req.SourceFormat, dst.block, req.DestFormat, req.Block, req.PAN, s.rnd, nil)
	if err != nil {
		return PINResult{}, err
	}
	n, err := pinLength(dst.block, req.DestFormat, out, req.PAN)
	if err != nil {
		return PINResult{}, err
	}
	return PINResult{Block: out, Format: req.DestFormat, PINLength: n}, nil
}

// pinLength reads the PIN length nibble of an encrypted block, without decoding the PIN.
func pinLength(key cipher.Block, f PINBlockFormat, block []byte, pan string) (int, error) {
	var w [16]byte
	defer clear(w[:])
	key.Decrypt(w[:], block)
	if f == ISO4 {
		var pf [16]byte
		if err := iso4PANField(pan, &pf); err != nil {
			return 0, err
		}
		xorBytes(w[:], pf[:])
		key.Decrypt(w[:], w[:])
	}
	// Formats 0 and 3 XOR the PAN field into the block, but its first byte is zero: the length nibble is clear.
	return int(w[0] & 0x0F), nil
}

// dukptPINKey derives the PIN-encryption key of a DUKPT transaction from a BDK and a KSN.
func (s *Software) dukptPINKey(bdk Key, ksn []byte) (cipher.Block, error) {
	ok, err := s.openKey(bdk, UsageDUKPT)
	if err != nil {
		return nil, err
	}
	var k []byte
	if ok.spec.Algorithm == AlgAES {
		k, err = aesDUKPTPINKey(ok.clear, ksn)
	} else {
		k, err = tdesDUKPTPINKey(ok.clear, ksn)
	}
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", bdk.Name, err)
	}
	defer clear(k)
	if ok.spec.Algorithm == AlgAES {
		return NewAESCipher(k)
	}
	return NewTDESCipher(k)
}

// GenerateMAC implements Module.
func (s *Software) GenerateMAC(_ context.Context, key Key, alg MACAlgorithm, data []byte) ([]byte, error) {
	ok, err := s.openKey(key, UsageMAC)
	if err != nil {
		return nil, err
	}
	m, err := ok.macer(key.Name, alg)
	if err != nil {
		return nil, err
	}
	return m.Sum(nil, data), nil
}

// VerifyMAC implements Module.
func (s *Software) VerifyMAC(_ context.Context, key Key, alg MACAlgorithm, data, mac []byte) error {
	ok, err := s.openKey(key, UsageMAC)
	if err != nil {
		return err
	}
	m, err := ok.macer(key.Name, alg)
	if err != nil {
		return err
	}
	if !m.Verify(data, mac) {
		return ErrMACVerify
	}
	return nil
}

// Encrypt implements Module.
func (s *Software) Encrypt(_ context.Context, req DataRequest) ([]byte, error) {
	return s.crypt(req, false)
}

// Decrypt implements Module.
func (s *Software) Decrypt(_ context.Context, req DataRequest) ([]byte, error) {
	return s.crypt(req, true)
}

func (s *Software) crypt(req DataRequest, decrypt bool) ([]byte, error) {
	ok, err := s.openKey(req.Key, UsageData)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(req.Data))
	switch req.Mode {
	case DataECB:
		if decrypt {
			err = DecryptECB(ok.block, out, req.Data)
		} else {
			err = EncryptECB(ok.block, out, req.Data)
		}
	case DataCBC:
		if decrypt {
			err = DecryptCBC(ok.block, req.IV, out, req.Data)
		} else {
			err = EncryptCBC(ok.block, req.IV, out, req.Data)
		}
	case DataTrack:
		if ok.spec.Type != KeyTDK {
			return nil, &UsageError{Key: req.Key.Name, Type: ok.spec.Type, Usage: UsageData}
		}
		copy(out, req.Data)
		err = EncryptTrackTDK(ok.block, out, decrypt)
	default:
		err = fmt.Errorf("%w: data mode %v", ErrUnsupported, req.Mode)
	}
	if err != nil {
		clear(out)
		return nil, fmt.Errorf("key %q: %w", req.Key.Name, err)
	}
	return out, nil
}

// newKey wraps a clear key under the LMK into a Key with its check value.
func (s *Software) newKey(name string, spec Spec, clearKey []byte) (Key, error) {
	kcv, err := checkValue(spec, clearKey)
	if err != nil {
		return Key{}, err
	}
	c, err := s.lmk.Wrap(spec, clearKey, nil) // a nonce must never repeat: always crypto/rand
	if err != nil {
		return Key{}, err
	}
	return Key{Name: name, Type: spec.Type, Algorithm: spec.Algorithm, Length: spec.Length, Cryptogram: c, KCV: kcv}, nil
}

// randomKey returns a new random clear key of the spec (odd parity for TDES).
func (s *Software) randomKey(spec Spec) ([]byte, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	k := make([]byte, spec.Length)
	if _, err := io.ReadFull(s.rnd, k); err != nil {
		return nil, fmt.Errorf("hsm: generate key: %w", err)
	}
	if spec.Algorithm == AlgTDES {
		FixParity(k)
	}
	return k, nil
}

// kek opens a key-encrypting key (ZMK or TMK).
func (s *Software) kek(k Key) (*openKey, error) {
	return s.openKey(k, UsageWrap)
}

// GenerateKey implements Module.
func (s *Software) GenerateKey(_ context.Context, req GenerateKeyRequest) (GeneratedKey, error) {
	var kek *openKey
	if req.Under != nil {
		var err error
		if kek, err = s.kek(*req.Under); err != nil {
			return GeneratedKey{}, err
		}
	}
	clearKey, err := s.randomKey(req.Spec)
	if err != nil {
		return GeneratedKey{}, err
	}
	defer clear(clearKey)
	var g GeneratedKey
	if g.Key, err = s.newKey(req.Name, req.Spec, clearKey); err != nil {
		return GeneratedKey{}, err
	}
	if kek != nil {
		g.Under = make([]byte, len(clearKey))
		if err := EncryptECB(kek.block, g.Under, clearKey); err != nil {
			return GeneratedKey{}, fmt.Errorf("hsm: export %v key under %q: %w", req.Spec.Type, req.Under.Name, err)
		}
	}
	return g, nil
}

// ImportKey implements Module.
func (s *Software) ImportKey(_ context.Context, req ImportKeyRequest) (Key, error) {
	if req.KCV == "" {
		return Key{}, fmt.Errorf("%w: the expected check value is required", ErrKCV)
	}
	return s.importUnder(req)
}

// ImportKeyUnchecked is ImportKey without the expected check value, for protocol servers whose command
// carries none (payShield A6 returns the check value and the client compares it). Parity is still checked.
func (s *Software) ImportKeyUnchecked(_ context.Context, req ImportKeyRequest) (Key, error) {
	req.KCV = ""
	return s.importUnder(req)
}

func (s *Software) importUnder(req ImportKeyRequest) (Key, error) {
	if err := req.Spec.Validate(); err != nil {
		return Key{}, err
	}
	kek, err := s.kek(req.Under)
	if err != nil {
		return Key{}, err
	}
	if len(req.Encrypted) != req.Spec.Length {
		return Key{}, fmt.Errorf("%w: encrypted key of %d bytes for a %d-byte key", ErrKeyLength, len(req.Encrypted), req.Spec.Length)
	}
	clearKey := make([]byte, len(req.Encrypted))
	defer clear(clearKey)
	if err := DecryptECB(kek.block, clearKey, req.Encrypted); err != nil {
		return Key{}, fmt.Errorf("hsm: import under %q: %w", req.Under.Name, err)
	}
	return s.finishImport(req.Name, req.Spec, clearKey, req.KCV)
}

// finishImport checks a clear key (parity, and the check value unless kcv is empty) and wraps it under the
// LMK.
func (s *Software) finishImport(name string, spec Spec, clearKey []byte, kcv string) (Key, error) {
	if spec.Algorithm == AlgTDES {
		if err := CheckParity(clearKey); err != nil {
			return Key{}, err
		}
	}
	k, err := s.newKey(name, spec, clearKey)
	if err != nil {
		return Key{}, err
	}
	if kcv != "" && !kcvMatch(k.KCV, kcv) {
		return Key{}, fmt.Errorf("%w: key %q has check value %s, expected %s", ErrKCV, name, k.KCV, strings.ToUpper(kcv))
	}
	return k, nil
}

// kcvMatch compares a computed check value with an expected one (hex, any case, at least 4 digits, leftmost).
func kcvMatch(have, want string) bool {
	want = strings.ToUpper(strings.TrimSpace(want))
	if len(want) < 4 || len(want) > len(have) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(have[:len(want)]), []byte(want)) == 1
}

// ImportComponents implements Module.
func (s *Software) ImportComponents(_ context.Context, req ComponentsRequest) (Key, error) {
	if err := req.Spec.Validate(); err != nil {
		return Key{}, err
	}
	if n := len(req.Components); n < 2 || n > 3 {
		return Key{}, fmt.Errorf("%w: %d components (want 2 or 3)", ErrComponents, n)
	}
	clearKey := make([]byte, req.Spec.Length)
	defer clear(clearKey)
	for i, c := range req.Components {
		if len(c.Value) != req.Spec.Length {
			return Key{}, fmt.Errorf("%w: component %d has %d bytes, want %d", ErrComponents, i+1, len(c.Value), req.Spec.Length)
		}
		if req.Spec.Algorithm == AlgTDES {
			if err := CheckParity(c.Value); err != nil {
				return Key{}, fmt.Errorf("component %d: %w", i+1, err)
			}
		}
		if c.KCV != "" {
			have, err := checkValue(req.Spec, c.Value)
			if err != nil {
				return Key{}, err
			}
			if !kcvMatch(have, c.KCV) {
				return Key{}, fmt.Errorf("%w: component %d has check value %s, expected %s", ErrKCV, i+1, have, strings.ToUpper(c.KCV))
			}
		}
		xorBytes(clearKey, c.Value)
	}
	if req.KCV == "" {
		return Key{}, fmt.Errorf("%w: the expected check value is required", ErrKCV)
	}
	if req.Spec.Algorithm == AlgTDES {
		FixParity(clearKey) // an even number of odd-parity components gives even parity
	}
	return s.finishImport(req.Name, req.Spec, clearKey, req.KCV)
}

// KeyCheckValue implements Module.
func (s *Software) KeyCheckValue(_ context.Context, key Key) (string, error) {
	ok, err := s.openKey(key, 0)
	if err != nil {
		return "", err
	}
	return checkValue(ok.spec, ok.clear)
}

// KeyCheckValueN returns n bytes of the key's check value (UnionPay field 62 carries 4, payShield BU 8).
func (s *Software) KeyCheckValueN(key Key, n int) ([]byte, error) {
	ok, err := s.openKey(key, 0)
	if err != nil {
		return nil, err
	}
	return KCV(ok.clear, ok.spec.Algorithm == AlgAES, n)
}

// Spec returns the spec bound into a key's cryptogram (a caller cannot relabel a key).
func (s *Software) Spec(key Key) (Spec, error) {
	ok, err := s.openKey(key, 0)
	if err != nil {
		return Spec{}, err
	}
	return ok.spec, nil
}

// cupKeySpecs gives the working keys of a UnionPay sign-on by field 60.3.
func cupKeySpecs(netCode string) (pik, mak, tdk int, err error) {
	switch netCode {
	case "001":
		return 8, 8, 0, nil
	case "003":
		return 16, 8, 0, nil
	case "004":
		return 16, 8, 16, nil
	}
	return 0, 0, 0, fmt.Errorf("%w: sign-on network code %q (want 001, 003 or 004)", ErrUnsupported, netCode)
}

// CUPSignOnKeys implements Module.
func (s *Software) CUPSignOnKeys(ctx context.Context, req CUPSignOnRequest) (CUPSignOn, error) {
	pikLen, makLen, tdkLen, err := cupKeySpecs(req.NetCode)
	if err != nil {
		return CUPSignOn{}, err
	}
	tmk, err := s.kek(req.TMK)
	if err != nil {
		return CUPSignOn{}, err
	}
	if tmk.spec.Type != KeyTMK {
		return CUPSignOn{}, &UsageError{Key: req.TMK.Name, Type: tmk.spec.Type, Usage: UsageWrap}
	}
	var out CUPSignOn
	var set CUPKeySet
	gen := func(suffix string, typ KeyType, n int) (Key, []byte, []byte, error) {
		g, err := s.GenerateKey(ctx, GenerateKeyRequest{Name: req.Prefix + "/" + suffix, Spec: Spec{Type: typ, Algorithm: AlgTDES, Length: n}, Under: &req.TMK})
		if err != nil {
			return Key{}, nil, nil, err
		}
		cv, err := s.KeyCheckValueN(g.Key, 4)
		return g.Key, g.Under, cv, err
	}
	if out.PIK, set.PIK, set.PIKCV, err = gen("pik", KeyTPK, pikLen); err != nil {
		return CUPSignOn{}, err
	}
	if out.MAK, set.MAK, set.MAKCV, err = gen("mak", KeyTAK, makLen); err != nil {
		return CUPSignOn{}, err
	}
	if tdkLen > 0 {
		var tdk Key
		if tdk, set.TDK, set.TDKCV, err = gen("tdk", KeyTDK, tdkLen); err != nil {
			return CUPSignOn{}, err
		}
		out.TDK = &tdk
	}
	if out.Field62, err = set.Field62(req.NetCode); err != nil {
		return CUPSignOn{}, err
	}
	return out, nil
}

// Info implements Module.
func (s *Software) Info(context.Context) (Info, error) {
	return Info{LMKCheck: s.lmk.CheckValue(), Firmware: SoftwareFirmware}, nil
}

// tdesDUKPTPINKey derives the TDES DUKPT PIN key (X9.24-1:2009 PIN variant) for ksn from a BDK.
func tdesDUKPTPINKey(bdk, ksn []byte) ([]byte, error) {
	ik, err := DUKPTInitialKey(bdk, ksn)
	if err != nil {
		return nil, err
	}
	defer clear(ik)
	return DUKPTPINKey(ik, ksn)
}

// aesDUKPTPINKey derives the AES DUKPT PIN-encryption key (X9.24-3) for ksn from a BDK.
func aesDUKPTPINKey(bdk, ksn []byte) ([]byte, error) {
	if len(ksn) != AESKSNLen {
		return nil, fmt.Errorf("%w: AES KSN must be %d bytes, got %d", ErrKSN, AESKSNLen, len(ksn))
	}
	ik, err := AESDUKPTInitialKey(bdk, ksn[:8])
	if err != nil {
		return nil, err
	}
	defer clear(ik)
	return AESDUKPTWorkingKey(ik, ksn, AESPINEncryption)
}
