package hsm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// P2 (reference/SOURCES.md, q.cnblogs.com/q/128930): a real UnionPay POS 0200 frame as published, with its
// MAK; the host's MAC is field 64, the last 8 bytes ("B3A092AE"). The frame has no card data (fields 3, 4, 11,
// 22, 25, 41, 42, 49, 60, 62, 64). Layout: length 2 + TPDU 5 + header 6, then the MTI.
const (
	p2Frame = "007F600003000060321032007202003020048000C0801500000000000000123400000203009930303030303030313935" +
		"3237313831383232313738373531353600192600000100060000000000435F0112323834343132333435363738393031" +
		"3233345F03063136303033365F04063230303832365C0230314233413039324145"
	p2MAK = "0723C80DB5F4CD3D0723C80DB5F4CD3D"
	p2MAC = "B3A092AE"
)

// p2MAB returns the MAC block of P2: from the MTI to the end of field 62.
func p2MAB(t testing.TB) []byte {
	f := hexVec(t, p2Frame)
	if got := string(f[len(f)-8:]); got != p2MAC {
		t.Fatalf("P2 field 64 = %q, want %q", got, p2MAC)
	}
	return f[2+5+6 : len(f)-8]
}

// PBOC MAC vector of mynw.cn (P10, reference/unionpay-pos.md section 5): 74 bytes of ASCII text.
const (
	pbocKey  = "5775204D69616F6A756E404726444311"
	pbocData = "CHENHAO-PC|BFEBFBFF000306C3~9BP0PD2CN7016366I0043|20240111|20250101|8191|0"
	pbocMAC  = "4089819D3D991CC7"
)

// NIST SP 800-38B appendix D.1-D.3 (AES-CMAC) examples.
const (
	cmacMsg64 = "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E5130C81C46A35CE411E5FBC1191A0A52EFF69F2445DF4F9B17AD2B417BE66C3710"
	cmacK128  = "2B7E151628AED2A6ABF7158809CF4F3C"
	cmacK192  = "8E73B0F7DA0E6452C810F32B809079E562F8EAD2522C6B7B"
	cmacK256  = "603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4"
)

func TestComputeMACMatchesPublishedVectors(t *testing.T) {
	tests := []struct {
		name string
		alg  MACAlgorithm
		key  string
		data []byte
		want string // hex of the MAC, or the text for cup-ecb
	}{
		{"UnionPay ECB MAC of a real 0200 (P2)", MACCupECB, p2MAK, p2MAB(t), p2MAC},
		{"UnionPay ECB MAC, single-length form of the same MAK", MACCupECB, p2MAK[:16], p2MAB(t), p2MAC},
		{"PBOC MAC (mynw.cn)", MACPBOC, pbocKey, []byte(pbocData), pbocMAC},
		// mynw.cn publishes the CBC chain under the left key half: X9.9 over the first 1, 2, 3 blocks.
		{"X9.9 over one block (PBOC trace)", MACX99, pbocKey[:16], []byte(pbocData[:8]), "9E21A468008DB6B4"},
		{"X9.9 over two blocks (PBOC trace)", MACX99, pbocKey[:16], []byte(pbocData[:16]), "196C0FEDC9D24187"},
		{"ISO 9797-1 alg 1 over three blocks (PBOC trace)", MACISO9797Alg1, pbocKey[:16], []byte(pbocData[:24]), "C41CE10A60F953E1"},
		{"AES-CMAC-128 empty message", MACAESCMAC, cmacK128, nil, "BB1D6929E95937287FA37D129B756746"},
		{"AES-CMAC-128 16 bytes", MACAESCMAC, cmacK128, hexVec(t, cmacMsg64[:32]), "070A16B46B4D4144F79BDD9DD04A287C"},
		{"AES-CMAC-128 40 bytes", MACAESCMAC, cmacK128, hexVec(t, cmacMsg64[:80]), "DFA66747DE9AE63030CA32611497C827"},
		{"AES-CMAC-128 64 bytes", MACAESCMAC, cmacK128, hexVec(t, cmacMsg64), "51F0BEBF7E3B9D92FC49741779363CFE"},
		{"AES-CMAC-192 empty message", MACAESCMAC, cmacK192, nil, "D17DDF46ADAACDE531CAC483DE7A9367"},
		{"AES-CMAC-192 16 bytes", MACAESCMAC, cmacK192, hexVec(t, cmacMsg64[:32]), "9E99A7BF31E710900662F65E617C5184"},
		{"AES-CMAC-256 empty message", MACAESCMAC, cmacK256, nil, "028962F61B7BF89EFC6B551F4667D983"},
		{"AES-CMAC-256 16 bytes", MACAESCMAC, cmacK256, hexVec(t, cmacMsg64[:32]), "28A7023F452E8F82BD4BF28D8C37C35C"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ComputeMAC(tt.alg, hexVec(t, tt.key), tt.data)
			if err != nil {
				t.Fatal(err)
			}
			s := strings.ToUpper(hex.EncodeToString(got))
			if tt.alg == MACCupECB {
				s = string(got)
			}
			if s != tt.want {
				t.Errorf("MAC = %s, want %s", s, tt.want)
			}
		})
	}
}

// X9.19 and ISO 9797-1 algorithm 3 differ from PBOC only in padding: padding the message by hand with
// method 2 must give the PBOC MAC.
func TestRetailMACWithMethod2PaddingEqualsPBOC(t *testing.T) {
	padded := append([]byte(pbocData), 0x80)
	for len(padded)%8 != 0 {
		padded = append(padded, 0)
	}
	for _, alg := range []MACAlgorithm{MACX919, MACISO9797Alg3} {
		got, err := ComputeMAC(alg, hexVec(t, pbocKey), padded)
		if err != nil {
			t.Fatal(err)
		}
		if s := strings.ToUpper(hex.EncodeToString(got)); s != pbocMAC {
			t.Errorf("%s over the method-2 padded data = %s, want %s", alg, s, pbocMAC)
		}
	}
}

// reference/unionpay-pos.md section 5: steps 3-4 of the UnionPay MAC equal ISO 9797-1 algorithm 1 over the
// 16 hex characters of the XOR of the blocks.
func TestCupECBEqualsAlg1OverHexOfXOR(t *testing.T) {
	mab := p2MAB(t)
	var r [8]byte
	for i := 0; i < len(mab); i++ {
		r[i%8] ^= mab[i]
	}
	alg1, err := ComputeMAC(MACISO9797Alg1, hexVec(t, p2MAK), []byte(strings.ToUpper(hex.EncodeToString(r[:]))))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.ToUpper(hex.EncodeToString(alg1))[:8]
	if got, _ := ComputeMAC(MACCupECB, hexVec(t, p2MAK), mab); string(got) != want || want != p2MAC {
		t.Errorf("cup-ecb = %s, alg1 over hex(XOR) = %s, published %s", got, want, p2MAC)
	}
}

func TestMACPaddingRules(t *testing.T) {
	key := hexVec(t, pbocKey)
	sum := func(alg MACAlgorithm, data []byte) string {
		m, err := ComputeMAC(alg, key, data)
		if err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(m)
	}
	seven := []byte("1234567")
	if sum(MACX919, seven) != sum(MACX919, append(seven, 0)) {
		t.Error("x9.19: zero padding of a partial block should equal an explicit zero byte")
	}
	if sum(MACX919, nil) != sum(MACX919, make([]byte, 8)) {
		t.Error("x9.19: empty data should MAC as one zero block (ISO 9797-1 method 1)")
	}
	eight := []byte("12345678")
	if sum(MACPBOC, eight) == sum(MACX919, eight) {
		t.Error("pboc should add a full 0x80 block after whole blocks")
	}
	if sum(MACPBOC, eight) != sum(MACX919, append(append([]byte{}, eight...), 0x80, 0, 0, 0, 0, 0, 0, 0)) {
		t.Error("pboc over 8 bytes should equal x9.19 over the data plus 80 00..00")
	}
}

func TestNewMACerRejectsWrongKeys(t *testing.T) {
	tests := []struct {
		alg    MACAlgorithm
		keyLen int
		err    error
	}{
		{MACX99, 16, ErrKeyLength},
		{MACX919, 8, ErrKeyLength},
		{MACX919, 24, ErrKeyLength},
		{MACISO9797Alg3, 8, ErrKeyLength},
		{MACPBOC, 24, ErrKeyLength},
		{MACISO9797Alg1, 10, ErrKeyLength},
		{MACCupECB, 32, ErrKeyLength},
		{MACAESCMAC, 8, ErrKeyLength},
		{"hmac-sha1", 16, ErrUnsupported},
	}
	for _, tt := range tests {
		if _, err := NewMACer(tt.alg, make([]byte, tt.keyLen)); !errors.Is(err, tt.err) {
			t.Errorf("%s with %d-byte key: err = %v, want %v", tt.alg, tt.keyLen, err, tt.err)
		}
	}
}

func TestMACerVerify(t *testing.T) {
	m, err := NewMACer(MACX919, hexVec(t, pbocKey))
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(pbocData)
	full := m.Sum(nil, data)
	tampered := append([]byte{}, data...)
	tampered[10] ^= 1
	badMAC := append([]byte{}, full...)
	badMAC[3] ^= 0x40
	tests := []struct {
		name string
		data []byte
		mac  []byte
		want bool
	}{
		{"full 8-byte MAC", data, full, true},
		{"leftmost 4 bytes", data, full[:4], true},
		{"altered data", tampered, full, false},
		{"altered MAC", data, badMAC, false},
		{"MAC shorter than 4 bytes", data, full[:3], false},
		{"MAC longer than the algorithm's", data, append(full, 0), false},
	}
	for _, tt := range tests {
		if got := m.Verify(tt.data, tt.mac); got != tt.want {
			t.Errorf("%s: Verify = %v, want %v", tt.name, got, tt.want)
		}
	}
	cup, _ := NewMACer(MACCupECB, hexVec(t, p2MAK))
	if !cup.Verify(p2MAB(t), []byte(p2MAC)) {
		t.Error("cup-ecb Verify rejects the published field 64")
	}
}

func TestMACerSumAppendsAndAllocatesNothing(t *testing.T) {
	data := p2MAB(t)
	for _, alg := range []MACAlgorithm{MACCupECB, MACX919, MACAESCMAC} {
		key := hexVec(t, p2MAK)
		if alg == MACAESCMAC {
			key = hexVec(t, cmacK128)
		}
		m, err := NewMACer(alg, key)
		if err != nil {
			t.Fatal(err)
		}
		prefix := []byte("hdr")
		out := m.Sum(append(make([]byte, 0, 64), prefix...), data)
		if !bytes.HasPrefix(out, prefix) || len(out) != len(prefix)+m.Size() {
			t.Errorf("%s: Sum did not append %d bytes to dst", alg, m.Size())
		}
		buf := make([]byte, 0, 16)
		if n := testing.AllocsPerRun(100, func() { m.Sum(buf[:0], data) }); n != 0 {
			t.Errorf("%s: Sum allocates %v times", alg, n)
		}
		mac := m.Sum(nil, data)
		if n := testing.AllocsPerRun(100, func() { m.Verify(data, mac) }); n != 0 {
			t.Errorf("%s: Verify allocates %v times", alg, n)
		}
	}
}
