package hsm_test

import (
	"encoding/hex"
	"fmt"

	"github.com/railswitch/railswitch/hsm"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// The clear ISO format 0 block of the ANSI X9.8 example (PIN 1234, PAN 4012345678909).
func ExampleEncodePINBlock() {
	b, err := hsm.EncodePINBlock(hsm.ISO0, "1234", "4012345678909", nil)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%X\n", b)
	// Output: 041274EDCBA9876F
}

// A PIN block translated from a terminal PIN key to a zone PIN key, then back.
func ExampleTranslatePINBlock() {
	tpk, _ := hsm.NewTDESCipher(unhex("0123456789ABCDEFFEDCBA9876543210"))
	zpk, _ := hsm.NewTDESCipher(unhex("70F2A84CCBC2AE8625CBB0F2C22AB923"))
	underTPK, _ := hsm.EncryptPINBlock(tpk, hsm.ISO0, "1234", "4012345678909", nil)
	underZPK, err := hsm.TranslatePINBlock(tpk, hsm.ISO0, zpk, hsm.ISO0, underTPK, "4012345678909", nil, nil)
	if err != nil {
		panic(err)
	}
	pin, _ := hsm.DecryptPINBlock(zpk, hsm.ISO0, underZPK, "4012345678909")
	fmt.Println(len(underZPK), pin)
	_, err = hsm.TranslatePINBlock(tpk, hsm.ISO0, zpk, hsm.ISO1, underTPK, "4012345678909", nil, nil)
	fmt.Println(err)
	// Output:
	// 8 1234
	// hsm: translation from a PAN-bound PIN block format to format 1 is not permitted
}

// The PBOC MAC example of mynw.cn (ISO 9797-1 algorithm 3, padding method 2).
func ExampleComputeMAC() {
	mac, err := hsm.ComputeMAC(hsm.MACPBOC, unhex("5775204D69616F6A756E404726444311"),
		[]byte("CHENHAO-PC|BFEBFBFF000306C3~9BP0PD2CN7016366I0043|20240111|20250101|8191|0"))
	if err != nil {
		panic(err)
	}
	fmt.Printf("%X\n", mac)
	// Output: 4089819D3D991CC7
}

// A MACer holds prepared ciphers for many messages; X9.19 links usually send the leftmost 4 bytes.
func ExampleMACer() {
	m, err := hsm.NewMACer(hsm.MACAESCMAC, unhex("2B7E151628AED2A6ABF7158809CF4F3C"))
	if err != nil {
		panic(err)
	}
	mac := m.Sum(nil, unhex("6BC1BEE22E409F96E93D7E117393172A"))
	fmt.Printf("%X %v\n", mac, m.Verify(unhex("6BC1BEE22E409F96E93D7E117393172A"), mac[:8]))
	// Output: 070A16B46B4D4144F79BDD9DD04A287C true
}

// The check value payShield shows for the ANSI X9.24 test BDK.
func ExampleKCV() {
	kcv, _ := hsm.KCV(unhex("0123456789ABCDEFFEDCBA9876543210"), false, 3)
	fmt.Printf("%X\n", kcv)
	// Output: 08D7B4
}

// The ANSI X9.24-1:2009 example: initial key, then the counter-1 PIN key encrypts the ISO 0 block.
func ExampleDUKPTPINKey() {
	ksn := unhex("FFFF9876543210E00001")
	ik, _ := hsm.DUKPTInitialKey(unhex("0123456789ABCDEFFEDCBA9876543210"), ksn)
	pinKey, _ := hsm.DUKPTPINKey(ik, ksn)
	c, _ := hsm.NewTDESCipher(pinKey)
	block, _ := hsm.EncryptPINBlock(c, hsm.ISO0, "1234", "4012345678909", nil)
	fmt.Printf("%X %X\n", ik, block)
	// Output: 6AC292FAA1315B4D858AB3A3D7D5933A 1B9C1845EB993A7A
}

// The ANSI X9.24-3:2017 supplement: AES-128 initial key and the PIN key of counter 1.
func ExampleAESDUKPTWorkingKey() {
	ksn := unhex("123456789012345600000001")
	ik, _ := hsm.AESDUKPTInitialKey(unhex("FEDCBA9876543210F1F1F1F1F1F1F1F1"), ksn[:8])
	pinKey, _ := hsm.AESDUKPTWorkingKey(ik, ksn, hsm.AESPINEncryption)
	fmt.Printf("%X %X\n", ik, pinKey)
	// Output: 1273671EA26AC29AFA4D1084127652A1 AF8CB133A78F8DC2D1359F18527593FB
}

// Field 62 of a real UnionPay sign-on reply (60.3 = 003): PIK, MAK and their check values under the TMK.
func ExampleParseCUPField62() {
	k, err := hsm.ParseCUPField62("003", unhex("E01B3E860949EE4C0BDDD573168ED6BA097575553945990F875BA4EB0000000000000000EDE09D04"))
	if err != nil {
		panic(err)
	}
	fmt.Printf("PIK %X cv %X, MAK %X cv %X\n", k.PIK, k.PIKCV, k.MAK, k.MAKCV)
	// Output: PIK E01B3E860949EE4C0BDDD573168ED6BA cv 09757555, MAK 3945990F875BA4EB cv EDE09D04
}
