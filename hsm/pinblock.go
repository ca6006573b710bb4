package hsm

import (
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// PINBlockFormat is an ISO 9564-1 PIN block format; the value is the ISO format number.
type PINBlockFormat int

// The supported ISO 9564-1 formats.
const (
	ISO0 PINBlockFormat = 0 // PIN XOR PAN, 'F' fill (ANSI X9.8); payShield code 01
	ISO1 PINBlockFormat = 1 // PIN with random fill, no PAN; payShield code 05
	ISO3 PINBlockFormat = 3 // PIN XOR PAN, random A-F fill; payShield code 47
	ISO4 PINBlockFormat = 4 // AES, 16 bytes, PAN bound by the second encryption; payShield code 48
)

// Errors of PIN block handling. They never carry the PIN, the PAN or block contents.
var (
	// ErrPINLength reports a PIN, or a PIN length in a decoded block, outside 4 to 12 digits (payShield 24).
	ErrPINLength = errors.New("hsm: PIN length must be 4 to 12 digits")
	// ErrPINDigits reports a PIN with a character other than 0-9.
	ErrPINDigits = errors.New("hsm: PIN must be decimal digits")
	// ErrPINBlock reports a block that does not decode in its format: wrong size, control nibble or fill
	// (payShield 20); after decryption it usually means the wrong key, PAN or format.
	ErrPINBlock = errors.New("hsm: PIN block is invalid")
	// ErrPINBlockFormat reports an unknown or unsupported format code (payShield 23).
	ErrPINBlockFormat = errors.New("hsm: unsupported PIN block format")
	// ErrPAN reports a PAN that is not 1 to 19 decimal digits (payShield 22).
	ErrPAN = errors.New("hsm: PAN must be 1 to 19 decimal digits")
	// ErrFormatConversion reports a translation the payShield rules forbid: from a PAN-bound format
	// (0, 3, 4) to format 1, which would strip the PAN binding.
	ErrFormatConversion = errors.New("hsm: translation from a PAN-bound PIN block format to format 1 is not permitted")
)

const (
	minPINLen = 4
	maxPINLen = 12
)

// String returns "ISO-0", "ISO-1", "ISO-3" or "ISO-4".
func (f PINBlockFormat) String() string {
	if f.valid() {
		return fmt.Sprintf("ISO-%d", int(f))
	}
	return fmt.Sprintf("PINBlockFormat(%d)", int(f))
}

// PayShieldCode returns the two-digit payShield format code: "01", "05", "47" or "48" ("" if unknown).
func (f PINBlockFormat) PayShieldCode() string {
	switch f {
	case ISO0:
		return "01"
	case ISO1:
		return "05"
	case ISO3:
		return "47"
	case ISO4:
		return "48"
	}
	return ""
}

// Size returns the block length in bytes: 16 for ISO 4, 8 otherwise.
func (f PINBlockFormat) Size() int {
	if f == ISO4 {
		return 16
	}
	return 8
}

// PANBound reports whether the format binds the PIN to the PAN (0, 3 and 4).
func (f PINBlockFormat) PANBound() bool { return f != ISO1 }

func (f PINBlockFormat) valid() bool { return f == ISO0 || f == ISO1 || f == ISO3 || f == ISO4 }

// ParsePINBlockFormat accepts an ISO format number ("0", "1", "3", "4") or a payShield format code
// ("01", "05", "47", "48").
func ParsePINBlockFormat(s string) (PINBlockFormat, error) {
	switch s {
	case "0", "01":
		return ISO0, nil
	case "1", "05":
		return ISO1, nil
	case "3", "47":
		return ISO3, nil
	case "4", "48":
		return ISO4, nil
	}
	return 0, fmt.Errorf("%w: %q (want 0, 1, 3, 4 or payShield 01, 05, 47, 48)", ErrPINBlockFormat, s)
}

// PANFromAccountField turns a payShield 12-digit account number field (the rightmost 12 PAN digits without
// the check digit) into a PAN string that yields the same field in formats 0 and 3: it appends a placeholder
// check digit. Format 4 needs the real full PAN and cannot use it.
func PANFromAccountField(account string) (string, error) {
	if len(account) != 12 || !allDigits(account) {
		return "", fmt.Errorf("%w: account number field must be 12 digits", ErrPAN)
	}
	return account + "0", nil
}

// pinDigits holds a clear PIN as digit values 0-9 on the caller's stack; callers clear it after use.
type pinDigits struct {
	d [maxPINLen]byte
	n int
}

func (p *pinDigits) clear() { *p = pinDigits{} }

func (p *pinDigits) set(pin string) error {
	if len(pin) < minPINLen || len(pin) > maxPINLen {
		return ErrPINLength
	}
	for i := 0; i < len(pin); i++ {
		c := pin[i]
		if c < '0' || c > '9' {
			p.clear()
			return ErrPINDigits
		}
		p.d[i] = c - '0'
	}
	p.n = len(pin)
	return nil
}

func (p *pinDigits) String() string {
	var s [maxPINLen]byte
	for i := 0; i < p.n; i++ {
		s[i] = '0' + p.d[i]
	}
	r := string(s[:p.n])
	clear(s[:])
	return r
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func checkPAN(pan string) error {
	if len(pan) < 1 || len(pan) > 19 || !allDigits(pan) {
		return ErrPAN
	}
	return nil
}

// isoPANField builds the 8-byte PAN field of formats 0 and 3: four zero nibbles and the rightmost 12 PAN
// digits excluding the check digit, left-padded with zeros when the PAN is shorter.
func isoPANField(pan string, f *[8]byte) error {
	if err := checkPAN(pan); err != nil {
		return err
	}
	body := pan[:len(pan)-1]
	if len(body) > 12 {
		body = body[len(body)-12:]
	}
	*f = [8]byte{}
	pos := 16 - len(body) // nibble index of the first digit
	for i := 0; i < len(body); i++ {
		setNibble(f[:], pos+i, body[i]-'0')
	}
	return nil
}

// iso4PANField builds the 16-byte PAN field of format 4: nibble M (PAN length - 12), the PAN (left-padded
// with zeros to 12 digits when shorter), then zeros.
func iso4PANField(pan string, f *[16]byte) error {
	if err := checkPAN(pan); err != nil {
		return err
	}
	*f = [16]byte{}
	m, pos := 0, 1
	if len(pan) >= 12 {
		m = len(pan) - 12
	} else {
		pos += 12 - len(pan)
	}
	setNibble(f[:], 0, byte(m))
	for i := 0; i < len(pan); i++ {
		setNibble(f[:], pos+i, pan[i]-'0')
	}
	return nil
}

func setNibble(b []byte, i int, v byte) {
	if i%2 == 0 {
		b[i/2] = b[i/2]&0x0F | v<<4
	} else {
		b[i/2] = b[i/2]&0xF0 | v&0x0F
	}
}

func nibble(b []byte, i int) byte {
	if i%2 == 0 {
		return b[i/2] >> 4
	}
	return b[i/2] & 0x0F
}

// randomBytes reads n (<= 16) random bytes. It is its own function so that the buffer the io.Reader sees
// is allocated only on the paths that need randomness.
func randomBytes(rnd io.Reader, n int) ([16]byte, error) {
	var b [16]byte
	if rnd == nil {
		rnd = rand.Reader
	}
	if _, err := io.ReadFull(rnd, b[:n]); err != nil {
		return b, fmt.Errorf("hsm: reading random fill: %w", err)
	}
	return b, nil
}

// encodeField writes the clear PIN field of format f into out (f.Size() bytes). For formats 0 and 3 the
// PAN field is XORed in; format 4 gives the plain-text PIN field (the PAN enters at encryption).
func encodeField(f PINBlockFormat, p *pinDigits, pan string, rnd io.Reader, out []byte) error {
	if !f.valid() {
		return ErrPINBlockFormat
	}
	var rb [16]byte
	if f != ISO0 {
		n := 8 // ISO 1: 16 nibbles; ISO 4: the 8 random bytes
		if f == ISO3 {
			n = 16 // one byte per fill nibble
		}
		var err error
		if rb, err = randomBytes(rnd, n); err != nil {
			return err
		}
		defer clear(rb[:])
	}
	setNibble(out, 0, byte(f))
	setNibble(out, 1, byte(p.n))
	for i := 0; i < p.n; i++ {
		setNibble(out, 2+i, p.d[i])
	}
	for i := 2 + p.n; i < 16; i++ {
		var v byte
		switch f {
		case ISO0:
			v = 0xF
		case ISO1:
			v = nibble(rb[:], i) // any value 0-F
		case ISO3:
			v = 0xA + rb[i]%6 // A-F; a whole byte keeps the modulo bias small
		case ISO4:
			v = 0xA
		}
		setNibble(out, i, v)
	}
	switch f {
	case ISO4:
		copy(out[8:16], rb[:8]) // the random half of the PIN field
	case ISO0, ISO3:
		var pf [8]byte
		if err := isoPANField(pan, &pf); err != nil {
			clear(out[:8])
			return err
		}
		xorBytes(out[:8], pf[:])
	}
	return nil
}

// decodeField extracts the PIN from a clear block of format f into p. block is left unchanged.
func decodeField(f PINBlockFormat, block []byte, pan string, p *pinDigits) error {
	if !f.valid() {
		return ErrPINBlockFormat
	}
	if len(block) != f.Size() {
		return ErrPINBlock
	}
	var b [16]byte
	copy(b[:], block)
	defer clear(b[:])
	if f == ISO0 || f == ISO3 {
		var pf [8]byte
		if err := isoPANField(pan, &pf); err != nil {
			return err
		}
		xorBytes(b[:8], pf[:])
	}
	if nibble(b[:], 0) != byte(f) {
		return ErrPINBlock
	}
	n := int(nibble(b[:], 1))
	if n < minPINLen || n > maxPINLen {
		return ErrPINLength
	}
	for i := 0; i < n; i++ {
		d := nibble(b[:], 2+i)
		if d > 9 {
			p.clear()
			return ErrPINBlock
		}
		p.d[i] = d
	}
	p.n = n
	for i := 2 + n; i < 16; i++ {
		v := nibble(b[:], i)
		bad := false
		switch f {
		case ISO0:
			bad = v != 0xF
		case ISO3:
			bad = v < 0xA
		case ISO4:
			bad = v != 0xA
		}
		if bad {
			p.clear()
			return ErrPINBlock
		}
	}
	return nil
}

// EncodePINBlock builds the clear PIN block of format f: 8 bytes for formats 0, 1 and 3; for ISO4 the
// 16-byte plain-text PIN field, which EncryptPINBlockISO4 then binds to the PAN. pan is ignored by
// formats 1 and 4. rnd supplies the fill of formats 1, 3 and 4 (nil means crypto/rand).
func EncodePINBlock(f PINBlockFormat, pin, pan string, rnd io.Reader) ([]byte, error) {
	if !f.valid() {
		return nil, ErrPINBlockFormat
	}
	var p pinDigits
	defer p.clear()
	if err := p.set(pin); err != nil {
		return nil, err
	}
	out := make([]byte, f.Size())
	if err := encodeField(f, &p, pan, rnd, out); err != nil {
		return nil, err
	}
	return out, nil
}

// DecodePINBlock returns the PIN in a clear block of format f (for ISO4 the plain-text PIN field).
// Errors are ErrPINBlock, ErrPINLength, ErrPAN or ErrPINBlockFormat and never contain the PIN.
func DecodePINBlock(f PINBlockFormat, block []byte, pan string) (string, error) {
	var p pinDigits
	defer p.clear()
	if err := decodeField(f, block, pan, &p); err != nil {
		return "", err
	}
	return p.String(), nil
}

// EncryptPINBlockISO4 builds an ISO 9564-1 format 4 block under an AES key: the PIN field is encrypted,
// XORed with the PAN field and encrypted again. It returns 16 bytes.
func EncryptPINBlockISO4(key cipher.Block, pin, pan string, rnd io.Reader) ([]byte, error) {
	var p pinDigits
	defer p.clear()
	if err := p.set(pin); err != nil {
		return nil, err
	}
	out := make([]byte, 16)
	if err := encryptPIN(key, ISO4, &p, pan, rnd, out); err != nil {
		return nil, err
	}
	return out, nil
}

// DecryptPINBlockISO4 reverses EncryptPINBlockISO4 and returns the PIN.
func DecryptPINBlockISO4(key cipher.Block, block []byte, pan string) (string, error) {
	var p pinDigits
	defer p.clear()
	if err := decryptPIN(key, ISO4, block, pan, &p, make([]byte, 16)); err != nil {
		return "", err
	}
	return p.String(), nil
}

// EncryptPINBlock encodes pin in format f and encrypts it under key (TDES for 0, 1, 3; AES for 4).
func EncryptPINBlock(key cipher.Block, f PINBlockFormat, pin, pan string, rnd io.Reader) ([]byte, error) {
	if !f.valid() {
		return nil, ErrPINBlockFormat
	}
	var p pinDigits
	defer p.clear()
	if err := p.set(pin); err != nil {
		return nil, err
	}
	out := make([]byte, f.Size())
	if err := encryptPIN(key, f, &p, pan, rnd, out); err != nil {
		return nil, err
	}
	return out, nil
}

// DecryptPINBlock decrypts a block of format f under key and returns the PIN.
func DecryptPINBlock(key cipher.Block, f PINBlockFormat, block []byte, pan string) (string, error) {
	var p pinDigits
	defer p.clear()
	if err := decryptPIN(key, f, block, pan, &p, make([]byte, 16)); err != nil {
		return "", err
	}
	return p.String(), nil
}

func checkCipher(key cipher.Block, f PINBlockFormat) error {
	if key == nil || key.BlockSize() != f.Size() {
		return fmt.Errorf("%w: ISO 4 PIN blocks need an AES key, formats 0, 1 and 3 a TDES key", ErrAlgorithm)
	}
	return nil
}

// encryptPIN writes the encrypted block of format f for p into out (f.Size() bytes).
func encryptPIN(key cipher.Block, f PINBlockFormat, p *pinDigits, pan string, rnd io.Reader, out []byte) error {
	if err := checkCipher(key, f); err != nil {
		return err
	}
	if f != ISO4 {
		if err := encodeField(f, p, pan, rnd, out); err != nil {
			return err
		}
		key.Encrypt(out, out)
		return nil
	}
	var pf [16]byte
	if err := iso4PANField(pan, &pf); err != nil {
		return err
	}
	if err := encodeField(ISO4, p, pan, rnd, out); err != nil {
		return err
	}
	key.Encrypt(out, out)
	xorBytes(out[:16], pf[:])
	key.Encrypt(out, out)
	return nil
}

// decryptPIN decrypts block (format f) under key and decodes the PIN into p. work (at least f.Size()
// bytes, owned by the caller) holds the clear block for the cipher calls, which would otherwise move a stack
// buffer to the heap; it is zeroed before returning.
func decryptPIN(key cipher.Block, f PINBlockFormat, block []byte, pan string, p *pinDigits, work []byte) error {
	if !f.valid() {
		return ErrPINBlockFormat
	}
	if err := checkCipher(key, f); err != nil {
		return err
	}
	if len(block) != f.Size() {
		return ErrPINBlock
	}
	w := work[:f.Size()]
	defer clear(w)
	key.Decrypt(w, block)
	if f == ISO4 {
		var pf [16]byte
		if err := iso4PANField(pan, &pf); err != nil {
			return err
		}
		xorBytes(w, pf[:])
		key.Decrypt(w, w)
	}
	return decodeField(f, w, pan, p)
}

// TranslatePINBlock decrypts block (format srcFmt under src) and re-encrypts the same PIN in format dstFmt
// under dst, for the same pan, into out (reused when its capacity suffices). It follows the payShield
// rules: no translation from a PAN-bound format (0, 3, 4) to format 1, and the PAN does not change.
// ISO4 blocks need AES keys, the other formats TDES keys (ErrAlgorithm otherwise). rnd supplies the fill
// of formats 1, 3 and 4 (nil means crypto/rand). The clear PIN digits live in a stack buffer that is
// zeroed; out doubles as the cipher's working space (a stack buffer handed to a cipher.Block escapes to
// the heap) and is zeroed on error.
// ISO0 to ISO0 translation allocates nothing when out has room for 8 bytes.
func TranslatePINBlock(src cipher.Block, srcFmt PINBlockFormat, dst cipher.Block, dstFmt PINBlockFormat,
	block []byte, pan string, rnd io.Reader, out []byte) ([]byte, error) {
	if !srcFmt.valid() || !dstFmt.valid() {
		return nil, ErrPINBlockFormat
	}
	if srcFmt.PANBound() && dstFmt == ISO1 {
		return nil, ErrFormatConversion
	}
	if err := checkCipher(dst, dstFmt); err != nil {
		return nil, err
	}
	need := max(srcFmt.Size(), dstFmt.Size())
	if cap(out) < need {
		out = make([]byte, need)
	}
	var p pinDigits
	err := decryptPIN(src, srcFmt, block, pan, &p, out[:need])
	if err == nil {
		err = encryptPIN(dst, dstFmt, &p, pan, rnd, out[:dstFmt.Size()])
	}
	p.clear()
	if err != nil {
		clear(out[:need])
		return nil, err
	}
	return out[:dstFmt.Size()], nil
}
