package codec_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/railswitch/railswitch/codec"
)

// fuzzUnpack checks, for any input: no panic; when the spec accepts it, pack(unpack(b)) == b, and re-encoding
// every logical value gives a message that unpacks to the same values.
func fuzzUnpack(f *testing.F, name string) {
	s := spec(f, name)
	for _, js := range samples[name] {
		frame := frameOf(f, s, js)
		body, _, _ := s.Framing().Split(frame)
		f.Add(body)
	}
	if name == "cup-pos" || name == "rail-pos" {
		f.Add(mustHex(f, cupSignOnReply)[2:])
		f.Add(mustHex(f, cupSignOnFrame)[2:])
	}
	fr := s.Framing()
	f.Fuzz(func(t *testing.T, body []byte) {
		m := codec.NewMessage(s)
		err := m.UnpackFrame(fr, body)
		_ = m.Dump(io.Discard, codec.DumpOptions{})
		if err != nil {
			var fe *codec.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FieldError: %v", err, err)
			}
			return
		}
		_ = m.AppendJSON(nil, codec.DumpOptions{ShowSensitive: true})
		out, err := m.AppendFrame(fr, nil)
		if err != nil {
			t.Fatalf("pack of an accepted message: %v", err)
		}
		if got, _, _ := fr.Split(out); !bytes.Equal(got, body) {
			t.Fatalf("pack(unpack(b)) != b:\n%X\n%X", got, body)
		}
		re := codec.NewMessage(s)
		_ = re.SetMTI(m.MTI())
		for _, n := range m.Fields() {
			if err := re.CopyField(n, m); err != nil {
				t.Fatalf("field %d: logical value refused on re-encode: %v", n, err)
			}
		}
		packed, err := re.Pack(nil)
		if err != nil {
			t.Fatal(err)
		}
		back := codec.NewMessage(s)
		if err := back.Unpack(packed); err != nil {
			t.Fatalf("re-encoded message does not unpack: %v", err)
		}
		for _, n := range m.Fields() {
			a, _ := m.Value(n)
			b, _ := back.Value(n)
			if !bytes.Equal(a, b) {
				t.Fatalf("field %d changed on re-encode: %q -> %q", n, a, b)
			}
		}
	})
}

func FuzzUnpackCUPPOS(f *testing.F)      { fuzzUnpack(f, "cup-pos") }
func FuzzUnpackRailPOS(f *testing.F)     { fuzzUnpack(f, "rail-pos") }
func FuzzUnpackKiosk(f *testing.F)       { fuzzUnpack(f, "kiosk") }
func FuzzUnpackISO87ASCII(f *testing.F)  { fuzzUnpack(f, "iso87-ascii") }
func FuzzUnpackISO87Binary(f *testing.F) { fuzzUnpack(f, "iso87-binary") }
func FuzzUnpackISO87EBCDIC(f *testing.F) { fuzzUnpack(f, "iso87-ebcdic") }

// FuzzFramers runs every framer (each length header, with and without TPDU and header) over the same bytes:
// no panic, used never exceeds the input, and a found frame re-framed gives the same bytes.
func FuzzFramers(f *testing.F) {
	f.Add(mustHex(f, cupSignOnFrame))
	f.Add(mustHex(f, "00056000000000"))
	f.Add([]byte("0000"))
	f.Add([]byte("0004ABCD0002"))
	f.Add(mustHex(f, "99990000"))
	f.Add(mustHex(f, "FFFF"))
	framings := []codec.Framing{
		{Length: codec.LenBinary2, TPDU: true, HeaderLen: 6},
		{Length: codec.LenBinary2},
		{Length: codec.LenASCII4},
		{Length: codec.LenBCD2},
		{Length: codec.LenNone},
		{Length: codec.LenBinary2, MaxFrame: 512},
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, fr := range framings {
			rest := b
			for len(rest) > 0 {
				body, used, err := fr.Split(rest)
				if err != nil {
					break
				}
				if used <= 0 && fr.Length != codec.LenNone || used > len(rest) || len(body) > used {
					t.Fatalf("%+v: used %d of %d, body %d", fr, used, len(rest), len(body))
				}
				_ = fr.IsKeepAlive(body)
				rest = rest[used:]
			}
		}
	})
}

// FuzzTLV parses arbitrary chip data: no panic, and elements re-encoded in the canonical form parse back to
// the same tags and values.
func FuzzTLV(f *testing.F) {
	f.Add(mustHex(f, chipData))
	f.Add(mustHex(f, "9F1F820100"))
	f.Add(mustHex(f, "00FF9F"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var elems []codec.TLV
		if err := codec.ParseTLV(b, func(e codec.TLV) error { elems = append(elems, e); return nil }); err != nil {
			return
		}
		var out []byte
		for _, e := range elems {
			out = codec.AppendTLV(out, e.Tag, e.Value)
		}
		i := 0
		err := codec.ParseTLV(out, func(e codec.TLV) error {
			if e.Tag != elems[i].Tag || !bytes.Equal(e.Value, elems[i].Value) {
				t.Fatalf("element %d changed", i)
			}
			i++
			return nil
		})
		if err != nil || i != len(elems) {
			t.Fatalf("re-encoded TLV: %v (%d of %d)", err, i, len(elems))
		}
	})
}
