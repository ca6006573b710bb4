package hsm

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// Published values from reference/hsm.md: PIN, PAN and the TDES DUKPT vector.
const (
	swPIN      = "1234"
	swPAN      = "4012345678909"
	swDUKPTKSN = "FFFF9876543210E00001"
	swDUKPTPIN = "1B9C1845EB993A7A"
	swAESIKID  = "1234567890123456"
	swAESPAN   = "4111111111111111"
)

func kcvOf(t testing.TB, keyHex string) string {
	t.Helper()
	b, err := KCV(swHex(t, keyHex), false, 3)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToUpper(hex.EncodeToString(b))
}

func xorHex(t testing.TB, a, b string) string {
	t.Helper()
	x, y := swHex(t, a), swHex(t, b)
	xorBytes(x, y)
	return strings.ToUpper(hex.EncodeToString(x))
}

// testKey puts a known clear key under the module's LMK, as a ceremony would.
func testKey(t testing.TB, sw *Software, name string, spec Spec, clearHex string) Key {
	t.Helper()
	k, err := sw.newKey(name, spec, swHex(t, clearHex))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// softwareFixture is a module with one key of each kind, all from published vectors.
type softwareFixture struct {
	sw                                    *Software
	zpkA, zpkB, zpkAES, tpk, tak, zakAES  Key
	zmk, tmk, tdk, dek, bdk, bdkAES, tak1 Key
}

func newSoftwareFixture(t testing.TB) softwareFixture {
	sw := NewSoftware(newTestLMK(t), nil)
	return softwareFixture{
		sw:     sw,
		zpkA:   testKey(t, sw, "acq/a/zpk", Spec{KeyZPK, AlgTDES, 16}, swKeyA),
		zpkB:   testKey(t, sw, "acq/b/zpk", Spec{KeyZPK, AlgTDES, 16}, swKeyB),
		zpkAES: testKey(t, sw, "acq/c/zpk", Spec{KeyZPK, AlgAES, 16}, swKeyAES),
		tpk:    testKey(t, sw, "term/1/pik", Spec{KeyTPK, AlgTDES, 16}, swKeyA),
		tak:    testKey(t, sw, "term/1/mak", Spec{KeyTAK, AlgTDES, 16}, swKeyB),
		tak1:   testKey(t, sw, "term/2/mak", Spec{KeyTAK, AlgTDES, 8}, swKeyB[:16]),
		zakAES: testKey(t, sw, "acq/c/zak", Spec{KeyZAK, AlgAES, 16}, swKeyAES),
		zmk:    testKey(t, sw, "acq/a/zmk", Spec{KeyZMK, AlgTDES, 16}, swKeyB),
		tmk:    testKey(t, sw, "term/1/tmk", Spec{KeyTMK, AlgTDES, 16}, swKeyB),
		tdk:    testKey(t, sw, "term/1/tdk", Spec{KeyTDK, AlgTDES, 16}, swKeyA),
		dek:    testKey(t, sw, "store/dek", Spec{KeyDEK, AlgAES, 32}, swKeyAES+swKeyA),
		bdk:    testKey(t, sw, "dukpt/bdk", Spec{KeyBDK, AlgTDES, 16}, swKeyA),
		bdkAES: testKey(t, sw, "dukpt/bdk-aes", Spec{KeyBDK, AlgAES, 16}, swKeyAES),
	}
}

func TestSoftwareEnforcesKeyUsageAndAlgorithm(t *testing.T) {
	f := newSoftwareFixture(t)
	ctx := context.Background()
	block, _ := hex.DecodeString(swDUKPTPIN)
	relabelled := f.zpkA
	relabelled.Type = KeyTAK // the cryptogram, not the label, decides
	for _, tc := range []struct {
		name string
		op   func() error
		want error
	}{
		{"MAC under a ZPK", func() error { _, err := f.sw.GenerateMAC(ctx, f.zpkA, MACX919, []byte("x")); return err }, ErrKeyUsage},
		{"MAC under a ZPK labelled TAK", func() error { _, err := f.sw.GenerateMAC(ctx, relabelled, MACX919, []byte("x")); return err }, ErrKeyUsage},
		{"PIN from a TAK", func() error {
			_, err := f.sw.TranslatePIN(ctx, PINTranslation{Source: f.tak, Dest: f.zpkB, SourceFormat: ISO0, DestFormat: ISO0, PAN: swPAN, Block: block})
			return err
		}, ErrKeyUsage},
		{"PIN to a TPK", func() error {
			_, err := f.sw.TranslatePIN(ctx, PINTranslation{Source: f.zpkA, Dest: f.tpk, SourceFormat: ISO0, DestFormat: ISO0, PAN: swPAN, Block: block})
			return err
		}, ErrKeyUsage},
		{"decrypt data under a ZPK", func() error {
			_, err := f.sw.Decrypt(ctx, DataRequest{Key: f.zpkA, Mode: DataECB, Data: block})
			return err
		}, ErrKeyUsage},
		{"track data under a DEK", func() error {
			_, err := f.sw.Decrypt(ctx, DataRequest{Key: f.dek, Mode: DataTrack, Data: make([]byte, 20)})
			return err
		}, ErrKeyUsage},
		{"export under a ZPK", func() error {
			_, err := f.sw.GenerateKey(ctx, GenerateKeyRequest{Spec: Spec{KeyTAK, AlgTDES, 16}, Under: &f.zpkA})
			return err
		}, ErrKeyUsage},
		{"sign-on keys under a ZMK", func() error {
			_, err := f.sw.CUPSignOnKeys(ctx, CUPSignOnRequest{TMK: f.zmk, NetCode: "003", Prefix: "term/1"})
			return err
		}, ErrKeyUsage},
		{"DUKPT from a ZPK", func() error {
			_, err := f.sw.TranslatePIN(ctx, PINTranslation{Source: f.zpkA, KSN: swHex(t, swDUKPTKSN), Dest: f.zpkB, SourceFormat: ISO0, DestFormat: ISO0, PAN: swPAN, Block: block})
			return err
		}, ErrKeyUsage},
		{"AES-CMAC with a TDES TAK", func() error { _, err := f.sw.GenerateMAC(ctx, f.tak, MACAESCMAC, []byte("x")); return err }, ErrAlgorithm},
		{"X9.19 with an AES ZAK", func() error { _, err := f.sw.GenerateMAC(ctx, f.zakAES, MACX919, []byte("x")); return err }, ErrAlgorithm},
		{"ISO 4 under a TDES ZPK", func() error {
			_, err := f.sw.TranslatePIN(ctx, PINTranslation{Source: f.zpkA, Dest: f.zpkB, SourceFormat: ISO0, DestFormat: ISO4, PAN: swPAN, Block: block})
			return err
		}, ErrAlgorithm},
		{"cryptogram of another LMK", func() error {
			_, err := NewSoftware(newTestLMK(t), nil).GenerateMAC(ctx, f.tak, MACX919, []byte("x"))
			return err
		}, ErrCryptogram},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); !errors.Is(err, tc.want) {
				t.Fatalf("error = %v; want %v", err, tc.want)
			}
		})
	}
}

func TestSoftwareTranslatePINRoundTripsBetweenKeysAndFormats(t *testing.T) {
	f := newSoftwareFixture(t)
	ctx := context.Background()
	tdesA, _ := NewTDESCipher(swHex(t, swKeyA))
	orig, err := EncryptPINBlock(tdesA, ISO0, swPIN, swPAN, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		b     Key
		bFmt  PINBlockFormat
		bSize int
	}{
		{"ZPK A ISO-0 -> ZPK B ISO-0 -> A", f.zpkB, ISO0, 8},
		{"ZPK A ISO-0 -> ZPK B ISO-3 -> A", f.zpkB, ISO3, 8},
		{"ZPK A ISO-0 -> AES ZPK ISO-4 -> A", f.zpkAES, ISO4, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			there, err := f.sw.TranslatePIN(ctx, PINTranslation{Source: f.zpkA, Dest: tc.b, SourceFormat: ISO0, DestFormat: tc.bFmt, PAN: swPAN, Block: orig})
			if err != nil {
				t.Fatal(err)
			}
			if len(there.Block) != tc.bSize || there.PINLength != len(swPIN) || there.Format != tc.bFmt {
				t.Fatalf("A -> B gave %d bytes, PIN length %d, %v", len(there.Block), there.PINLength, there.Format)
			}
			back, err := f.sw.TranslatePIN(ctx, PINTranslation{Source: tc.b, Dest: f.zpkA, SourceFormat: tc.bFmt, DestFormat: ISO0, PAN: swPAN, Block: there.Block})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back.Block, orig) { // ISO-0 is deterministic: the same block comes back
				t.Fatalf("A -> B -> A changed the block")
			}
		})
	}
	if _, err := f.sw.TranslatePIN(ctx, PINTranslation{Source: f.tpk, Dest: f.zpkB, SourceFormat: ISO0, DestFormat: ISO1, PAN: swPAN, Block: orig}); !errors.Is(err, ErrFormatConversion) {
		t.Fatalf("ISO-0 -> ISO-1: %v; want ErrFormatConversion", err)
	}
	bad := bytes.Clone(orig)
	bad[0] ^= 0x40
	_, err = f.sw.TranslatePIN(ctx, PINTranslation{Source: f.tpk, Dest: f.zpkB, SourceFormat: ISO0, DestFormat: ISO0, PAN: swPAN, Block: bad})
	if !errors.Is(err, ErrPINBlock) && !errors.Is(err, ErrPINLength) {
		t.Fatalf("corrupted block: %v; want ErrPINBlock or ErrPINLength", err)
	}
	if err != nil && strings.Contains(err.Error(), swPIN) {
		t.Fatal("error shows the PIN")
	}
}

func TestSoftwareTranslatesDUKPTPINBlocks(t *testing.T) {
	f := newSoftwareFixture(t)
	ctx := context.Background()
	tdesB, _ := NewTDESCipher(swHex(t, swKeyB))

	// TDES: the published X9.24-1 A.4 block.
	res, err := f.sw.TranslatePIN(ctx, PINTranslation{Source: f.bdk, KSN: swHex(t, swDUKPTKSN), Dest: f.zpkB,
		SourceFormat: ISO0, DestFormat: ISO0, PAN: swPAN, Block: swHex(t, swDUKPTPIN)})
	if err != nil {
		t.Fatal(err)
	}
	if pin, err := DecryptPINBlock(tdesB, ISO0, res.Block, swPAN); err != nil || pin != swPIN {
		t.Fatalf("DUKPT -> ZPK B decodes to a different PIN (%v)", err)
	}
	zero := swHex(t, swDUKPTKSN)
	zero[9] = 0
	if _, err := f.sw.TranslatePIN(ctx, PINTranslation{Source: f.bdk, KSN: zero, Dest: f.zpkB, SourceFormat: ISO0, DestFormat: ISO0, PAN: swPAN, Block: swHex(t, swDUKPTPIN)}); !errors.Is(err, ErrKSNCounter) {
		t.Fatalf("KSN with counter 0: %v; want ErrKSNCounter", err)
	}

	// AES: a format-4 block made with the X9.24-3 derivation, translated to a TDES ZPK in format 0.
	ksn := swHex(t, swAESIKID+"00000001")
	ik, _ := AESDUKPTInitialKey(swHex(t, swKeyAES), ksn[:8])
	pinKey, _ := AESDUKPTWorkingKey(ik, ksn, AESPINEncryption)
	aesPIN, _ := NewAESCipher(pinKey)
	block, err := EncryptPINBlockISO4(aesPIN, swPIN, swAESPAN, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err = f.sw.TranslatePIN(ctx, PINTranslation{Source: f.bdkAES, KSN: ksn, Dest: f.zpkB, SourceFormat: ISO4, DestFormat: ISO0, PAN: swAESPAN, Block: block})
	if err != nil {
		t.Fatal(err)
	}
	if pin, err := DecryptPINBlock(tdesB, ISO0, res.Block, swAESPAN); err != nil || pin != swPIN {
		t.Fatalf("AES DUKPT -> ZPK B decodes to a different PIN (%v)", err)
	}
	if _, err := f.sw.TranslatePIN(ctx, PINTranslation{Source: f.bdkAES, KSN: ksn[:10], Dest: f.zpkB, SourceFormat: ISO4, DestFormat: ISO0, PAN: swAESPAN, Block: block}); !errors.Is(err, ErrKSN) {
		t.Fatalf("AES BDK with a 10-byte KSN: %v; want ErrKSN", err)
	}
}

func TestSoftwareMACsMatchTheAlgorithmAndVerifyInBothDirections(t *testing.T) {
	f := newSoftwareFixture(t)
	ctx := context.Background()
	data := []byte("0200 purchase message authentication block, 53 bytes")
	for _, tc := range []struct {
		key      Key
		clearHex string
		alg      MACAlgorithm
	}{
		{f.tak, swKeyB, MACCupECB},
		{f.tak1, swKeyB[:16], MACX99},
		{f.tak, swKeyB, MACX919},
		{f.tak, swKeyB, MACISO9797Alg1},
		{f.tak, swKeyB, MACPBOC},
		{f.zakAES, swKeyAES, MACAESCMAC},
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			mac, err := f.sw.GenerateMAC(ctx, tc.key, tc.alg, data)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := ComputeMAC(tc.alg, swHex(t, tc.clearHex), data)
			if !bytes.Equal(mac, want) {
				t.Fatalf("MAC %X; want %X", mac, want)
			}
			if err := f.sw.VerifyMAC(ctx, tc.key, tc.alg, data, mac); err != nil {
				t.Fatal(err)
			}
			if err := f.sw.VerifyMAC(ctx, tc.key, tc.alg, data, mac[:4]); err != nil {
				t.Fatalf("leftmost 4 bytes: %v", err)
			}
			changed := append(bytes.Clone(data[:len(data)-1]), '!')
			if err := f.sw.VerifyMAC(ctx, tc.key, tc.alg, changed, mac); !errors.Is(err, ErrMACVerify) {
				t.Fatalf("changed data: %v; want ErrMACVerify", err)
			}
		})
	}
}

func TestSoftwareEncryptsDataAndTracks(t *testing.T) {
	f := newSoftwareFixture(t)
	ctx := context.Background()
	record := []byte("settlement record, 32 bytes long")
	iv := make([]byte, 16)
	for _, tc := range []struct {
		name string
		req  DataRequest
	}{
		{"DEK CBC", DataRequest{Key: f.dek, Mode: DataCBC, IV: iv, Data: record}},
		{"DEK ECB", DataRequest{Key: f.dek, Mode: DataECB, Data: record}},
		{"TDK ECB", DataRequest{Key: f.tdk, Mode: DataECB, Data: record}},
		{"TDK track", DataRequest{Key: f.tdk, Mode: DataTrack, Data: record[:12]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := f.sw.Encrypt(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(enc, tc.req.Data) || len(enc) != len(tc.req.Data) {
				t.Fatal("data not encrypted in place size")
			}
			dec := tc.req
			dec.Data = enc
			back, err := f.sw.Decrypt(ctx, dec)
			if err != nil || !bytes.Equal(back, tc.req.Data) {
				t.Fatalf("decrypt: %v", err)
			}
		})
	}
	if _, err := f.sw.Encrypt(ctx, DataRequest{Key: f.dek, Mode: DataCBC, IV: iv, Data: record[:20]}); !errors.Is(err, ErrDataLength) {
		t.Fatalf("partial block: %v; want ErrDataLength", err)
	}
}

func TestSoftwareGeneratesExportsAndImportsKeys(t *testing.T) {
	f := newSoftwareFixture(t)
	ctx := context.Background()
	tmk, _ := NewTDESCipher(swHex(t, swKeyB))
	g, err := f.sw.GenerateKey(ctx, GenerateKeyRequest{Name: "term/1/mak", Spec: Spec{KeyTAK, AlgTDES, 16}, Under: &f.tmk})
	if err != nil {
		t.Fatal(err)
	}
	clearKey := make([]byte, 16)
	DecryptECB(tmk, clearKey, g.Under)
	if err := CheckParity(clearKey); err != nil {
		t.Fatalf("generated key: %v", err)
	}
	if kcv := kcvOf(t, hex.EncodeToString(clearKey)); kcv != g.Key.KCV {
		t.Fatalf("export under TMK has check value %s; the key %s", kcv, g.Key.KCV)
	}

	for _, tc := range []struct {
		name string
		req  ImportKeyRequest
		want error
	}{
		{"right check value", ImportKeyRequest{Name: "x", Spec: g.Key.Spec(), Under: f.tmk, Encrypted: g.Under, KCV: g.Key.KCV}, nil},
		{"wrong check value", ImportKeyRequest{Name: "x", Spec: g.Key.Spec(), Under: f.tmk, Encrypted: g.Under, KCV: "000000"}, ErrKCV},
		{"no check value", ImportKeyRequest{Name: "x", Spec: g.Key.Spec(), Under: f.tmk, Encrypted: g.Under}, ErrKCV},
		{"wrong wrapping key (parity)", ImportKeyRequest{Name: "x", Spec: g.Key.Spec(), Under: f.zmk, Encrypted: swHex(t, swKeyA), KCV: g.Key.KCV}, ErrParity},
		{"under a ZPK", ImportKeyRequest{Name: "x", Spec: g.Key.Spec(), Under: f.zpkA, Encrypted: g.Under, KCV: g.Key.KCV}, ErrKeyUsage},
		{"length mismatch", ImportKeyRequest{Name: "x", Spec: Spec{KeyTAK, AlgTDES, 24}, Under: f.tmk, Encrypted: g.Under, KCV: g.Key.KCV}, ErrKeyLength},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := f.sw.ImportKey(ctx, tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ImportKey error = %v; want %v", err, tc.want)
			}
			if err == nil && k.KCV != g.Key.KCV {
				t.Fatalf("imported key check value %s; want %s", k.KCV, g.Key.KCV)
			}
		})
	}
}

func TestSoftwareFormsKeysFromComponents(t *testing.T) {
	f := newSoftwareFixture(t)
	ctx := context.Background()
	spec := Spec{KeyZMK, AlgTDES, 16}
	c1, c2, c3 := Component{Value: swHex(t, swKeyA)}, Component{Value: swHex(t, swKeyB)}, Component{Value: swHex(t, swKeyA[16:]+swKeyA[:16])}
	two := swHex(t, xorHex(t, swKeyA, swKeyB))
	FixParity(two)
	three := swHex(t, xorHex(t, xorHex(t, swKeyA, swKeyB), swKeyA[16:]+swKeyA[:16]))
	evenComponent := swHex(t, swKeyA)
	evenComponent[3] ^= 1
	withKCV := c1
	withKCV.KCV = kcvOf(t, swKeyA)
	wrongKCV := c2
	wrongKCV.KCV = kcvOf(t, swKeyA)
	for _, tc := range []struct {
		name  string
		comps []Component
		kcv   string
		want  error
	}{
		{"two components", []Component{c1, c2}, kcvOf(t, hex.EncodeToString(two)), nil},
		{"three components", []Component{c1, c2, c3}, kcvOf(t, hex.EncodeToString(three)), nil},
		{"component check values", []Component{withKCV, c2}, kcvOf(t, hex.EncodeToString(two)), nil},
		{"one component", []Component{c1}, kcvOf(t, swKeyA), ErrComponents},
		{"four components", []Component{c1, c2, c3, c1}, "000000", ErrComponents},
		{"short component", []Component{c1, {Value: swHex(t, swKeyB[:16])}}, "000000", ErrComponents},
		{"component with even parity", []Component{{Value: evenComponent}, c2}, "000000", ErrParity},
		{"component check value wrong", []Component{c1, wrongKCV}, kcvOf(t, hex.EncodeToString(two)), ErrKCV},
		{"key check value wrong", []Component{c1, c2}, kcvOf(t, swKeyA), ErrKCV},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := f.sw.ImportComponents(ctx, ComponentsRequest{Name: "acq/a/zmk", Spec: spec, Components: tc.comps, KCV: tc.kcv})
			if !errors.Is(err, tc.want) {
				t.Fatalf("ImportComponents error = %v; want %v", err, tc.want)
			}
			if err == nil && k.KCV != strings.ToUpper(tc.kcv) {
				t.Fatalf("formed key check value %s; want %s", k.KCV, tc.kcv)
			}
		})
	}
}

func TestSoftwareSignOnKeysFitField62AndTheTerminalCanUseThem(t *testing.T) {
	f := newSoftwareFixture(t)
	ctx := context.Background()
	tmk, _ := NewTDESCipher(swHex(t, swKeyB))
	for _, tc := range []struct {
		code   string
		size   int
		pikLen int
		tdk    bool
	}{{"001", 24, 8, false}, {"003", 40, 16, false}, {"004", 60, 16, true}} {
		t.Run(tc.code, func(t *testing.T) {
			s, err := f.sw.CUPSignOnKeys(ctx, CUPSignOnRequest{TMK: f.tmk, NetCode: tc.code, Prefix: "term/22003600"})
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Field62) != tc.size || s.PIK.Name != "term/22003600/pik" || s.MAK.Type != KeyTAK || (s.TDK != nil) != tc.tdk {
				t.Fatalf("field 62 of %d bytes, keys %v %v %v", len(s.Field62), s.PIK, s.MAK, s.TDK)
			}
			set, err := ParseCUPField62(tc.code, s.Field62)
			if err != nil {
				t.Fatal(err)
			}
			pik, mak, _, err := set.DecryptKeys(tmk) // checks the 4-byte check values, as a terminal does
			if err != nil {
				t.Fatal(err)
			}
			if len(pik) != tc.pikLen || len(mak) != 8 {
				t.Fatalf("PIK %d bytes, MAK %d bytes", len(pik), len(mak))
			}
			// The switch's MAK under the LMK and the terminal's clear MAK compute the same MAC.
			data := []byte("0200 message")
			want, _ := ComputeMAC(MACCupECB, mak, data)
			if err := f.sw.VerifyMAC(ctx, s.MAK, MACCupECB, data, want); err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(set.PIKCV[:3]) != strings.ToLower(s.PIK.KCV) {
				t.Fatalf("field 62 PIK check value %X; key %s", set.PIKCV, s.PIK.KCV)
			}
		})
	}
	if _, err := f.sw.CUPSignOnKeys(ctx, CUPSignOnRequest{TMK: f.tmk, NetCode: "002"}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("60.3 = 002: %v; want ErrUnsupported", err)
	}
}

// BenchmarkSoftwareTranslatePIN is a TPK -> ZPK ISO-0 translation through the module: the primitive plus
// the key cache lookups and the PIN length.
func BenchmarkSoftwareTranslatePIN(b *testing.B) {
	f := newSoftwareFixture(b)
	tpk, _ := NewTDESCipher(swHex(b, swKeyA))
	block, _ := EncryptPINBlock(tpk, ISO0, swPIN, swPAN, nil)
	req := PINTranslation{Source: f.tpk, Dest: f.zpkB, SourceFormat: ISO0, DestFormat: ISO0, PAN: swPAN, Block: block}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.sw.TranslatePIN(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSoftwareVerifyCUPMAC verifies a UnionPay MAC over 120 bytes through the module.
func BenchmarkSoftwareVerifyCUPMAC(b *testing.B) {
	f := newSoftwareFixture(b)
	data := make([]byte, 120)
	ctx := context.Background()
	mac, _ := f.sw.GenerateMAC(ctx, f.tak, MACCupECB, data)
	b.ReportAllocs()
	for b.Loop() {
		if err := f.sw.VerifyMAC(ctx, f.tak, MACCupECB, data, mac); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNewKeyUnderAKnownNameEvictsTheOldOne: a terminal signing on again and again gets new working keys under
// the same names; the module keeps only the latest opened, so sign-ons cannot grow its memory and old clear
// keys do not linger, while keys of other names stay cached.
func TestNewKeyUnderAKnownNameEvictsTheOldOne(t *testing.T) {
	ctx := context.Background()
	sw := NewSoftware(newTestLMK(t), nil)
	other, err := sw.GenerateKey(ctx, GenerateKeyRequest{Name: "term/2/mak", Spec: Spec{KeyTAK, AlgTDES, 16}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sw.GenerateMAC(ctx, other.Key, MACX919, []byte("x")); err != nil {
		t.Fatal(err)
	}
	var first Key
	for i := range 50 {
		g, err := sw.GenerateKey(ctx, GenerateKeyRequest{Name: "term/1/mak", Spec: Spec{KeyTAK, AlgTDES, 16}})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = g.Key
		}
		if _, err := sw.GenerateMAC(ctx, g.Key, MACX919, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if n := sw.nOpen.Load(); n != 2 {
		t.Fatalf("%d keys open after 50 sign-ons of one terminal and one other key, want 2", n)
	}
	if _, cached := sw.open.Load(first.Cryptogram); cached {
		t.Fatal("the first sign-on's key is still open")
	}
	if _, cached := sw.open.Load(other.Key.Cryptogram); !cached {
		t.Fatal("the other terminal's key was evicted")
	}
	// An old key is still usable (a late message under it): it is opened again from its cryptogram.
	if _, err := sw.GenerateMAC(ctx, first, MACX919, []byte("x")); err != nil {
		t.Fatal(err)
	}
}
