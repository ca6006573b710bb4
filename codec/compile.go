package codec

import (
	"errors"
	"fmt"
)

// MaxField is the highest data element number (three bitmaps).
const MaxField = 192

// field is a compiled field definition: every choice resolved to plain values, so the hot path is a switch
// on small integers instead of an interface call per field.
type field struct {
	meta      *fieldMeta // the cold part, kept out of the table so the hot loop's fields share cache lines
	defined   bool
	kind      Kind
	ltype     LengthType
	size      int // fixed length or maximum, logical units
	prefix    PrefixEncoding
	plen      int // prefix bytes
	pmax      int // largest value the prefix can carry
	counting  Counting
	enc       Encoding
	pad       byte // pad nibble written: 0x0 or 0xF
	fixedWire int  // wire bytes of a fixed field
}

// fieldMeta is what dumps and subfield views need of a field, and the hot path does not.
type fieldMeta struct {
	def      FieldDef
	subStart []int
}

// Spec is a compiled specification, safe for concurrent use by any number of messages.
type Spec struct {
	def    SpecDef
	fields [MaxField + 1]field
}

// Name returns the spec's name.
func (s *Spec) Name() string { return s.def.Name }

// Def returns the definition the spec was compiled from, with every default filled in.
func (s *Spec) Def() SpecDef { return s.def }

// Framing returns the spec's framing.
func (s *Spec) Framing() Framing { return s.def.Framing }

// Field returns the definition of field n, with defaults filled in, and whether the spec has it.
func (s *Spec) Field(n int) (FieldDef, bool) {
	if n < 1 || n > MaxField || !s.fields[n].defined {
		return FieldDef{}, false
	}
	return s.fields[n].meta.def, true
}

// Compile checks a specification and turns it into the flat table Unpack and Pack use. Every impossible
// setting is reported as a *SpecError (several are joined).
func Compile(def SpecDef) (*Spec, error) {
	s := &Spec{def: def}
	var errs []error
	bad := func(n int, format string, args ...any) {
		errs = append(errs, &SpecError{Field: n, Msg: fmt.Sprintf(format, args...)})
	}
	if def.Name == "" {
		bad(0, "spec has no name")
	}
	if def.MTI < MTIASCII || def.MTI > MTIEBCDIC {
		bad(0, "mti encoding must be ascii, bcd or ebcdic")
	}
	if def.Bitmap != BitmapBinary && def.Bitmap != BitmapHex {
		bad(0, "bitmap encoding must be binary or hex")
	}
	fr := def.Framing
	if fr.Length < LenNone || fr.Length > LenBCD2 {
		bad(0, "framing length must be none, binary2, ascii4 or bcd2")
	}
	if fr.HeaderLen < 0 || fr.HeaderLen > 64 {
		bad(0, "framing header length %d is outside 0..64", fr.HeaderLen)
	}
	if fr.MaxFrame < 0 {
		bad(0, "framing max_frame must not be negative")
	}
	for i := range def.Fields {
		fd := def.Fields[i]
		n := fd.Number
		switch {
		case n < 2 || n > MaxField:
			bad(n, "field number must be 2..%d (1 is the secondary bitmap)", MaxField)
			continue
		case n == 65 && def.Tertiary:
			bad(n, "field 65 is the tertiary bitmap in this spec")
			continue
		case n > 128 && !def.Tertiary:
			bad(n, "fields above 128 need tertiary: true")
			continue
		case s.fields[n].defined:
			bad(n, "defined twice")
			continue
		}
		if msg := s.compileField(&s.fields[n], fd); msg != "" {
			bad(n, "%s", msg)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for i := range def.Fields {
		s.def.Fields[i] = s.fields[def.Fields[i].Number].meta.def
	}
	return s, nil
}

// compileField resolves one field; it returns what is impossible about it, or "".
func (s *Spec) compileField(f *field, fd FieldDef) string {
	d := s.def.Defaults
	if fd.Encoding == 0 {
		switch fd.Kind {
		case KindNumeric:
			fd.Encoding = d.Numeric
		case KindTrack:
			fd.Encoding = d.Track
		case KindText:
			fd.Encoding = d.Text
		case KindBinary:
			fd.Encoding = d.Binary
		}
		if fd.Encoding == 0 {
			return fmt.Sprintf("no encoding given and the spec has no default for kind %s", fd.Kind)
		}
	}
	if fd.Length != Fixed && fd.Prefix == 0 {
		fd.Prefix = d.Prefix
		if fd.Prefix == 0 {
			return "no length prefix encoding given and the spec has no default"
		}
	}
	if fd.Encoding == EncEBCDIC && fd.Kind == KindText {
		fd.Charset = CharsetEBCDIC
	}
	ok := false
	switch fd.Kind {
	case KindNumeric, KindTrack:
		ok = fd.Encoding == EncASCII || fd.Encoding == EncEBCDIC || fd.Encoding == EncBCD || fd.Encoding == EncBCDLeft
	case KindText:
		ok = fd.Encoding == EncASCII || fd.Encoding == EncEBCDIC
	case KindBinary:
		ok = fd.Encoding == EncBinary || fd.Encoding == EncHex
	default:
		return "unknown kind"
	}
	if !ok {
		return fmt.Sprintf("kind %s cannot be encoded as %s", fd.Kind, fd.Encoding)
	}
	if fd.Charset == CharsetGBK && (fd.Kind != KindText || fd.Encoding != EncASCII) {
		return "charset gbk is for text fields encoded as ascii bytes"
	}
	if fd.TLV && fd.Kind != KindBinary {
		return "tlv is for binary fields"
	}
	if fd.PadF && fd.Encoding != EncBCD && fd.Encoding != EncBCDLeft {
		return "pad F is for BCD encodings"
	}
	if fd.Size <= 0 {
		return "length must be positive"
	}
	*f = field{meta: &fieldMeta{def: fd}, defined: true, kind: fd.Kind, ltype: fd.Length, size: fd.Size, prefix: fd.Prefix,
		counting: fd.Counting, enc: fd.Encoding}
	if fd.PadF {
		f.pad = 0xF
	}
	if fd.Length == Fixed {
		f.fixedWire = f.wireLen(fd.Size)
		if fd.Encoding == EncHex && fd.Counting == CountBytes {
			return "counting bytes is for variable fields"
		}
	} else {
		if fd.Length < LL || fd.Length > LLLL {
			return "unknown length type"
		}
		digits := fd.Length.digits()
		switch fd.Prefix {
		case PrefixASCII, PrefixEBCDIC:
			f.plen, f.pmax = digits, pow10(digits)-1
		case PrefixBCD:
			f.plen, f.pmax = (digits+1)/2, pow10(digits)-1
		case PrefixBinary:
			f.plen = 1
			if fd.Length != LL {
				f.plen = 2
			}
			f.pmax = 1<<(8*f.plen) - 1
		default:
			return "unknown length prefix encoding"
		}
		limit := fd.Size
		if fd.Counting == CountBytes {
			limit = f.wireLen(fd.Size)
		}
		if limit > f.pmax {
			return fmt.Sprintf("maximum %d does not fit a %s prefix of %d byte(s) (at most %d)", fd.Size, fd.Length, f.plen, f.pmax)
		}
	}
	if len(fd.Subfields) > 0 {
		pos := 0
		for i, sf := range fd.Subfields {
			if sf.Length < 0 || (sf.Length == 0 && i != len(fd.Subfields)-1) {
				return fmt.Sprintf("subfield %d: only the last subfield may run to the end (length 0)", sf.ID)
			}
			f.meta.subStart = append(f.meta.subStart, pos)
			pos += sf.Length
		}
		if pos > fd.Size {
			return fmt.Sprintf("subfields add up to %d, more than the field's %d", pos, fd.Size)
		}
	}
	return ""
}

// wireLen is the number of wire bytes that l logical units take.
func (f *field) wireLen(l int) int {
	switch f.enc {
	case EncBCD, EncBCDLeft:
		return (l + 1) / 2
	case EncHex:
		return 2 * l
	}
	return l
}

func pow10(n int) int {
	v := 1
	for ; n > 0; n-- {
		v *= 10
	}
	return v
}
