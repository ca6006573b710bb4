package codec

import "fmt"

// Kind is the logical type of a field, from ISO 8583's attribute letters.
type Kind uint8

// Field kinds.
const (
	KindNumeric Kind = iota + 1 // n: decimal digits
	KindTrack                   // z: track data, digits and '=' (nibble D) or hex digits when encrypted
	KindText                    // a, an, ans: characters in the field's character set
	KindBinary                  // b: raw bytes
)

// LengthType says how a field's length is known: fixed, or a prefix of 2, 3 or 4 digits (LL, LLL, LLLL).
type LengthType uint8

// Length types.
const (
	Fixed LengthType = iota
	LL
	LLL
	LLLL
)

// Encoding is how a field's logical value is written on the wire.
type Encoding uint8

// Encodings.
const (
	EncASCII   Encoding = iota + 1 // one byte per character or digit
	EncEBCDIC                      // one EBCDIC (code page 037) byte per character or digit
	EncBCD                         // packed BCD, right-aligned: an odd count gets a leading pad nibble
	EncBCDLeft                     // packed BCD, left-aligned: an odd count gets a trailing pad nibble
	EncBinary                      // raw bytes
	EncHex                         // binary data as uppercase hex ASCII, two characters a byte
)

// PrefixEncoding is how a variable field's length prefix is written.
type PrefixEncoding uint8

// Prefix encodings.
const (
	PrefixASCII  PrefixEncoding = iota + 1 // decimal digits in ASCII, as many as the length type has L
	PrefixBCD                              // packed BCD: LL in 1 byte, LLL and LLLL in 2 bytes
	PrefixBinary                           // big-endian binary: LL in 1 byte, LLL and LLLL in 2 bytes
	PrefixEBCDIC                           // decimal digits in EBCDIC
)

// Counting says what a variable length prefix counts.
type Counting uint8

// Countings.
const (
	CountUnits Counting = iota // digits for n and z, characters for text, bytes for binary (the usual case)
	CountBytes                 // bytes on the wire after encoding
)

// Charset is the character set of a text field's bytes.
type Charset uint8

// Character sets.
const (
	CharsetASCII Charset = iota
	CharsetGBK
	CharsetEBCDIC
)

// Sensitivity marks fields that carry card data; dumps mask them unless asked not to.
type Sensitivity uint8

// Sensitivity classes.
const (
	NotSensitive   Sensitivity = iota
	SensitivePAN               // shown as first 6 + last 4 digits
	SensitiveTrack             // track data: hidden
	SensitivePIN               // PIN block: hidden
	SensitiveChip              // chip data (field 55): hidden
	SensitiveKey               // key material: hidden
)

// MTIEncoding is how the message type indicator is written.
type MTIEncoding uint8

// MTI encodings.
const (
	MTIASCII MTIEncoding = iota + 1
	MTIBCD
	MTIEBCDIC
)

// BitmapEncoding is how bitmaps are written.
type BitmapEncoding uint8

// Bitmap encodings.
const (
	BitmapBinary BitmapEncoding = iota + 1 // 8 bytes per bitmap
	BitmapHex                              // 16 uppercase hex ASCII characters per bitmap
)

// LengthHeader is the frame length header of a channel.
type LengthHeader uint8

// Length headers.
const (
	LenNone    LengthHeader = iota + 1 // no length header: one read is one message (or the caller knows the size)
	LenBinary2                         // 2 bytes big-endian binary, excluding itself
	LenASCII4                          // 4 ASCII decimal digits, excluding itself
	LenBCD2                            // 2 bytes packed BCD (up to 9999), excluding itself
)

// SubfieldDef is one fixed-position subfield of a field, counted in the field's logical units (digits or
// characters or bytes). A subfield whose Length is 0 runs to the end of the field.
type SubfieldDef struct {
	ID     int
	Name   string
	Length int
}

// FieldDef describes one data element. The spec loader fills it from a file; zero encodings take the spec's
// defaults for the field's kind at Compile time.
type FieldDef struct {
	Number      int
	Name        string
	Kind        Kind
	Length      LengthType
	Size        int // fixed length, or the maximum of a variable field, in logical units
	Prefix      PrefixEncoding
	Counting    Counting
	Encoding    Encoding
	PadF        bool // BCD: write F as the pad nibble instead of 0 (both are read)
	Charset     Charset
	Sensitivity Sensitivity
	TLV         bool // the value is BER-TLV (EMV chip data)
	Subfields   []SubfieldDef
}

// Defaults are a spec's encodings for fields that do not name their own.
type Defaults struct {
	Prefix  PrefixEncoding
	Numeric Encoding
	Track   Encoding
	Text    Encoding
	Binary  Encoding
}

// Framing is a channel's framing: length header, optional TPDU and optional fixed message header.
type Framing struct {
	Length    LengthHeader
	TPDU      bool // a 5-byte TPDU follows the length header
	HeaderLen int  // bytes of a fixed message header after the TPDU (UnionPay: 6)
	MaxFrame  int  // largest accepted frame body in bytes; 0 means the length header's own limit
}

// SpecDef is a specification as data: what a spec file holds.
type SpecDef struct {
	Name        string
	Description string
	MTI         MTIEncoding
	Bitmap      BitmapEncoding
	Tertiary    bool // bit 65 announces a tertiary bitmap (fields 129-192) instead of being field 65
	Framing     Framing
	Defaults    Defaults
	Fields      []FieldDef
}

var kindNames = map[Kind]string{KindNumeric: "n", KindTrack: "z", KindText: "ans", KindBinary: "b"}

// String names the value as spec files write it.
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

var encodingNames = map[Encoding]string{EncASCII: "ascii", EncEBCDIC: "ebcdic", EncBCD: "bcd", EncBCDLeft: "bcd-left",
	EncBinary: "binary", EncHex: "hex"}

// String names the value as spec files write it.
func (e Encoding) String() string {
	if s, ok := encodingNames[e]; ok {
		return s
	}
	return fmt.Sprintf("encoding(%d)", uint8(e))
}

var lengthNames = map[LengthType]string{Fixed: "fixed", LL: "LL", LLL: "LLL", LLLL: "LLLL"}

// String names the value as spec files write it.
func (l LengthType) String() string { return lengthNames[l] }

// digits is the number of decimal digits of the length type's prefix (0 for fixed).
func (l LengthType) digits() int {
	switch l {
	case LL:
		return 2
	case LLL:
		return 3
	case LLLL:
		return 4
	}
	return 0
}
