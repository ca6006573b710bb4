package payshield

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/railswitch/railswitch/hsm"
)

// errField reports a request or reply field that is missing or malformed.
var errField = errors.New("payshield: malformed field")

// DefaultKeyTypeCodes are the 3-character key type codes sent for each key type (variant digit + LMK pair
// code, reference/hsm.md 3.2). TPK shares 002 with TMK on a variant-LMK payShield; the simulator gives it 70D
// and TDK 00B so that the key type bound in its cryptograms is unambiguous. Config.KeyTypeCodes overrides
// them to match an HSM's own key type table.
var DefaultKeyTypeCodes = map[hsm.KeyType]string{
	hsm.KeyZMK: "000", hsm.KeyZPK: "001", hsm.KeyTMK: "002", hsm.KeyTPK: "70D", hsm.KeyTAK: "003",
	hsm.KeyZAK: "008", hsm.KeyBDK: "009", hsm.KeyDEK: "00A", hsm.KeyTDK: "00B",
}

// keyTypeTable maps key types to codes and back.
type keyTypeTable struct {
	code  map[hsm.KeyType]string
	types map[string]hsm.KeyType
}

func newKeyTypeTable(override map[hsm.KeyType]string) (keyTypeTable, error) {
	t := keyTypeTable{code: map[hsm.KeyType]string{}, types: map[string]hsm.KeyType{}}
	for k, v := range DefaultKeyTypeCodes {
		t.code[k] = v
	}
	for k, v := range override {
		if len(v) != 3 {
			return t, fmt.Errorf("payshield: key type code %q for %v: want 3 characters", v, k)
		}
		t.code[k] = strings.ToUpper(v)
	}
	for k, v := range t.code {
		if other, dup := t.types[v]; dup {
			return t, fmt.Errorf("payshield: key type code %s given to both %v and %v", v, other, k)
		}
		t.types[v] = k
	}
	return t, nil
}

// lmkScheme is the "key scheme (LMK)" field for a key to generate or import: Z, U, T for single, double and
// triple TDES (payShield variant forms); R + 2-digit length for AES, the simulator's own form.
func lmkScheme(s hsm.Spec) string {
	if s.Algorithm == hsm.AlgAES {
		return fmt.Sprintf("R%02d", s.Length)
	}
	switch s.Length {
	case 8:
		return "Z"
	case 24:
		return "T"
	}
	return "U"
}

// parseLMKScheme reads the spec's algorithm and length back from a key scheme field.
func parseLMKScheme(p *parser) (hsm.Algorithm, int) {
	switch c := p.str(1); c {
	case "Z":
		return hsm.AlgTDES, 8
	case "U", "X":
		return hsm.AlgTDES, 16
	case "T", "Y":
		return hsm.AlgTDES, 24
	case "R":
		n, err := strconv.Atoi(p.str(2))
		if err != nil {
			p.fail()
		}
		return hsm.AlgAES, n
	}
	p.fail()
	return 0, 0
}

// exportScheme is the "key scheme (ZMK)" field: X9.17 forms, plain ECB under the ZMK or TMK.
func exportScheme(s hsm.Spec) string {
	if s.Algorithm == hsm.AlgAES {
		return "R"
	}
	switch s.Length {
	case 8:
		return "Z"
	case 24:
		return "Y"
	}
	return "X"
}

// exportField writes a key under a ZMK or TMK: X or Y prefix for double and triple TDES, none otherwise.
func exportField(scheme string, enc []byte) string {
	h := strings.ToUpper(hex.EncodeToString(enc))
	if scheme == "X" || scheme == "Y" {
		return scheme + h
	}
	return h
}

// parser reads fields from a message body; the first failure sticks.
type parser struct {
	b   []byte
	err error
}

func (p *parser) fail() { p.failWith(errField) }

// failWith records err unless an earlier failure is already recorded.
func (p *parser) failWith(err error) {
	if p.err == nil {
		p.err = err
	}
}

func (p *parser) take(n int) []byte {
	if p.err != nil || n < 0 || n > len(p.b) {
		p.fail()
		return nil
	}
	v := p.b[:n]
	p.b = p.b[n:]
	return v
}

func (p *parser) str(n int) string { return string(p.take(n)) }

// key reads a key field whose length its first characters give (see hsm.CryptogramLen).
func (p *parser) key() string {
	if p.err != nil {
		return ""
	}
	n, err := hsm.CryptogramLen(string(p.b[:min(len(p.b), 9)]))
	if err != nil {
		p.fail()
		return ""
	}
	return p.str(n)
}

// hex reads n hex characters as n/2 bytes.
func (p *parser) hex(n int) []byte {
	s := p.take(n)
	if p.err != nil {
		return nil
	}
	b := make([]byte, n/2)
	if _, err := hex.Decode(b, s); err != nil {
		p.fail()
		return nil
	}
	return b
}

// hexLen reads a 4-character hex length.
func (p *parser) hexLen() int {
	v, err := strconv.ParseUint(p.str(4), 16, 16)
	if err != nil {
		p.fail()
	}
	return int(v)
}

// dec reads an n-digit decimal number.
func (p *parser) dec(n int) int {
	s := p.str(n)
	v, err := strconv.Atoi(s)
	if err != nil || strings.TrimLeft(s, "0123456789") != "" {
		p.fail()
	}
	return v
}

// optional reports (and consumes) a delimiter c when it comes next.
func (p *parser) optional(c byte) bool {
	if p.err == nil && len(p.b) > 0 && p.b[0] == c {
		p.b = p.b[1:]
		return true
	}
	return false
}

// done fails unless every byte was read.
func (p *parser) done() error {
	if p.err == nil && len(p.b) != 0 {
		p.fail()
	}
	return p.err
}

func appendHex(dst, b []byte) []byte {
	return append(dst, strings.ToUpper(hex.EncodeToString(b))...)
}

func appendHexLen(dst []byte, n int) []byte { return fmt.Appendf(dst, "%04X", n) }

// accountField is the 12-digit account number field of PIN commands: the rightmost 12 PAN digits without the
// check digit. When a format-4 block is involved the simulator takes the whole PAN instead, as "P" + 2-digit
// length + PAN (ISO 4 binds the full PAN).
func accountField(pan string, iso4 bool) (string, error) {
	if len(pan) < 2 || len(pan) > 19 || strings.TrimLeft(pan, "0123456789") != "" {
		return "", hsm.ErrPAN
	}
	if iso4 {
		return fmt.Sprintf("P%02d%s", len(pan), pan), nil
	}
	body := pan[:len(pan)-1]
	if len(body) < 12 {
		body = strings.Repeat("0", 12-len(body)) + body
	}
	return body[len(body)-12:], nil
}

// parseAccount reads an account field written by accountField and returns a PAN for the PIN block code.
func parseAccount(p *parser) string {
	if p.optional('P') {
		return p.str(p.dec(2))
	}
	pan, err := hsm.PANFromAccountField(p.str(12))
	if err != nil {
		p.failWith(err)
	}
	return pan
}

// formatCode and parseFormat convert PIN block formats to payShield codes and back.
func formatCode(f hsm.PINBlockFormat) (string, error) {
	if c := f.PayShieldCode(); c != "" {
		return c, nil
	}
	return "", hsm.ErrPINBlockFormat
}

func parseFormat(p *parser) hsm.PINBlockFormat {
	f, err := hsm.ParsePINBlockFormat(p.str(2))
	if err != nil {
		p.failWith(err)
	}
	return f
}
