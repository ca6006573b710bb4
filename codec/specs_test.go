package codec_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/specs"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func spec(t testing.TB, name string) *codec.Spec {
	t.Helper()
	s, err := specs.Get(name)
	if err != nil {
		t.Fatalf("spec %s: %v", name, err)
	}
	return s
}

// frameOf encodes a sample's JSON as a whole frame of its spec.
func frameOf(t testing.TB, s *codec.Spec, js string) []byte {
	t.Helper()
	m := codec.NewMessage(s)
	if err := m.FromJSON([]byte(js)); err != nil {
		t.Fatalf("%s sample: %v", s.Name(), err)
	}
	b, err := m.AppendFrame(s.Framing(), nil)
	if err != nil {
		t.Fatalf("%s sample: %v", s.Name(), err)
	}
	return b
}

// decodeFrame splits and unpacks one frame, failing the test on any error.
func decodeFrame(t testing.TB, s *codec.Spec, frame []byte) *codec.Message {
	t.Helper()
	fr := s.Framing()
	body, used, err := fr.Split(frame)
	if err != nil || used != len(frame) {
		t.Fatalf("%s split: used %d of %d, %v", s.Name(), used, len(frame), err)
	}
	m := codec.NewMessage(s)
	if err := m.UnpackFrame(fr, body); err != nil {
		t.Fatalf("%s unpack: %v", s.Name(), err)
	}
	return m
}

func TestRealUnionPayFrames(t *testing.T) {
	s := spec(t, "cup-pos")
	m := decodeFrame(t, s, mustHex(t, cupSignOnReply))
	want := map[int]string{11: "000000", 12: "105203", 13: "0413", 32: "00096500", 37: "105203078882", 39: "00",
		41: "22003600", 42: "104512541110001", 60: "00006603003"}
	for n, v := range want {
		if got := m.String(n); got != v {
			t.Errorf("0810 field %d = %q, want %q", n, got, v)
		}
	}
	if got := hex.EncodeToString(m.TPDU()); got != "6000000601" {
		t.Errorf("tpdu %s", got)
	}
	if got := hex.EncodeToString(m.Header()); got != "603100311812" {
		t.Errorf("header %s", got)
	}
	if sub, _ := m.Subfield(60, 2); string(sub) != "006603" {
		t.Errorf("60.2 batch = %q", sub)
	}
	if sub, _ := m.Subfield(60, 3); string(sub) != "003" {
		t.Errorf("60.3 = %q", sub)
	}
	if v, _ := m.Value(62); len(v) != 40 {
		t.Errorf("62 holds %d bytes, want 40 (60.3 = 003 layout)", len(v))
	}
	on := decodeFrame(t, s, mustHex(t, cupSignOnFrame))
	if on.MTI() != "0800" || on.String(60) != "00000000003" || on.String(63) != "000" || on.String(41) != "22003600" {
		t.Errorf("0800: mti %s 60 %q 63 %q", on.MTI(), on.String(60), on.String(63))
	}
	for _, f := range []string{cupSignOnFrame, cupSignOnReply} {
		in := mustHex(t, f)
		m := decodeFrame(t, s, in)
		out, err := m.AppendFrame(s.Framing(), nil)
		if err != nil || !bytes.Equal(out, in) {
			t.Errorf("frame round trip: %X, %v", out, err)
		}
	}
}

// TestGoldenFrames pins every built-in spec's encoding of its samples: decode of the golden frame gives the
// golden JSON, and encode of the JSON gives the frame. Run with -update to rewrite after a deliberate change.
func TestGoldenFrames(t *testing.T) {
	for _, name := range specs.Names() {
		s := spec(t, name)
		for i, js := range samples[name] {
			frame := frameOf(t, s, js)
			m := decodeFrame(t, s, frame)
			gotJSON := m.AppendJSON(nil, codec.DumpOptions{ShowSensitive: true})
			golden := filepath.Join("testdata", "golden", name+"-"+string(rune('a'+i))+".txt")
			content := strings.ToUpper(hex.EncodeToString(frame)) + "\n" + string(gotJSON) + "\n"
			if *update {
				_ = os.MkdirAll(filepath.Dir(golden), 0o755)
				if err := os.WriteFile(golden, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update once)", err)
			}
			if string(want) != content {
				t.Errorf("%s:\n got %s\nwant %s", golden, content, want)
			}
			// the golden JSON encodes back to the golden frame
			m2 := codec.NewMessage(s)
			if err := m2.FromJSON(gotJSON); err != nil {
				t.Fatal(err)
			}
			again, _ := m2.AppendFrame(s.Framing(), nil)
			if !bytes.Equal(again, frame) {
				t.Errorf("%s: encode(decode(frame)) differs:\n%X\n%X", golden, again, frame)
			}
		}
	}
}

func TestBuiltinSpecsHaveSamples(t *testing.T) {
	for _, name := range specs.Names() {
		if len(samples[name]) == 0 {
			t.Errorf("built-in spec %s has no sample message", name)
		}
	}
}

func TestDecodeMasksCardData(t *testing.T) {
	s := spec(t, "cup-pos")
	m := decodeFrame(t, s, frameOf(t, s, samples["cup-pos"][0]))
	var j codec.MessageJSON
	if err := json.Unmarshal(m.AppendJSON(nil, codec.DumpOptions{}), &j); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"2": "401234***8909", "35": "***", "52": "***", "55": "***"}
	for k, v := range want {
		if j.Fields[k] != v {
			t.Errorf("field %s shown as %q, want %q", k, j.Fields[k], v)
		}
	}
	var dump bytes.Buffer
	_ = m.Dump(&dump, codec.DumpOptions{})
	for _, secret := range []string{"4012345678909", "1B9C1845EB993A7A", "9F2608"} {
		if strings.Contains(dump.String(), secret) {
			t.Errorf("dump shows %s", secret)
		}
	}
}

func TestGBKTextShowsAsUTF8(t *testing.T) {
	s := spec(t, "iso87-ascii")
	m := decodeFrame(t, s, frameOf(t, s, samples["iso87-ascii"][0]))
	raw, _ := m.Value(43)
	if bytes.Contains(raw, []byte("北京")) {
		t.Fatal("field 43 is stored as UTF-8, want GBK bytes")
	}
	if v, _ := m.DisplayValue(43, codec.DumpOptions{}); !strings.HasPrefix(v, "北京站售票处") {
		t.Fatalf("field 43 shown as %q", v)
	}
}

func TestPartialDecodeKeepsIdentification(t *testing.T) {
	s := spec(t, "cup-pos")
	frame := frameOf(t, s, samples["cup-pos"][1]) // void: 60 and 61 come after 11, 41, 42
	// Corrupt field 61's length prefix: the last bytes are 61 (LLL BCD prefix 0016 + 8 bytes) then 64 (8 bytes).
	bad := append([]byte(nil), frame...)
	bad[len(bad)-8-8-2] = 0x09 // prefix 0916: beyond the maximum of 29
	fr := s.Framing()
	body, _, _ := fr.Split(bad)
	m := codec.NewMessage(s)
	err := m.UnpackFrame(fr, body)
	var fe *codec.FieldError
	if !errors.As(err, &fe) || fe.Field != 61 || !errors.Is(err, codec.ErrTooLong) {
		t.Fatalf("err = %v, want a field 61 length error", err)
	}
	if m.MTI() != "0200" || m.String(11) != "000124" || m.String(41) != "22003600" || m.String(42) != "104512541110001" {
		t.Fatalf("after the error: mti %q 11 %q 41 %q 42 %q", m.MTI(), m.String(11), m.String(41), m.String(42))
	}
	if !strings.Contains(err.Error(), "field 61: length 916 exceeds maximum 29 at offset") {
		t.Fatalf("error text %q", err)
	}
}

func TestHeaderProcessingRequirementIsWritable(t *testing.T) {
	s := spec(t, "cup-pos")
	m := decodeFrame(t, s, mustHex(t, cupSignOnReply))
	if d, _ := m.CUPProcessingRequirement(); d != 0 {
		t.Fatalf("digit 6 = %d", d)
	}
	if err := m.SetCUPProcessingRequirement(3); err != nil { // ask the terminal to sign on again
		t.Fatal(err)
	}
	m.SwapTPDU()
	out, _ := m.AppendFrame(s.Framing(), nil)
	if got := strings.ToUpper(hex.EncodeToString(out[2:13])); got != "6006010000"+"603103311812" {
		t.Fatalf("tpdu+header %s", got)
	}
}

func TestChipDataTLV(t *testing.T) {
	s := spec(t, "cup-pos")
	m := decodeFrame(t, s, frameOf(t, s, samples["cup-pos"][0]))
	v, _ := m.Value(55)
	if arqc, ok := codec.FindTLV(v, 0x9F26); !ok || hex.EncodeToString(arqc) != "a1b2c3d4e5f60718" {
		t.Fatalf("9F26 = %X %v", arqc, ok)
	}
	var tags []uint32
	if err := codec.ParseTLV(v, func(e codec.TLV) error { tags = append(tags, e.Tag); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(tags) != 8 || tags[0] != 0x9F26 || tags[7] != 0x9C {
		t.Fatalf("tags %X", tags)
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBytesBeforeIsTheMACBlock(t *testing.T) {
	s := spec(t, "cup-pos")
	frame := frameOf(t, s, samples["cup-pos"][0])
	m := decodeFrame(t, s, frame)
	mab, ok := m.BytesBefore(64)
	body := frame[2+5+6:]
	if !ok || !bytes.Equal(mab, body[:len(body)-8]) {
		t.Fatalf("MAC block %X, want the message without its last 8 bytes", mab)
	}
	if _, ok := m.BytesBefore(62); ok {
		t.Fatal("an absent field has a MAC block")
	}
}
