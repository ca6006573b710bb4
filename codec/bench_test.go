package codec_test

import (
	"testing"

	"github.com/railswitch/railswitch/codec"
)

// The 0200 of BenchmarkCUP0200: 2,3,4,11,14,22,23,25,26,35,41,42,49,52,53,55 (about 40 bytes of TLV),60,64.
const cup0200 = `{"mti":"0200","fields":{"2":"4012345678909","3":"000000","4":"000000012345","11":"000123","14":"2512","22":"051","23":"001","25":"00","26":"12","35":"4012345678909=25121010000","41":"22003600","42":"104512541110001","49":"156","52":"1B9C1845EB993A7A","53":"2600000000000000","55":"` + chipData + `","60":"22000001000","64":"1A2B3C4D"}}`

// The 0200 of BenchmarkISO87_0200: 2,3,4,7,11,12,13,14,18,22,25,35,37,41,42,43,49,52,55.
const iso0200 = `{"mti":"0200","fields":{"2":"4012345678909","3":"000000","4":"000000012345","7":"1127093000","11":"000401","12":"093000","13":"1127","14":"2512","18":"4111","22":"051","25":"00","35":"4012345678909=25121010000","37":"633109000401","41":"22003600","42":"104512541110001","43":"RAILWAY STATION TICKET OFFICE    BEIJING","49":"156","52":"1B9C1845EB993A7A","55":"` + chipData + `"}}`

// benchUnpackPack measures what the switch does per message: unpack, then pack. "copy" packs the unpacked
// message (fields copied as they came); "encode" re-encodes every field from its logical value into a second
// message, as a conversion to another spec does.
func benchUnpackPack(b *testing.B, specName, js string) {
	s := spec(b, specName)
	src := codec.NewMessage(s)
	if err := src.FromJSON([]byte(js)); err != nil {
		b.Fatal(err)
	}
	in, err := src.Pack(nil)
	if err != nil {
		b.Fatal(err)
	}
	m, out := codec.NewMessage(s), codec.NewMessage(s)
	buf := make([]byte, 0, 1024)
	b.Run("copy", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(in)))
		for i := 0; i < b.N; i++ {
			if err := m.Unpack(in); err != nil {
				b.Fatal(err)
			}
			if buf, err = m.Pack(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(in)))
		for i := 0; i < b.N; i++ {
			if err := m.Unpack(in); err != nil {
				b.Fatal(err)
			}
			out.Reset()
			_ = out.SetMTI("0210")
			for _, n := range [...]int{2, 3, 4, 7, 11, 12, 13, 14, 18, 22, 23, 25, 26, 35, 37, 41, 42, 43, 49, 52, 53, 55, 60, 64} {
				if m.Has(n) {
					if err := out.CopyField(n, m); err != nil {
						b.Fatal(err)
					}
				}
			}
			if buf, err = out.Pack(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
		if string(buf[4:]) != string(in[4:]) && specName != "cup-pos" {
			b.Fatalf("re-encoded message differs")
		}
	})
}

func BenchmarkCUP0200(b *testing.B)         { benchUnpackPack(b, "cup-pos", cup0200) }
func BenchmarkISO87_0200(b *testing.B)      { benchUnpackPack(b, "iso87-ascii", iso0200) }
func BenchmarkISO87Binary0200(b *testing.B) { benchUnpackPack(b, "iso87-binary", iso0200) }
func BenchmarkISO87EBCDIC0200(b *testing.B) { benchUnpackPack(b, "iso87-ebcdic", iso0200) }
