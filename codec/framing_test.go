package codec_test

import (
	"errors"
	"testing"

	"github.com/railswitch/railswitch/codec"
)

func TestFramers(t *testing.T) {
	cases := []struct {
		name     string
		fr       codec.Framing
		in       string // hex
		body     string // hex of the body, or "" with err
		used     int
		err      error
		keepLive bool
	}{
		{"binary2 whole", codec.Framing{Length: codec.LenBinary2}, "0003AABBCC", "AABBCC", 5, nil, false},
		{"binary2 two frames", codec.Framing{Length: codec.LenBinary2}, "0001AA0001BB", "AA", 3, nil, false},
		{"binary2 need more", codec.Framing{Length: codec.LenBinary2}, "0004AABB", "", 0, codec.ErrNeedMore, false},
		{"binary2 header only", codec.Framing{Length: codec.LenBinary2}, "00", "", 0, codec.ErrNeedMore, false},
		{"binary2 zero length is a keep-alive", codec.Framing{Length: codec.LenBinary2}, "0000", "", 2, nil, true},
		{"POS access router hello", codec.Framing{Length: codec.LenBinary2, TPDU: true, HeaderLen: 6}, "00056000000000", "6000000000", 7, nil, true},
		{"oversized length refused before reading", codec.Framing{Length: codec.LenBinary2, MaxFrame: 4096}, "FFFF00", "", 0, codec.ErrTooLong, false},
		{"ascii4", codec.Framing{Length: codec.LenASCII4}, "30303032AABB", "AABB", 6, nil, false},
		{"ascii4 keep-alive", codec.Framing{Length: codec.LenASCII4}, "30303030", "", 4, nil, true},
		{"ascii4 not digits", codec.Framing{Length: codec.LenASCII4}, "30303A32AABB", "", 0, codec.ErrBadValue, false},
		{"bcd2", codec.Framing{Length: codec.LenBCD2}, "0012" + "000102030405060708091011", "000102030405060708091011", 14, nil, false},
		{"bcd2 not BCD", codec.Framing{Length: codec.LenBCD2}, "00A0", "", 0, codec.ErrBadValue, false},
		{"none", codec.Framing{Length: codec.LenNone}, "AABB", "AABB", 2, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body, used, err := c.fr.Split(mustHex(t, c.in))
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if err != nil {
				return
			}
			if used != c.used || string(body) != string(mustHex(t, c.body)) {
				t.Fatalf("body %X used %d, want %s used %d", body, used, c.body, c.used)
			}
			if c.fr.IsKeepAlive(body) != c.keepLive {
				t.Fatalf("keep-alive = %v", !c.keepLive)
			}
		})
	}
}

func TestAppendFrameWritesEachLengthHeader(t *testing.T) {
	s := spec(t, "iso87-ascii")
	m := codec.NewMessage(s)
	_ = m.SetMTI("0800")
	_ = m.SetString(70, "301")
	for _, c := range []struct {
		fr   codec.Framing
		head string
	}{
		{codec.Framing{Length: codec.LenASCII4}, "0039"},
		{codec.Framing{Length: codec.LenBinary2}, "\x00\x27"},
		{codec.Framing{Length: codec.LenBCD2}, "\x00\x39"},
	} {
		out, err := m.AppendFrame(c.fr, nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(out[:len(c.head)]) != c.head || len(out) != len(c.head)+39 {
			t.Fatalf("%+v: %q", c.fr, out)
		}
	}
	if _, err := m.AppendFrame(codec.Framing{Length: codec.LenBinary2, MaxFrame: 10}, nil); !errors.Is(err, codec.ErrTooLong) {
		t.Fatalf("oversized frame: %v", err)
	}
}
