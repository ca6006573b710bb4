package codec

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// oneField compiles a spec with the given field as field 2 (ASCII MTI, hex bitmap, no framing).
func oneField(t testing.TB, fd FieldDef) *Spec {
	t.Helper()
	fd.Number = 2
	s, err := Compile(SpecDef{Name: "t", MTI: MTIASCII, Bitmap: BitmapHex, Framing: Framing{Length: LenNone},
		Fields: []FieldDef{fd}})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return s
}

const hdr = "0200" + "4000000000000000" // ASCII MTI and a hex bitmap with field 2

func TestFieldKindsEncodeAndDecode(t *testing.T) {
	cases := []struct {
		name  string
		fd    FieldDef
		value string // logical value
		wire  string // hex of the field's wire bytes
	}{
		{"n fixed ascii", FieldDef{Kind: KindNumeric, Length: Fixed, Size: 6, Encoding: EncASCII}, "000123", "303030313233"},
		{"n fixed bcd right odd", FieldDef{Kind: KindNumeric, Length: Fixed, Size: 3, Encoding: EncBCD}, "001", "0001"},
		{"n fixed bcd left odd (field 22)", FieldDef{Kind: KindNumeric, Length: Fixed, Size: 3, Encoding: EncBCDLeft}, "021", "0210"},
		{"n fixed bcd left pad F", FieldDef{Kind: KindNumeric, Length: Fixed, Size: 3, Encoding: EncBCDLeft, PadF: true}, "021", "021F"},
		{"n fixed bcd right pad F", FieldDef{Kind: KindNumeric, Length: Fixed, Size: 3, Encoding: EncBCD, PadF: true}, "123", "F123"},
		{"n fixed ebcdic", FieldDef{Kind: KindNumeric, Length: Fixed, Size: 4, Encoding: EncEBCDIC}, "0413", "F0F4F1F3"},
		{"n LL bcd-left, BCD prefix counts digits", FieldDef{Kind: KindNumeric, Length: LL, Size: 11, Encoding: EncBCDLeft, Prefix: PrefixBCD}, "00006603003", "11" + "000066030030"},
		{"n LLL bcd-left, BCD prefix", FieldDef{Kind: KindNumeric, Length: LLL, Size: 17, Encoding: EncBCDLeft, Prefix: PrefixBCD}, "00000000003", "0011" + "000000000030"},
		{"n LL bcd, counting bytes", FieldDef{Kind: KindNumeric, Length: LL, Size: 20, Encoding: EncBCD, Prefix: PrefixBCD, Counting: CountBytes}, "1234", "02" + "1234"},
		{"n LL ascii, ASCII prefix", FieldDef{Kind: KindNumeric, Length: LL, Size: 11, Encoding: EncASCII, Prefix: PrefixASCII}, "00096500", "3038" + "3030303936353030"},
		{"n LL ebcdic, EBCDIC prefix", FieldDef{Kind: KindNumeric, Length: LL, Size: 11, Encoding: EncEBCDIC, Prefix: PrefixEBCDIC}, "123", "F0F3" + "F1F2F3"},
		{"n LLLL binary prefix", FieldDef{Kind: KindNumeric, Length: LLLL, Size: 9999, Encoding: EncASCII, Prefix: PrefixBinary}, "42", "0002" + "3432"},
		{"z LL track 2 '=' as D", FieldDef{Kind: KindTrack, Length: LL, Size: 37, Encoding: EncBCDLeft, Prefix: PrefixBCD}, "4012345678909=2512", "18" + "4012345678909D2512"},
		{"z odd length pads", FieldDef{Kind: KindTrack, Length: LL, Size: 37, Encoding: EncBCDLeft, Prefix: PrefixBCD}, "4012345678909=251", "17" + "4012345678909D2510"},
		{"z encrypted hex digits", FieldDef{Kind: KindTrack, Length: LL, Size: 37, Encoding: EncBCDLeft, Prefix: PrefixBCD}, "40123456789ABCEF", "16" + "40123456789ABCEF"},
		{"z ascii", FieldDef{Kind: KindTrack, Length: LL, Size: 37, Encoding: EncASCII, Prefix: PrefixASCII}, "4012=25", "3037" + "343031323D3235"},
		{"ans fixed ascii", FieldDef{Kind: KindText, Length: Fixed, Size: 8, Encoding: EncASCII}, "22003600", "3232303033363030"},
		{"ans LLL ascii, BCD prefix counts bytes", FieldDef{Kind: KindText, Length: LLL, Size: 163, Encoding: EncASCII, Prefix: PrefixBCD}, "000", "0003" + "303030"},
		{"ans fixed ebcdic", FieldDef{Kind: KindText, Length: Fixed, Size: 2, Encoding: EncEBCDIC}, "A1", "C1F1"},
		{"b fixed binary", FieldDef{Kind: KindBinary, Length: Fixed, Size: 4, Encoding: EncBinary}, "\x01\x02\xfe\xff", "0102FEFF"},
		{"b fixed hex", FieldDef{Kind: KindBinary, Length: Fixed, Size: 2, Encoding: EncHex}, "\x1a\x2b", "31413242"},
		{"b LLL binary, BCD prefix", FieldDef{Kind: KindBinary, Length: LLL, Size: 512, Encoding: EncBinary, Prefix: PrefixBCD}, "\x9f\x26", "0002" + "9F26"},
		{"b LL hex counting bytes", FieldDef{Kind: KindBinary, Length: LL, Size: 40, Encoding: EncHex, Prefix: PrefixASCII, Counting: CountBytes}, "\xab", "3032" + "4142"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := oneField(t, c.fd)
			m := NewMessage(s)
			_ = m.SetMTI("0200")
			if err := m.Set(2, []byte(c.value)); err != nil {
				t.Fatalf("set: %v", err)
			}
			packed, err := m.Pack(nil)
			if err != nil {
				t.Fatalf("pack: %v", err)
			}
			want := append([]byte(hdr), mustHex(t, c.wire)...)
			if !bytes.Equal(packed, want) {
				t.Fatalf("pack = %X, want %X", packed, want)
			}
			u := NewMessage(s)
			if err := u.Unpack(packed); err != nil {
				t.Fatalf("unpack: %v", err)
			}
			if got, _ := u.Value(2); string(got) != c.value {
				t.Fatalf("value = %q, want %q", got, c.value)
			}
			again, _ := u.Pack(nil)
			if !bytes.Equal(again, packed) {
				t.Fatalf("repack = %X, want %X", again, packed)
			}
		})
	}
}

func TestBCDReadsBothPadNibbles(t *testing.T) {
	for _, pad := range []string{"0", "F"} {
		s := oneField(t, FieldDef{Kind: KindNumeric, Length: LL, Size: 11, Encoding: EncBCDLeft, Prefix: PrefixBCD})
		m := NewMessage(s)
		in := append([]byte(hdr), mustHex(t, "03"+"12"+"3"+pad)...)
		if err := m.Unpack(in); err != nil {
			t.Fatalf("pad %s: %v", pad, err)
		}
		if v := m.String(2); v != "123" {
			t.Fatalf("pad %s: value %q", pad, v)
		}
		// Re-encoding from the logical value writes the spec's pad nibble (0 here).
		out := NewMessage(s)
		_ = out.SetMTI("0200")
		_ = out.CopyField(2, m)
		packed, _ := out.Pack(nil)
		if got := hex.EncodeToString(packed[len(hdr):]); got != "031230" {
			t.Fatalf("pad %s: re-encoded %s, want 031230", pad, got)
		}
	}
}

func TestUnpackRefusesBadFields(t *testing.T) {
	cases := []struct {
		name string
		fd   FieldDef
		wire string
		err  error
		text string
	}{
		{"length over maximum", FieldDef{Kind: KindTrack, Length: LL, Size: 37, Encoding: EncBCDLeft, Prefix: PrefixBCD}, "41" + "00", ErrTooLong, "field 2: length 41 exceeds maximum 37 at offset 20"},
		{"length beyond input", FieldDef{Kind: KindText, Length: LLL, Size: 999, Encoding: EncASCII, Prefix: PrefixASCII}, "393939" + "41", ErrShort, "field 2: length 999 needs 999 bytes, 1 left at offset 20"},
		{"prefix not digits", FieldDef{Kind: KindText, Length: LL, Size: 99, Encoding: EncASCII, Prefix: PrefixASCII}, "3A30", ErrBadValue, "field 2: length prefix is not ASCII digits at offset 20"},
		{"BCD prefix not digits", FieldDef{Kind: KindText, Length: LL, Size: 99, Encoding: EncASCII, Prefix: PrefixBCD}, "1A", ErrBadValue, ""},
		{"letter in BCD numeric", FieldDef{Kind: KindNumeric, Length: Fixed, Size: 4, Encoding: EncBCD}, "12A4", ErrBadValue, "field 2: not BCD digits at offset 20"},
		{"letter in ASCII numeric", FieldDef{Kind: KindNumeric, Length: Fixed, Size: 2, Encoding: EncASCII}, "3141", ErrBadValue, ""},
		{"bad pad nibble", FieldDef{Kind: KindNumeric, Length: Fixed, Size: 3, Encoding: EncBCDLeft}, "0215", ErrBadValue, ""},
		{"odd hex", FieldDef{Kind: KindBinary, Length: Fixed, Size: 1, Encoding: EncHex}, "5A5A", ErrBadValue, ""},
		{"trailing bytes", FieldDef{Kind: KindNumeric, Length: Fixed, Size: 2, Encoding: EncASCII}, "313200", ErrTrailing, ""},
		{"input ends in prefix", FieldDef{Kind: KindText, Length: LLL, Size: 999, Encoding: EncASCII, Prefix: PrefixASCII}, "39", ErrShort, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := NewMessage(oneField(t, c.fd))
			err := m.Unpack(append([]byte(hdr), mustHex(t, c.wire)...))
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FieldError", err)
			}
			if c.text != "" && err.Error() != c.text {
				t.Fatalf("error text %q, want %q", err.Error(), c.text)
			}
			if m.MTI() != "0200" {
				t.Fatalf("MTI lost after the error: %q", m.MTI())
			}
		})
	}
}

func TestSetChecksValues(t *testing.T) {
	cases := []struct {
		name  string
		fd    FieldDef
		value string
		err   error
	}{
		{"too long", FieldDef{Kind: KindNumeric, Length: LL, Size: 4, Encoding: EncASCII, Prefix: PrefixASCII}, "12345", ErrTooLong},
		{"letter in numeric", FieldDef{Kind: KindNumeric, Length: Fixed, Size: 4, Encoding: EncBCD}, "12a4", ErrBadValue},
		{"bad track character", FieldDef{Kind: KindTrack, Length: LL, Size: 37, Encoding: EncBCDLeft, Prefix: PrefixBCD}, "4012^", ErrBadValue},
		{"short binary", FieldDef{Kind: KindBinary, Length: Fixed, Size: 8, Encoding: EncBinary}, "abc", ErrBadValue},
		{"non-ASCII in EBCDIC text", FieldDef{Kind: KindText, Length: Fixed, Size: 2, Encoding: EncEBCDIC}, "\xe4\xb8", ErrBadValue},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := NewMessage(oneField(t, c.fd))
			if err := m.Set(2, []byte(c.value)); !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if m.Has(2) {
				t.Fatal("a refused value was stored")
			}
		})
	}
}

func TestFixedFieldsArePadded(t *testing.T) {
	m := NewMessage(oneField(t, FieldDef{Kind: KindNumeric, Length: Fixed, Size: 6, Encoding: EncBCD}))
	if err := m.SetAmount(2, 42); err != nil {
		t.Fatal(err)
	}
	if v := m.String(2); v != "000042" {
		t.Fatalf("numeric padding: %q", v)
	}
	if a, err := m.Amount(2); err != nil || a != 42 {
		t.Fatalf("amount = %d, %v", a, err)
	}
	m = NewMessage(oneField(t, FieldDef{Kind: KindText, Length: Fixed, Size: 8, Encoding: EncASCII}))
	_ = m.SetString(2, "T1")
	if v := m.String(2); v != "T1      " {
		t.Fatalf("text padding: %q", v)
	}
}

func TestCompileRefusesImpossibleSpecs(t *testing.T) {
	base := func(fd FieldDef) SpecDef {
		return SpecDef{Name: "x", MTI: MTIASCII, Bitmap: BitmapBinary, Framing: Framing{Length: LenNone}, Fields: []FieldDef{fd}}
	}
	cases := []struct {
		name string
		def  SpecDef
		want string
	}{
		{"max beyond LL prefix", base(FieldDef{Number: 2, Kind: KindNumeric, Length: LL, Size: 120, Encoding: EncASCII, Prefix: PrefixASCII}), "field 2: maximum 120 does not fit a LL prefix of 2 byte(s) (at most 99)"},
		{"track as binary", base(FieldDef{Number: 35, Kind: KindTrack, Length: LL, Size: 37, Encoding: EncBinary, Prefix: PrefixBCD}), "field 35: kind z cannot be encoded as binary"},
		{"gbk numeric", base(FieldDef{Number: 3, Kind: KindNumeric, Length: Fixed, Size: 6, Encoding: EncASCII, Charset: CharsetGBK}), "field 3: charset gbk is for text fields encoded as ascii bytes"},
		{"field 1", base(FieldDef{Number: 1, Kind: KindBinary, Length: Fixed, Size: 8, Encoding: EncBinary}), "field 1: field number must be 2..192 (1 is the secondary bitmap)"},
		{"no encoding", base(FieldDef{Number: 3, Kind: KindNumeric, Length: Fixed, Size: 6}), "field 3: no encoding given and the spec has no default for kind n"},
		{"tlv on text", base(FieldDef{Number: 55, Kind: KindText, Length: LLL, Size: 255, Encoding: EncASCII, Prefix: PrefixASCII, TLV: true}), "field 55: tlv is for binary fields"},
		{"subfields too long", base(FieldDef{Number: 60, Kind: KindNumeric, Length: Fixed, Size: 4, Encoding: EncASCII, Subfields: []SubfieldDef{{ID: 1, Length: 3}, {ID: 2, Length: 3}}}), "field 60: subfields add up to 6, more than the field's 4"},
		{"field over 128 without tertiary", base(FieldDef{Number: 130, Kind: KindNumeric, Length: Fixed, Size: 1, Encoding: EncASCII}), "field 130: fields above 128 need tertiary: true"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(c.def)
			if err == nil || err.Error() != c.want {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func TestSecondaryAndTertiaryBitmaps(t *testing.T) {
	def := SpecDef{Name: "x", MTI: MTIASCII, Bitmap: BitmapBinary, Tertiary: true, Framing: Framing{Length: LenNone},
		Fields: []FieldDef{
			{Number: 3, Kind: KindNumeric, Length: Fixed, Size: 6, Encoding: EncASCII},
			{Number: 70, Kind: KindNumeric, Length: Fixed, Size: 3, Encoding: EncASCII},
			{Number: 150, Kind: KindText, Length: LL, Size: 20, Encoding: EncASCII, Prefix: PrefixASCII},
		}}
	s, err := Compile(def)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMessage(s)
	_ = m.SetMTI("0800")
	_ = m.SetString(70, "301")
	p2, _ := m.Pack(nil)
	// primary (bit 1 set) + secondary (bit 70), no tertiary
	if got := hex.EncodeToString(p2[4:20]); got != "80000000000000000400000000000000" {
		t.Fatalf("bitmaps %s", got)
	}
	_ = m.SetString(150, "hello")
	_ = m.SetString(3, "990000")
	p3, _ := m.Pack(nil)
	if got := hex.EncodeToString(p3[4:28]); got != "a000000000000000"+"8400000000000000"+"0000040000000000" {
		t.Fatalf("bitmaps with tertiary %s", got)
	}
	u := NewMessage(s)
	if err := u.Unpack(p3); err != nil {
		t.Fatal(err)
	}
	if u.String(150) != "hello" || u.String(70) != "301" || u.String(3) != "990000" {
		t.Fatalf("fields: %v", u.Fields())
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}
