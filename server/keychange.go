package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/flow"
	"github.com/railswitch/railswitch/hsm"
	"go.uber.org/zap"
)

// Response codes of a key change answer (field 39 of the 0810; docs/links.md).
const (
	rcKeyInstalled = "00" // the new key is in force and stored
	rcKeyFormat    = "30" // field 48 or 53 malformed
	rcKeyNotUsed   = "12" // key type unknown, or the acquirer has no such key configured
	rcKeySecurity  = "63" // the key does not check under our ZMK (check value or parity): wrong ZMK or altered
	rcKeySystem    = "96" // no ZMK configured or in the key store, or the module or key store failed
)

// Key types in digits 1-2 of field 53 of a key change (docs/bank-link.md).
const (
	keyTypeZPK = "01"
	keyTypeZAK = "02"
)

// keyChanger installs the zone keys that banks send in a key change (0800, 70 = 161).
type keyChanger struct {
	s  *Switch
	mu sync.Mutex // one key change at a time: the bank sends the same key on every connection
}

// hook returns the link's OnKeyChange for one acquirer.
func (kc *keyChanger) hook(acquirer string) func(ctx context.Context, req, resp *codec.Message) string {
	return func(ctx context.Context, req, resp *codec.Message) string {
		if req.Has(53) {
			_ = resp.CopyField(53, req)
		}
		rc, err := kc.install(ctx, acquirer, req)
		if err != nil {
			kc.s.log.Warn("key change refused", zap.String("acquirer", acquirer), zap.String("code", rc), zap.Error(err))
		}
		return rc
	}
}

// install imports the key of a key change request under the acquirer's ZMK, stores it as a new version of the
// key named in the configuration (so a restart uses it) and then puts it in force. The same key arriving again
// (on another connection) is answered 00 without a new version.
func (kc *keyChanger) install(ctx context.Context, acquirer string, req *codec.Message) (string, error) {
	acq, ac := kc.s.acquirers[acquirer], kc.s.cfg.Acquirers[acquirer]
	keyType := keyTypeZPK
	if req.Has(53) {
		f53 := req.String(53)
		if len(f53) < 2 {
			return rcKeyFormat, errors.New("field 53 too short")
		}
		keyType = f53[:2]
	}
	var typ hsm.KeyType
	var name string
	var current func() *hsm.Key
	var set func(*hsm.Key)
	switch keyType {
	case keyTypeZPK:
		typ, name, current, set = hsm.KeyZPK, ac.ZPK, acq.ZPK, acq.SetZPK
	case keyTypeZAK:
		typ, name, current, set = hsm.KeyZAK, ac.ZAK, acq.ZAK, acq.SetZAK
	default:
		return rcKeyNotUsed, fmt.Errorf("unknown key type %q in field 53", keyType)
	}
	if name == "" {
		return rcKeyNotUsed, fmt.Errorf("acquirers.%s has no %v configured", acquirer, typ)
	}
	f48 := req.String(48)
	encrypted, err := hex.DecodeString(f48[:min(32, len(f48))])
	if len(f48) != 38 || err != nil {
		return rcKeyFormat, errors.New("field 48 is not 32 hex digits of key and 6 of check value")
	}
	kcv := f48[32:]
	if ac.ZMK == "" {
		return rcKeySystem, fmt.Errorf("acquirers.%s.zmk is not set", acquirer)
	}
	zmk, err := kc.s.keys.Get(ac.ZMK)
	if err != nil {
		return rcKeySystem, err
	}
	key, err := kc.s.module.ImportKey(ctx, hsm.ImportKeyRequest{Name: name,
		Spec: hsm.Spec{Type: typ, Algorithm: hsm.AlgTDES, Length: 16}, Under: zmk, Encrypted: encrypted, KCV: kcv})
	if err != nil {
		var parity *hsm.ParityError
		if errors.Is(err, hsm.ErrKCV) || errors.As(err, &parity) {
			return rcKeySecurity, err
		}
		return rcKeySystem, err
	}
	kc.mu.Lock()
	defer kc.mu.Unlock()
	if cur := current(); cur != nil && cur.KCV == key.KCV {
		return rcKeyInstalled, nil // already installed from another connection
	}
	// Stored before it is put in force: a key in use that a restart would forget would break the link.
	stored, err := kc.s.keys.Put(key)
	if err != nil {
		return rcKeySystem, err
	}
	set(&stored)
	kc.s.log.Info("zone key changed by the bank", zap.String("acquirer", acquirer), zap.Stringer("key", stored))
	return rcKeyInstalled, nil
}

// zoneKeys loads an acquirer's ZPK and ZAK (the latest versions in the key store) into fa.
func (s *Switch) zoneKeys(name string, ac AcquirerConfig, fa *flow.Acquirer) error {
	for _, z := range []struct {
		field, key string
		set        func(*hsm.Key)
	}{{"zpk", ac.ZPK, fa.SetZPK}, {"zak", ac.ZAK, fa.SetZAK}} {
		if z.key == "" {
			continue
		}
		k, err := s.keys.Get(z.key)
		if err != nil {
			return fmt.Errorf("acquirers.%s.%s: %w", name, z.field, err)
		}
		z.set(&k)
	}
	return nil
}
