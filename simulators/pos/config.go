package pos

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/specs"
)

// Defaults of a terminal's configuration.
const (
	DefaultTPDU      = "6000030000"   // ID 60, destination 0003, source 0000
	DefaultHeader    = "603100310730" // magstripe/general app, CUP 3.1, normal status, vendor version 310730
	DefaultKeyLayout = "003"          // double-length PIK, single-length MAK
	DefaultTimeout   = 30 * time.Second
	DefaultOperator  = "01 "
)

// Railway is the railway data a rail-pos terminal or a kiosk sends in field 57 (see docs/specs.md).
type Railway struct {
	Bureau   string `yaml:"bureau" json:"bureau"`     // 01-18
	Station  string `yaml:"station" json:"station"`   // telegraph code (BJP) or 5-digit TMIS code
	Business string `yaml:"business" json:"business"` // 1 passenger, 2 freight, 9 other
	Order    string `yaml:"order" json:"order"`       // ticket order or waybill number
	Window   string `yaml:"window" json:"window"`     // ticket window or device id
}

// Field57 lays the railway data out in its 36 fixed positions, refusing values that do not fit.
func (r Railway) Field57() (string, error) {
	if len(r.Bureau) != 2 || r.Bureau < "01" || r.Bureau > "18" {
		return "", fmt.Errorf("railway bureau %q: want 01-18", r.Bureau)
	}
	if r.Business != "1" && r.Business != "2" && r.Business != "9" {
		return "", fmt.Errorf("railway business type %q: want 1, 2 or 9", r.Business)
	}
	var b strings.Builder
	b.WriteString(r.Bureau)
	for _, p := range []struct {
		name, v string
		n       int
	}{{"station", r.Station, 5}, {"business", r.Business, 1}, {"order", r.Order, 20}, {"window", r.Window, 8}} {
		if p.v == "" || len(p.v) > p.n {
			return "", fmt.Errorf("railway %s %q: want 1 to %d characters", p.name, p.v, p.n)
		}
		b.WriteString(p.v)
		b.WriteString(strings.Repeat(" ", p.n-len(p.v)))
	}
	return b.String(), nil
}

// DUKPT configures PIN encryption under TDES DUKPT instead of the PIK: the base derivation key and the
// device's initial key serial number (the counter bits of the KSN are replaced by the terminal's counter).
type DUKPT struct {
	BDK string `yaml:"bdk" json:"bdk"` // 16 bytes, hex (a test key)
	KSN string `yaml:"ksn" json:"ksn"` // 10 bytes, hex
}

// Config is a POS terminal's configuration. Zero values take the defaults above.
type Config struct {
	Spec         string        `yaml:"spec"`          // cup-pos (default) or rail-pos, or a spec file
	TerminalID   string        `yaml:"tid"`           // field 41, 8 characters
	MerchantID   string        `yaml:"mid"`           // field 42, 15 characters
	TMK          string        `yaml:"tmk"`           // terminal master key, hex (a test key)
	TPDU         string        `yaml:"tpdu"`          // 10 hex digits
	Header       string        `yaml:"header"`        // 12 hex digits
	KeyLayout    string        `yaml:"key_layout"`    // 60.3 of the sign-on: 001, 003 or 004
	EncryptTrack bool          `yaml:"encrypt_track"` // encrypt track data under the TDK (needs key layout 004)
	Operator     string        `yaml:"operator"`      // 63.1 of sign-on and settlement
	Railway      *Railway      `yaml:"railway"`       // field 57 (rail-pos)
	DUKPT        *DUKPT        `yaml:"dukpt"`         // PIN under DUKPT instead of the PIK
	Timeout      time.Duration `yaml:"timeout"`       // reply timeout of each request
}

// settings is a checked configuration in wire form.
type settings struct {
	spec         *codec.Spec
	tid, mid     string
	tmk          []byte
	tpdu, hdr    []byte
	layout       string
	operator     string
	field57      string
	bdk, ksn     []byte
	encryptTrack bool
	timeout      time.Duration
}

// check fills defaults and validates c.
func (c Config) check() (*settings, error) {
	s := &settings{tid: c.TerminalID, mid: c.MerchantID, layout: c.KeyLayout, operator: c.Operator, timeout: c.Timeout,
		encryptTrack: c.EncryptTrack}
	name := c.Spec
	if name == "" {
		name = "cup-pos"
	}
	var err error
	if s.spec, err = specs.Get(name); err != nil {
		return nil, err
	}
	if !s.spec.Framing().TPDU || s.spec.Framing().HeaderLen != 6 {
		return nil, fmt.Errorf("spec %s is not a UnionPay POS spec (TPDU and 6-byte header)", name)
	}
	if len(s.tid) != 8 {
		return nil, fmt.Errorf("terminal id %q: want 8 characters", s.tid)
	}
	if len(s.mid) != 15 {
		return nil, fmt.Errorf("merchant id %q: want 15 characters", s.mid)
	}
	if s.tmk, err = hexKey("TMK", c.TMK, 8, 16, 24); err != nil {
		return nil, err
	}
	if s.tpdu, err = hexBytes("TPDU", orDefault(c.TPDU, DefaultTPDU), 5); err != nil {
		return nil, err
	}
	if s.hdr, err = hexBytes("header", orDefault(c.Header, DefaultHeader), 6); err != nil {
		return nil, err
	}
	s.layout = orDefault(s.layout, DefaultKeyLayout)
	if s.layout != "001" && s.layout != "003" && s.layout != "004" {
		return nil, fmt.Errorf("key layout %q: want 001, 003 or 004", s.layout)
	}
	if c.EncryptTrack && s.layout != "004" {
		return nil, fmt.Errorf("encrypt_track needs key layout 004 (a TDK)")
	}
	s.operator = orDefault(s.operator, DefaultOperator)
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if c.Railway != nil {
		if _, ok := s.spec.Field(57); !ok {
			return nil, fmt.Errorf("spec %s has no field 57 for railway data", name)
		}
		if s.field57, err = c.Railway.Field57(); err != nil {
			return nil, err
		}
	}
	if c.DUKPT != nil {
		if s.bdk, err = hexKey("DUKPT BDK", c.DUKPT.BDK, 16); err != nil {
			return nil, err
		}
		if s.ksn, err = hexBytes("DUKPT KSN", c.DUKPT.KSN, 10); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// hexBytes decodes a hex value of exactly n bytes; errors name the item, never its value.
func hexBytes(what, v string, n int) ([]byte, error) {
	b, err := hex.DecodeString(v)
	if err != nil || len(b) != n {
		return nil, fmt.Errorf("%s: want %d hex digits", what, 2*n)
	}
	return b, nil
}

// hexKey decodes a hex key of one of the given byte lengths; errors never show the key.
func hexKey(what, v string, sizes ...int) ([]byte, error) {
	b, err := hex.DecodeString(v)
	if err == nil {
		for _, n := range sizes {
			if len(b) == n {
				return b, nil
			}
		}
	}
	want := make([]string, len(sizes))
	for i, n := range sizes {
		want[i] = fmt.Sprint(2 * n)
	}
	return nil, fmt.Errorf("%s: want %s hex digits", what, strings.Join(want, " or "))
}
