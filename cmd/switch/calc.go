package main

import (
	"crypto/cipher"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/railswitch/railswitch/hsm"
)

const calcWarning = "For TEST KEYS ONLY: keys, PINs and results are given and printed in the clear."

func init() { rootCmd.AddCommand(newCalcCmd()) }

// newCalcCmd builds the "calc" command tree; each call returns fresh flags, so tests can run it repeatedly.
func newCalcCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "calc",
		Short: "Cryptographic calculator for testers (TEST KEYS ONLY)",
		Long: "Cryptographic calculator for testers and integration engineers: MACs, PIN blocks, check values,\n" +
			"ECB encryption and DUKPT keys, computed with the switch's own hsm package.\n\n" + calcWarning + "\n" +
			"Never type a production key or a real cardholder's PIN here. All values are hex unless stated.",
		Args: cobra.NoArgs,
	}
	c.PersistentFlags().Bool("json", false, "print one JSON object instead of readable lines")
	c.AddCommand(newCalcMACCmd(), newCalcPINBlockCmd(), newCalcKCVCmd(),
		newCalcCipherCmd(true), newCalcCipherCmd(false), newCalcDUKPTCmd())
	return c
}

// calcField is one named result of a calc subcommand, printed in order.
type calcField struct{ name, value string }

// calcPrint writes the fields as one JSON object with --json, else as aligned "name: value" lines.
func calcPrint(cmd *cobra.Command, fields ...calcField) error {
	out := cmd.OutOrStdout()
	if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
		m := make(map[string]string, len(fields))
		for _, f := range fields {
			m[f.name] = f.value
		}
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	width := 0
	for _, f := range fields {
		width = max(width, len(f.name))
	}
	for _, f := range fields {
		if _, err := fmt.Fprintf(out, "%-*s  %s\n", width+1, f.name+":", f.value); err != nil {
			return err
		}
	}
	return nil
}

// calcHexFlag decodes a hex flag value; the error names the flag but never repeats the value (it may be a key).
func calcHexFlag(cmd *cobra.Command, name string) ([]byte, error) {
	s, _ := cmd.Flags().GetString(name)
	if s == "" {
		return nil, fmt.Errorf("--%s is required", name)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("--%s must be hex digits (an even number of them)", name)
	}
	return b, nil
}

func calcHex(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

func newCalcMACCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "mac --alg ALG --key HEX --data HEX",
		Short: "Compute a MAC (cup-ecb, x9.9, x9.19, iso9797-1-alg1, iso9797-1-alg3, pboc, aes-cmac)",
		Long: "Compute a MAC over --data. cup-ecb prints the 8 ASCII characters of UnionPay field 64 as text;\n" +
			"aes-cmac prints 16 bytes; the other algorithms print the full 8-byte MAC (links that send 4 bytes\n" +
			"use the leftmost 8 hex digits).\n\n" + calcWarning,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			alg, _ := cmd.Flags().GetString("alg")
			key, err := calcHexFlag(cmd, "key")
			if err != nil {
				return err
			}
			data, err := calcHexFlag(cmd, "data")
			if err != nil {
				return err
			}
			mac, err := hsm.ComputeMAC(hsm.MACAlgorithm(alg), key, data)
			if err != nil {
				return err
			}
			if hsm.MACAlgorithm(alg) == hsm.MACCupECB {
				return calcPrint(cmd, calcField{"mac", string(mac)})
			}
			return calcPrint(cmd, calcField{"mac", calcHex(mac)})
		},
	}
	names := make([]string, len(hsm.MACAlgorithms))
	for i, a := range hsm.MACAlgorithms {
		names[i] = string(a)
	}
	c.Flags().String("alg", "", "MAC algorithm: "+strings.Join(names, ", "))
	c.Flags().String("key", "", "MAC key (hex)")
	c.Flags().String("data", "", "data to MAC (hex)")
	_ = c.MarkFlagRequired("alg")
	return c
}

func newCalcPINBlockCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "pinblock",
		Short: "Encode or decode an ISO 9564-1 PIN block (formats 0, 1, 3, 4)",
		Args:  cobra.NoArgs,
	}
	encode := &cobra.Command{
		Use:   "encode --format F --pin PIN --pan PAN [--key HEX]",
		Short: "Build a PIN block, encrypted when --key is given",
		Long: "Build a PIN block. Without --key it is the clear block (format 4: the 16-byte plain-text PIN\n" +
			"field). With --key it is encrypted: a TDES key for formats 0, 1 and 3, an AES key for format 4.\n" +
			"Formats 1, 3 and 4 use random fill, so their blocks differ on every run.\n\n" + calcWarning,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, pin, pan, key, err := calcPINFlags(cmd)
			if err != nil {
				return err
			}
			var b []byte
			if key == nil {
				b, err = hsm.EncodePINBlock(f, pin, pan, nil)
			} else {
				b, err = hsm.EncryptPINBlock(key, f, pin, pan, nil)
			}
			if err != nil {
				return err
			}
			return calcPrint(cmd, calcField{"pinblock", calcHex(b)})
		},
	}
	encode.Flags().String("pin", "", "PIN, 4 to 12 digits")
	decode := &cobra.Command{
		Use:   "decode --format F --pinblock HEX --pan PAN [--key HEX]",
		Short: "Extract the PIN from a PIN block, decrypting it when --key is given",
		Long:  "Extract the PIN from a clear PIN block, or from an encrypted one with --key.\n\n" + calcWarning,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, _, pan, key, err := calcPINFlags(cmd)
			if err != nil {
				return err
			}
			block, err := calcHexFlag(cmd, "pinblock")
			if err != nil {
				return err
			}
			var pin string
			if key == nil {
				pin, err = hsm.DecodePINBlock(f, block, pan)
			} else {
				pin, err = hsm.DecryptPINBlock(key, f, block, pan)
			}
			if err != nil {
				return err
			}
			return calcPrint(cmd, calcField{"pin", pin}, calcField{"format", fmt.Sprint(int(f))})
		},
	}
	decode.Flags().String("pinblock", "", "PIN block (hex): 8 bytes, or 16 for format 4")
	for _, sub := range []*cobra.Command{encode, decode} {
		sub.Flags().String("format", "0", "ISO 9564-1 format: 0, 1, 3 or 4 (payShield codes 01, 05, 47, 48 too)")
		sub.Flags().String("pan", "", "primary account number (not needed for format 1)")
		sub.Flags().String("key", "", "PIN key (hex): TDES for formats 0, 1, 3; AES for format 4")
		c.AddCommand(sub)
	}
	return c
}

// calcPINFlags reads the flags shared by pinblock encode and decode; key is nil without --key.
func calcPINFlags(cmd *cobra.Command) (f hsm.PINBlockFormat, pin, pan string, key cipher.Block, err error) {
	fs, _ := cmd.Flags().GetString("format")
	if f, err = hsm.ParsePINBlockFormat(fs); err != nil {
		return
	}
	if cmd.Flags().Lookup("pin") != nil {
		pin, _ = cmd.Flags().GetString("pin")
	}
	pan, _ = cmd.Flags().GetString("pan")
	if ks, _ := cmd.Flags().GetString("key"); ks != "" {
		var k []byte
		if k, err = calcHexFlag(cmd, "key"); err != nil {
			return
		}
		if f == hsm.ISO4 {
			key, err = hsm.NewAESCipher(k)
		} else {
			key, err = hsm.NewTDESCipher(k)
		}
	}
	return
}

func newCalcKCVCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "kcv --key HEX [--aes] [--bytes N]",
		Short: "Compute a key check value (6 hex digits by default)",
		Long: "Compute a key check value: TDES encrypts a zero block; AES (--aes) takes AES-CMAC of a 16-byte\n" +
			"zero block (ANSI X9.24-1:2017). The leftmost --bytes bytes are printed.\n\n" + calcWarning,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := calcHexFlag(cmd, "key")
			if err != nil {
				return err
			}
			isAES, _ := cmd.Flags().GetBool("aes")
			n, _ := cmd.Flags().GetInt("bytes")
			kcv, err := hsm.KCV(key, isAES, n)
			if err != nil {
				return err
			}
			return calcPrint(cmd, calcField{"kcv", calcHex(kcv)})
		},
	}
	c.Flags().String("key", "", "key (hex)")
	c.Flags().Bool("aes", false, "the key is an AES key")
	c.Flags().Int("bytes", 3, "check value length in bytes (TDES 1-8, AES 1-16)")
	return c
}

// newCalcCipherCmd builds "encrypt" or "decrypt": ECB over whole blocks.
func newCalcCipherCmd(encrypt bool) *cobra.Command {
	verb := "decrypt"
	if encrypt {
		verb = "encrypt"
	}
	c := &cobra.Command{
		Use:   verb + " --key HEX --data HEX [--aes]",
		Short: strings.ToUpper(verb[:1]) + verb[1:] + " data in ECB mode (TDES, or AES with --aes)",
		Long: "ECB mode, no padding: --data must be whole blocks (8 bytes for TDES, 16 for AES). An 8-byte key\n" +
			"is single DES, 16 bytes double-length TDES, 24 bytes triple-length.\n\n" + calcWarning,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := calcHexFlag(cmd, "key")
			if err != nil {
				return err
			}
			data, err := calcHexFlag(cmd, "data")
			if err != nil {
				return err
			}
			var b cipher.Block
			if isAES, _ := cmd.Flags().GetBool("aes"); isAES {
				b, err = hsm.NewAESCipher(k)
			} else {
				b, err = hsm.NewTDESCipher(k)
			}
			if err != nil {
				return err
			}
			out := make([]byte, len(data))
			if encrypt {
				err = hsm.EncryptECB(b, out, data)
			} else {
				err = hsm.DecryptECB(b, out, data)
			}
			if err != nil {
				return err
			}
			return calcPrint(cmd, calcField{"data", calcHex(out)})
		},
	}
	c.Flags().String("key", "", "key (hex)")
	c.Flags().String("data", "", "data (hex), whole blocks")
	c.Flags().Bool("aes", false, "the key is an AES key")
	return c
}

func newCalcDUKPTCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "dukpt --bdk HEX --ksn HEX [--aes] [--pin PIN --pan PAN]",
		Short: "Derive DUKPT keys (TDES X9.24-1, AES X9.24-3) and optionally the encrypted PIN block",
		Long: "Derive the initial key and the working keys of one transaction from a BDK and a KSN.\n" +
			"TDES (10-byte KSN): pin_key = PIN variant, mac_key = request MAC variant, data_key = request data\n" +
			"variant with the one-way function (X9.24-1:2009). AES (--aes, 12-byte KSN): PIN encryption, MAC\n" +
			"generation and data encryption keys (X9.24-3:2017), of the BDK's length. transaction_key is the\n" +
			"key before any variant (AES: the intermediate derivation key). With --pin and --pan the PIN block\n" +
			"is ISO format 0 (TDES) or 4 (AES) under pin_key. A KSN whose counter is zero gives only the ik.\n\n" +
			calcWarning,
		Args: cobra.NoArgs,
		RunE: runCalcDUKPT,
	}
	c.Flags().String("bdk", "", "base derivation key (hex): 16 bytes for TDES; 16, 24 or 32 for AES")
	c.Flags().String("ksn", "", "key serial number (hex): 10 bytes for TDES, 12 for AES")
	c.Flags().Bool("aes", false, "AES DUKPT (ANSI X9.24-3)")
	c.Flags().String("data-usage", "both", "AES data key usage: both, encrypt or decrypt")
	c.Flags().String("pin", "", "PIN for the encrypted PIN block")
	c.Flags().String("pan", "", "PAN for the encrypted PIN block")
	return c
}

func runCalcDUKPT(cmd *cobra.Command, _ []string) error {
	bdk, err := calcHexFlag(cmd, "bdk")
	if err != nil {
		return err
	}
	ksn, err := calcHexFlag(cmd, "ksn")
	if err != nil {
		return err
	}
	pin, _ := cmd.Flags().GetString("pin")
	pan, _ := cmd.Flags().GetString("pan")
	if (pin == "") != (pan == "") {
		return errors.New("--pin and --pan go together")
	}
	isAES, _ := cmd.Flags().GetBool("aes")
	var d calcDUKPTKeys
	if isAES {
		usage, _ := cmd.Flags().GetString("data-usage")
		d, err = calcAESDUKPT(bdk, ksn, usage)
	} else {
		d, err = calcTDESDUKPT(bdk, ksn)
	}
	if err != nil {
		return err
	}
	fields := []calcField{{"ik", calcHex(d.ik)}}
	if d.pinKey == nil {
		if pin != "" {
			return fmt.Errorf("%w: the KSN counter is zero, so there is no PIN key", hsm.ErrKSNCounter)
		}
		return calcPrint(cmd, fields...)
	}
	fields = append(fields, calcField{"transaction_key", calcHex(d.txnKey)}, calcField{"pin_key", calcHex(d.pinKey)},
		calcField{"mac_key", calcHex(d.macKey)}, calcField{"data_key", calcHex(d.dataKey)})
	if pin != "" {
		var b []byte
		if isAES {
			var k cipher.Block
			if k, err = hsm.NewAESCipher(d.pinKey); err == nil {
				b, err = hsm.EncryptPINBlockISO4(k, pin, pan, nil)
			}
		} else {
			var k cipher.Block
			if k, err = hsm.NewTDESCipher(d.pinKey); err == nil {
				b, err = hsm.EncryptPINBlock(k, hsm.ISO0, pin, pan, nil)
			}
		}
		if err != nil {
			return err
		}
		fields = append(fields, calcField{"pinblock", calcHex(b)})
	}
	return calcPrint(cmd, fields...)
}

// calcDUKPTKeys holds the keys calc dukpt prints; pinKey is nil when the KSN counter is zero.
type calcDUKPTKeys struct{ ik, txnKey, pinKey, macKey, dataKey []byte }

func calcTDESDUKPT(bdk, ksn []byte) (d calcDUKPTKeys, err error) {
	if d.ik, err = hsm.DUKPTInitialKey(bdk, ksn); err != nil {
		return d, err
	}
	if ksn[7]&0x1F == 0 && ksn[8] == 0 && ksn[9] == 0 {
		return d, nil // the initial KSN: no transaction keys
	}
	if d.txnKey, err = hsm.DUKPTTransactionKey(d.ik, ksn); err != nil {
		return d, err
	}
	if d.pinKey, err = hsm.DUKPTPINKey(d.ik, ksn); err != nil {
		return d, err
	}
	if d.macKey, err = hsm.DUKPTMACRequestKey(d.ik, ksn); err != nil {
		return d, err
	}
	d.dataKey, err = hsm.DUKPTDataRequestKey(d.ik, ksn)
	return d, err
}

func calcAESDUKPT(bdk, ksn []byte, dataUsage string) (d calcDUKPTKeys, err error) {
	usages := map[string]hsm.AESKeyUsage{
		"both": hsm.AESDataBothWays, "encrypt": hsm.AESDataEncryption, "decrypt": hsm.AESDataDecryption,
	}
	du, ok := usages[dataUsage]
	if !ok {
		return d, fmt.Errorf("--data-usage must be both, encrypt or decrypt")
	}
	if len(ksn) != hsm.AESKSNLen {
		return d, fmt.Errorf("%w: AES KSN must be %d bytes, got %d", hsm.ErrKSN, hsm.AESKSNLen, len(ksn))
	}
	if d.ik, err = hsm.AESDUKPTInitialKey(bdk, ksn[:8]); err != nil {
		return d, err
	}
	if ksn[8]|ksn[9]|ksn[10]|ksn[11] == 0 {
		return d, nil
	}
	if d.txnKey, err = hsm.AESDUKPTDerivationKey(d.ik, ksn); err != nil {
		return d, err
	}
	if d.pinKey, err = hsm.AESDUKPTWorkingKey(d.ik, ksn, hsm.AESPINEncryption); err != nil {
		return d, err
	}
	if d.macKey, err = hsm.AESDUKPTWorkingKey(d.ik, ksn, hsm.AESMACGeneration); err != nil {
		return d, err
	}
	d.dataKey, err = hsm.AESDUKPTWorkingKey(d.ik, ksn, du)
	return d, err
}
