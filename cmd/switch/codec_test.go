package main

import (
	"errors"
	"strings"
	"testing"
)

// Real UnionPay POS sign-on reply (github.com/yangyongzhen/go8583, log1.txt).
const signOnReply = "007960000006016031003118120810003800010AC00014000000105203041308000965003130353230333037383838323030323230303336" +
	"303031303435313235343131313030303100110000660300300040E01B3E860949EE4C0BDDD573168ED6BA097575553945990F875BA4EB" +
	"0000000000000000EDE09D04"

func TestDecodeEncodeRoundTrip(t *testing.T) {
	js, err := runCmd(newDecodeCmd(), "", "--spec", "cup-pos", "--framed", "--json", "--show-sensitive", signOnReply)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js, `"tpdu":"6000000601"`) || !strings.Contains(js, `"60":"00006603003"`) {
		t.Fatalf("decode json: %s", js)
	}
	hex, err := runCmd(newEncodeCmd(), js, "--spec", "cup-pos", "--framed")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(hex) != signOnReply {
		t.Fatalf("encode = %s", hex)
	}
}

func TestDecodeReadableDumpAndStdin(t *testing.T) {
	out, err := runCmd(newDecodeCmd(), signOnReply[26:]+"\n", "--spec", "cup-pos", "-")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mti    0810", " 41 Card acceptor terminal id", "22003600", "60.2", "006603"} {
		if !strings.Contains(out, want) {
			t.Fatalf("dump lacks %q:\n%s", want, out)
		}
	}
}

func TestDecodeMalformedExitsOneWithTypedError(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"truncated frame", signOnReply[:len(signOnReply)-10], "incomplete"},
		{"not hex", "00ZZ", "not hex"},
		{"bad field", "0079600000060160310031181208103800010AC00014" + signOnReply[44:], "field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := runCmd(newDecodeCmd(), "", "--spec", "cup-pos", "--framed", c.in)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want exit 1 mentioning %q", err, c.want)
			}
		})
	}
}

func TestSpecsCommands(t *testing.T) {
	out, err := runCmd(newSpecsCmd(), "", "list")
	if err != nil || !strings.Contains(out, "cup-pos") || !strings.Contains(out, "iso87-ebcdic") {
		t.Fatalf("specs list: %v\n%s", err, out)
	}
	out, err = runCmd(newSpecsCmd(), "", "show", "rail-pos")
	if err != nil || !strings.Contains(out, "extends: cup-pos") {
		t.Fatalf("specs show: %v\n%s", err, out)
	}
	_, err = runCmd(newSpecsCmd(), "", "check", "testdata/bad-spec.yaml")
	if err == nil || !strings.Contains(err.Error(), "testdata/bad-spec.yaml:6:") {
		t.Fatalf("specs check of a bad spec: %v", err)
	}
}
