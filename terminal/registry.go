package terminal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"go.yaml.in/yaml/v3"
)

// Terminal is one registered terminal.
type Terminal struct {
	ID        string `yaml:"id"`         // field 41, 8 characters
	Merchant  string `yaml:"merchant"`   // field 42, 15 characters
	Channel   string `yaml:"channel"`    // the channel it must come in on; empty allows any
	TMK       string `yaml:"tmk"`        // name of its TMK in the key store (terminals that sign on)
	MAC       string `yaml:"mac"`        // MAC profile: cup-ecb (default, field 64) or x9.19 (64, or 128 with a secondary bitmap)
	MAK       string `yaml:"mak"`        // static MAC key (key store name): the terminal does not sign on
	PIK       string `yaml:"pik"`        // static PIN key (key store name), with mak
	KeyLayout string `yaml:"key_layout"` // field-62 layout it may ask for: 001, 003 or 004; empty allows any
	Bureau    string `yaml:"bureau"`     // railway bureau code 01-18
	Station   string `yaml:"station"`    // station code
	Disabled  bool   `yaml:"disabled"`   // known but refused (response code 97 as unknown would be misleading: 58)
}

// MAC profiles of terminals.
const (
	MACCupECB = "cup-ecb" // UnionPay POS: ECB MAC over MTI to field 63, in field 64
	MACX919   = "x9.19"   // ANSI X9.19 retail MAC in field 64, or 128 when the message has a secondary bitmap
)

// Static reports whether the terminal has static working keys (kiosks): it never signs on.
func (t *Terminal) Static() bool { return t.MAK != "" }

// MACAlgorithm is the terminal's MAC profile (cup-ecb when not set).
func (t *Terminal) MACAlgorithm() string {
	if t.MAC == "" {
		return MACCupECB
	}
	return t.MAC
}

// Registry answers which terminals the switch knows. Reload swaps the whole set atomically.
type Registry struct {
	byID atomic.Pointer[map[string]*Terminal]
}

// NewRegistry returns a registry holding terminals.
func NewRegistry(terminals []Terminal) (*Registry, error) {
	r := &Registry{}
	return r, r.Reload(terminals)
}

// Reload replaces the registry's terminals.
func (r *Registry) Reload(terminals []Terminal) error {
	m := make(map[string]*Terminal, len(terminals))
	var errs []error
	for i := range terminals {
		t := terminals[i]
		switch {
		case len(t.ID) != 8:
			errs = append(errs, fmt.Errorf("terminal %d: id %q must be 8 characters", i+1, t.ID))
			continue
		case len(t.Merchant) != 15:
			errs = append(errs, fmt.Errorf("terminal %s: merchant %q must be 15 characters", t.ID, t.Merchant))
			continue
		case t.TMK == "" && t.MAK == "":
			errs = append(errs, fmt.Errorf("terminal %s: no tmk key name (or static mak and pik)", t.ID))
			continue
		case (t.MAK == "") != (t.PIK == ""):
			errs = append(errs, fmt.Errorf("terminal %s: static keys mak and pik go together", t.ID))
			continue
		case t.MAC != "" && t.MAC != MACCupECB && t.MAC != MACX919:
			errs = append(errs, fmt.Errorf("terminal %s: mac %q is not %s or %s", t.ID, t.MAC, MACCupECB, MACX919))
			continue
		case t.KeyLayout != "" && t.KeyLayout != "001" && t.KeyLayout != "003" && t.KeyLayout != "004":
			errs = append(errs, fmt.Errorf("terminal %s: key_layout %q is not 001, 003 or 004", t.ID, t.KeyLayout))
			continue
		}
		if _, dup := m[t.ID]; dup {
			errs = append(errs, fmt.Errorf("terminal %s: listed twice", t.ID))
			continue
		}
		m[t.ID] = &t
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	r.byID.Store(&m)
	return nil
}

// Lookup returns the terminal with field-41 id tid.
func (r *Registry) Lookup(tid string) (*Terminal, bool) {
	m := r.byID.Load()
	if m == nil {
		return nil, false
	}
	t, ok := (*m)[tid]
	return t, ok
}

// Len is the number of registered terminals.
func (r *Registry) Len() int {
	if m := r.byID.Load(); m != nil {
		return len(*m)
	}
	return 0
}

// LoadFile reads a terminals file: YAML with a `terminals:` list of Terminal entries.
func LoadFile(path string) ([]Terminal, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Terminals []Terminal `yaml:"terminals"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return doc.Terminals, nil
}
