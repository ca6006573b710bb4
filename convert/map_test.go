package convert

import (
	"context"
	"strings"
	"testing"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/specs"
)

// fakeEnv generates fixed values and marks translated PIN blocks and decrypted tracks so tests can see them.
type fakeEnv struct{ pans []string }

func (e *fakeEnv) Generate(_ context.Context, what string) (string, error) {
	return map[string]string{"stan": "000777", "rrn": "633109000777", "transmission_time": "1127093000",
		"acquirer_id": "00085500"}[what], nil
}

func (e *fakeEnv) TranslatePIN(_ context.Context, block []byte, src *codec.Message) ([]byte, error) {
	e.pans = append(e.pans, src.String(2))
	out := append([]byte(nil), block...)
	out[0] ^= 0xFF
	return out, nil
}

func (e *fakeEnv) DecryptTrack(_ context.Context, track []byte) ([]byte, error) { return track, nil }

func mustSpec(t *testing.T, name string) *codec.Spec {
	s, err := specs.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var cupToBank = Map{Name: "cup-to-bank", From: "cup-pos", To: "iso87-ascii",
	Fields: map[int]Rule{
		2: {}, 3: {}, 4: {}, 7: {Generate: "transmission_time"}, 11: {Generate: "stan"}, 22: {}, 25: {},
		32: {Generate: "acquirer_id"}, 35: {Track: true, From: "35"}, 37: {Generate: "rrn"}, 41: {}, 42: {},
		49: {}, 52: {PIN: true, From: "52"}, 60: {From: "60.2"}, 62: {Const: "RAILWAY"},
	}}

func TestRequestConversionCopiesGeneratesAndTranslates(t *testing.T) {
	src := codec.NewMessage(mustSpec(t, "cup-pos"))
	err := src.FromJSON([]byte(`{"mti":"0200","fields":{"2":"4012345678909","3":"000000","4":"000000012345","11":"000123","22":"051","25":"00","35":"4012345678909=25121010000","41":"22003600","42":"104512541110001","49":"156","52":"1B9C1845EB993A7A","60":"22000001000","64":"1A2B3C4D"}}`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(cupToBank, src.Spec(), mustSpec(t, "iso87-ascii"))
	if err != nil {
		t.Fatal(err)
	}
	dst := codec.NewMessage(mustSpec(t, "iso87-ascii"))
	env := &fakeEnv{}
	if err := c.Convert(context.Background(), env, src, dst); err != nil {
		t.Fatal(err)
	}
	want := map[int]string{2: "4012345678909", 3: "000000", 4: "000000012345", 7: "1127093000", 11: "000777",
		22: "051", 32: "00085500", 37: "633109000777", 41: "22003600", 60: "000001", 62: "RAILWAY"}
	for n, v := range want {
		if got := dst.String(n); got != v {
			t.Errorf("field %d = %q, want %q", n, got, v)
		}
	}
	if pin, _ := dst.Value(52); pin[0] != 0x1B^0xFF {
		t.Errorf("PIN block not translated")
	}
	if len(env.pans) != 1 || env.pans[0] != "4012345678909" {
		t.Errorf("PIN translated for %v", env.pans)
	}
	if dst.Has(64) || dst.Has(128) {
		t.Error("the terminal's MAC was carried over")
	}
	packed, err := dst.Pack(nil)
	if err != nil || !strings.HasPrefix(string(packed), "0200") {
		t.Fatalf("pack: %v", err)
	}
}

func TestResponseCodeTable(t *testing.T) {
	back := Map{Name: "bank-to-cup", MTI: map[string]string{"0430": "0410"},
		Fields: map[int]Rule{3: {}, 4: {}, 11: {}, 37: {}, 38: {}, 39: {}, 41: {}, 42: {}},
		Codes:  map[string]string{"00": "00", "51": "51", "*": "05"}}
	c, err := Compile(back, mustSpec(t, "iso87-ascii"), mustSpec(t, "cup-pos"))
	if err != nil {
		t.Fatal(err)
	}
	for rc, want := range map[string]string{"00": "00", "51": "51", "N7": "05"} {
		src := codec.NewMessage(mustSpec(t, "iso87-ascii"))
		_ = src.FromJSON([]byte(`{"mti":"0430","fields":{"11":"000777","39":"` + rc + `","41":"22003600"}}`))
		dst := codec.NewMessage(mustSpec(t, "cup-pos"))
		if err := c.Convert(context.Background(), &fakeEnv{}, src, dst); err != nil {
			t.Fatal(err)
		}
		if dst.MTI() != "0410" || dst.String(39) != want {
			t.Errorf("bank %s -> %s %q, want %q", rc, dst.MTI(), dst.String(39), want)
		}
	}
}

func TestCompileRefusesImpossibleMaps(t *testing.T) {
	cases := []struct {
		name string
		rule Rule
		n    int
		want string
	}{
		{"field missing in destination", Rule{}, 150, "has no field 150"},
		{"source field missing", Rule{From: "57"}, 48, "spec cup-pos has no field 57"},
		{"constant too long", Rule{Const: "12345678901234567"}, 11, "constant does not fit"},
		{"two sources", Rule{Const: "1", Generate: "stan"}, 11, "give one of"},
		{"unknown generator", Rule{Generate: "uuid"}, 37, "unknown generator"},
		{"bad subfield", Rule{From: "60.x"}, 60, "bad subfield"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := Map{Name: "m", Fields: map[int]Rule{c.n: c.rule}}
			_, err := Compile(m, mustSpec(t, "cup-pos"), mustSpec(t, "iso87-ascii"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}
