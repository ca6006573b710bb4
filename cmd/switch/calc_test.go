package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// runCalc runs "calc args..." on a fresh command tree and returns its output.
func runCalc(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runCmd(newCalcCmd(), "", args...)
}

// calcJSON runs a calc subcommand with --json and decodes its one JSON object.
func calcJSON(t *testing.T, args ...string) map[string]string {
	t.Helper()
	out, err := runCalc(t, append(args, "--json")...)
	if err != nil {
		t.Fatalf("calc %s: %v", strings.Join(args, " "), err)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("calc %s: output %q is not one JSON object: %v", strings.Join(args, " "), out, err)
	}
	return m
}

// Published vectors (reference/hsm.md, unionpay-pos.md, NIST SP 800-38B, ANSI X9.24-3:2017 supplement).
const (
	tBDK     = "0123456789ABCDEFFEDCBA9876543210"
	tPINKey1 = "042666B49184CF5C68DE9628D0397B36" // 042666B49184CFA368DE9628D0397BC9 XOR the PIN variant
	tTMK     = "70F2A84CCBC2AE8625CBB0F2C22AB923"
	aBDK     = "FEDCBA9876543210F1F1F1F1F1F1F1F1"
	aKSN1    = "123456789012345600000001"
	aPINKey1 = "AF8CB133A78F8DC2D1359F18527593FB"
	pbocHex  = "4348454E48414F2D50437C424645424642464630303033303643337E39425030504432434E3730313633363649303034337C32303234303131317C32303235303130317C383139317C30"
	cupMAB   = "02003020048000C0801500000000000000123400000203009930303030303030313935323731383138323231373837353135360019" +
		"2600000100060000000000435F0112323834343132333435363738393031323334" + "5F03063136303033365F04063230303832365C023031"
)

func TestCalcPublishedVectors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		key  string
		want string
	}{
		{"cup-ecb MAC of the P2 frame", []string{"mac", "--alg", "cup-ecb", "--key", "0723C80DB5F4CD3D0723C80DB5F4CD3D", "--data", cupMAB}, "mac", "B3A092AE"},
		{"PBOC MAC", []string{"mac", "--alg", "pboc", "--key", "5775204D69616F6A756E404726444311", "--data", pbocHex}, "mac", "4089819D3D991CC7"},
		{"AES-CMAC", []string{"mac", "--alg", "aes-cmac", "--key", "2B7E151628AED2A6ABF7158809CF4F3C", "--data", "6BC1BEE22E409F96E93D7E117393172A"}, "mac", "070A16B46B4D4144F79BDD9DD04A287C"},
		{"clear ISO 0 block", []string{"pinblock", "encode", "--format", "0", "--pin", "1234", "--pan", "4012345678909"}, "pinblock", "041274EDCBA9876F"},
		{"encrypted ISO 0 block", []string{"pinblock", "encode", "--format", "01", "--pin", "1234", "--pan", "4012345678909", "--key", tPINKey1}, "pinblock", "1B9C1845EB993A7A"},
		{"decode encrypted ISO 0", []string{"pinblock", "decode", "--format", "0", "--pinblock", "1B9C1845EB993A7A", "--pan", "4012345678909", "--key", tPINKey1}, "pin", "1234"},
		{"decode encrypted ISO 4", []string{"pinblock", "decode", "--format", "4", "--pinblock", "A912150391AB65A67E52883D81CE2D15", "--pan", "4111111111111111", "--key", aPINKey1}, "pin", "1234"},
		{"decode reports the format", []string{"pinblock", "decode", "--format", "48", "--pinblock", "A912150391AB65A67E52883D81CE2D15", "--pan", "4111111111111111", "--key", aPINKey1}, "format", "4"},
		{"kcv default 6 digits", []string{"kcv", "--key", tBDK}, "kcv", "08D7B4"},
		{"decrypt TAK of vector B", []string{"decrypt", "--key", tTMK, "--data", "96D605EA176B7E9E"}, "data", "C24A8FB57AA20123"},
		{"encrypt TAK of vector B", []string{"encrypt", "--key", tTMK, "--data", "C24A8FB57AA20123"}, "data", "96D605EA176B7E9E"},
		{"TDES DUKPT ik", []string{"dukpt", "--bdk", tBDK, "--ksn", "FFFF9876543210E00000"}, "ik", "6AC292FAA1315B4D858AB3A3D7D5933A"},
		{"TDES DUKPT transaction key", []string{"dukpt", "--bdk", tBDK, "--ksn", "FFFF9876543210E00001"}, "transaction_key", "042666B49184CFA368DE9628D0397BC9"},
		{"TDES DUKPT PIN block", []string{"dukpt", "--bdk", tBDK, "--ksn", "FFFF9876543210E00001", "--pin", "1234", "--pan", "4012345678909"}, "pinblock", "1B9C1845EB993A7A"},
		{"AES DUKPT ik", []string{"dukpt", "--aes", "--bdk", aBDK, "--ksn", aKSN1}, "ik", "1273671EA26AC29AFA4D1084127652A1"},
		{"AES DUKPT PIN key", []string{"dukpt", "--aes", "--bdk", aBDK, "--ksn", aKSN1}, "pin_key", aPINKey1},
		{"AES DUKPT MAC key", []string{"dukpt", "--aes", "--bdk", aBDK, "--ksn", aKSN1}, "mac_key", "A2DC23DE6FDE0824A2BC321E08E4B8B7"},
		{"AES DUKPT data key both ways", []string{"dukpt", "--aes", "--bdk", aBDK, "--ksn", aKSN1}, "data_key", "A308E080DD15A1B741F1721BF67DE11C"},
		{"AES DUKPT data key encrypt", []string{"dukpt", "--aes", "--bdk", aBDK, "--ksn", aKSN1, "--data-usage", "encrypt"}, "data_key", "A35C412EFD41FDB98B69797C02DCD08F"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := calcJSON(t, tt.args...)[tt.key]; got != tt.want {
				t.Errorf("%s = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

func TestCalcRandomFormatsRoundTrip(t *testing.T) {
	tests := []struct{ format, key, pan string }{
		{"3", tTMK, "4012345678909"},
		{"1", tTMK, ""},
		{"4", aPINKey1, "4111111111111111"},
		{"4", "", "4111111111111111"},
	}
	for _, tt := range tests {
		args := []string{"--format", tt.format, "--pan", tt.pan}
		if tt.key != "" {
			args = append(args, "--key", tt.key)
		}
		b := calcJSON(t, append([]string{"pinblock", "encode", "--pin", "87654321"}, args...)...)["pinblock"]
		if got := calcJSON(t, append([]string{"pinblock", "decode", "--pinblock", b}, args...)...)["pin"]; got != "87654321" {
			t.Errorf("format %s key %q: decoded %q", tt.format, tt.key, got)
		}
	}
	m := calcJSON(t, "dukpt", "--aes", "--bdk", aBDK, "--ksn", aKSN1, "--pin", "1234", "--pan", "4111111111111111")
	if got := calcJSON(t, "pinblock", "decode", "--format", "4", "--pinblock", m["pinblock"], "--pan", "4111111111111111", "--key", m["pin_key"])["pin"]; got != "1234" {
		t.Errorf("AES DUKPT PIN block decodes to %q", got)
	}
}

func TestCalcOptions(t *testing.T) {
	if got := calcJSON(t, "kcv", "--key", tBDK, "--bytes", "4")["kcv"]; len(got) != 8 || !strings.HasPrefix(got, "08D7B4") {
		t.Errorf("kcv --bytes 4 = %q", got)
	}
	aesKCV := calcJSON(t, "kcv", "--aes", "--key", "2B7E151628AED2A6ABF7158809CF4F3C")["kcv"]
	tdesKCV := calcJSON(t, "kcv", "--key", "2B7E151628AED2A6ABF7158809CF4F3C")["kcv"]
	if len(aesKCV) != 6 || aesKCV == tdesKCV {
		t.Errorf("kcv --aes = %q (TDES gives %q)", aesKCV, tdesKCV)
	}
	enc := calcJSON(t, "encrypt", "--aes", "--key", aBDK, "--data", "6BC1BEE22E409F96E93D7E117393172A")["data"]
	if got := calcJSON(t, "decrypt", "--aes", "--key", aBDK, "--data", enc)["data"]; got != "6BC1BEE22E409F96E93D7E117393172A" {
		t.Errorf("AES ECB round trip = %q", got)
	}
	out, err := runCalc(t, "mac", "--alg", "x9.19", "--key", "5775204D69616F6A756E404726444311", "--data", "00")
	if err != nil || !strings.HasPrefix(out, "mac:") {
		t.Errorf("readable output = %q, %v", out, err)
	}
}

func TestCalcErrorsNameTheFlagAndHideValues(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"key not hex", []string{"kcv", "--key", "0123456789ABCDEG"}, "--key"},
		{"missing key", []string{"encrypt", "--data", "00"}, "--key"},
		{"unknown MAC algorithm", []string{"mac", "--alg", "md5", "--key", tBDK, "--data", "00"}, "md5"},
		{"partial block", []string{"encrypt", "--key", tTMK, "--data", "C24A8FB57AA201"}, "block size"},
		{"short PIN", []string{"pinblock", "encode", "--pin", "123", "--pan", "4012345678909"}, "4 to 12"},
		{"unknown format", []string{"pinblock", "encode", "--format", "2", "--pin", "1234", "--pan", "4012345678909"}, "format"},
		{"PIN without PAN", []string{"dukpt", "--bdk", tBDK, "--ksn", "FFFF9876543210E00001", "--pin", "1234"}, "--pan"},
		{"KSN counter with 11 one-bits", []string{"dukpt", "--bdk", tBDK, "--ksn", "FFFF9876543210E007FF"}, "counter"},
		{"AES KSN of 10 bytes", []string{"dukpt", "--aes", "--bdk", aBDK, "--ksn", "FFFF9876543210E00001"}, "KSN"},
		{"wrong PIN key", []string{"pinblock", "decode", "--pinblock", "1B9C1845EB993A7A", "--pan", "4012345678909", "--key", tTMK}, "invalid"},
	}
	for _, tt := range tests {
		out, err := runCalc(t, tt.args...)
		if err == nil {
			t.Errorf("%s: no error (output %q)", tt.name, out)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %q does not mention %q", tt.name, err, tt.want)
		}
		for _, secret := range []string{"0123456789ABCDEG", tBDK, tTMK, "1B9C1845EB993A7A", "4012345678909"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error %q reveals an input value", tt.name, err)
			}
		}
	}
}
