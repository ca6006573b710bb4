package specs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuiltinSpecsCompile(t *testing.T) {
	want := []string{"cup-pos", "iso87-ascii", "iso87-binary", "iso87-ebcdic", "kiosk", "rail-pos"}
	if got := strings.Join(Names(), ","); got != strings.Join(want, ",") {
		t.Fatalf("built-in specs %s, want %s", got, strings.Join(want, ","))
	}
	for _, n := range want {
		s, err := Get(n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if s.Name() != n {
			t.Fatalf("spec %s is named %s", n, s.Name())
		}
	}
	if _, err := Get("iso87"); err == nil {
		t.Fatal("the abstract base iso87 must not be usable directly")
	}
}

func TestRailPOSExtendsCUPPOS(t *testing.T) {
	rail, _ := Get("rail-pos")
	cup, _ := Get("cup-pos")
	if _, ok := cup.Field(57); ok {
		t.Fatal("cup-pos has field 57")
	}
	f, ok := rail.Field(57)
	if !ok || len(f.Subfields) != 5 {
		t.Fatalf("rail-pos field 57: %+v", f)
	}
	a, _ := rail.Field(60)
	b, _ := cup.Field(60)
	if a.Encoding != b.Encoding || a.Size != b.Size || rail.Framing() != cup.Framing() {
		t.Fatal("rail-pos does not inherit cup-pos")
	}
}

func TestSpecErrorsNameFileAndLine(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown top-level key", "name: x\nmti: bcd\nbitmap: binary\nframing: {length: none}\ncolour: red\n",
			[]string{"x.yaml:5: unknown key \"colour\""}},
		{"bad encoding name", "name: x\nmti: bcd\nbitmap: binary\nframing: {length: none}\nfields:\n  3: {type: n, length: 6, encoding: packed}\n",
			[]string{"x.yaml:6: \"packed\" is not one of"}},
		{"impossible field", "name: x\nmti: bcd\nbitmap: binary\nframing: {length: none}\ndefaults: {prefix: ascii, n: ascii, z: ascii}\nfields:\n  3: {type: n, length: 6}\n  35: {type: z, length: LL, max: 104}\n",
			[]string{"x.yaml:8: field 35: maximum 104 does not fit a LL prefix"}},
		{"variable without max", "name: x\nmti: bcd\nbitmap: binary\nframing: {length: none}\nfields:\n  2: {type: n, length: LL, encoding: bcd, prefix: bcd}\n",
			[]string{"x.yaml:6: field 2: a variable length needs max"}},
		{"two errors at once", "name: x\nmti: bcd\nbitmap: binary\nframing: {length: none}\nfields:\n  2: {type: q, length: 2}\n  3: {type: n, length: six}\n",
			[]string{"x.yaml:6:", "x.yaml:7:"}},
		{"extends unknown", "name: x\nextends: nope\n", []string{"x.yaml:1: extends unknown spec \"nope\""}},
		{"not yaml", "name: [x\n", []string{"x.yaml:"}},
		{"missing framing", "name: x\nmti: bcd\nbitmap: binary\n", []string{"framing missing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(c.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestUserSpecExtendingABuiltin(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mybank.yaml")
	src := "name: mybank\nextends: iso87-ascii\nframing: {length: binary2}\nfields:\n  48: {type: ans, length: LLL, max: 200, charset: gbk}\n"
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Get(p)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := s.Field(48)
	if s.Name() != "mybank" || f.Size != 200 || s.Framing().TPDU {
		t.Fatalf("spec %s field 48 %+v", s.Name(), f)
	}
}
