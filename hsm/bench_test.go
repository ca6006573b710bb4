package hsm

import "testing"

// Budgets (DESIGN.md): PIN translate <= 2 us, UnionPay MAC over 120 bytes <= 2 us, X9.19 over 200 bytes <= 4 us.

func BenchmarkPINTranslateTPKToZPK(b *testing.B) {
	tpk, zpk := tdes(b, testTPK), tdes(b, testZPK)
	src, err := EncryptPINBlock(tpk, ISO0, "1234", panX98, nil)
	if err != nil {
		b.Fatal(err)
	}
	out := make([]byte, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := TranslatePINBlock(tpk, ISO0, zpk, ISO0, src, panX98, nil, out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPINTranslateISO0ToISO3(b *testing.B) {
	tpk, zpk := tdes(b, testTPK), tdes(b, testZPK)
	src, _ := EncryptPINBlock(tpk, ISO0, "1234", panX98, nil)
	out := make([]byte, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := TranslatePINBlock(tpk, ISO0, zpk, ISO3, src, panX98, nil, out); err != nil {
			b.Fatal(err)
		}
	}
}

func benchMAC(b *testing.B, alg MACAlgorithm, key string, n int) {
	m, err := NewMACer(alg, hexVec(b, key))
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i)
	}
	out := make([]byte, 0, 16)
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		m.Sum(out, data)
	}
}

func BenchmarkMACCupECB120(b *testing.B)          { benchMAC(b, MACCupECB, testZPK, 120) }
func BenchmarkMACX919_200(b *testing.B)           { benchMAC(b, MACX919, testZPK, 200) }
func BenchmarkMACAESCMAC_200(b *testing.B)        { benchMAC(b, MACAESCMAC, aesIK, 200) }
func BenchmarkMACISO9797Alg1TDES200(b *testing.B) { benchMAC(b, MACISO9797Alg1, testZPK, 200) }

func BenchmarkMACVerifyX919_200(b *testing.B) {
	m, _ := NewMACer(MACX919, hexVec(b, testZPK))
	data := make([]byte, 200)
	mac := m.Sum(nil, data)[:4]
	b.ReportAllocs()
	for b.Loop() {
		if !m.Verify(data, mac) {
			b.Fatal("MAC does not verify")
		}
	}
}

// DUKPT host side: BDK-derived PIN key for one transaction (the derivation a DUKPT PIN translation adds).
func BenchmarkDUKPTPINKeyFromIK(b *testing.B) {
	ik, ksn := hexVec(b, tdesIK), hexVec(b, tdesKSN1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DUKPTPINKey(ik, ksn); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAESDUKPTPINKeyFromIK(b *testing.B) {
	ik, ksn := hexVec(b, aesIK), hexVec(b, aesKSN1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := AESDUKPTWorkingKey(ik, ksn, AESPINEncryption); err != nil {
			b.Fatal(err)
		}
	}
}

// The cost of one single-DES block, the unit of the budgets above (DESIGN.md assumes about 113 ns): X9.19
// over 200 bytes is 27 of them, a TDES PIN translation 6, the UnionPay MAC with a TDES MAK 6.
func BenchmarkDESBlock(b *testing.B) {
	c, err := NewTDESCipher(hexVec(b, testZPK)[:8])
	if err != nil {
		b.Fatal(err)
	}
	blk := make([]byte, 8)
	for b.Loop() {
		c.Encrypt(blk, blk)
	}
}
