package pos

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"time"

	"github.com/railswitch/railswitch/codec"
)

// Entry is how the card is read.
type Entry string

// Card entry modes and their field 22 digits 1-2.
const (
	Swipe  Entry = "swipe"  // magnetic stripe: track 2 in field 35
	Chip   Entry = "chip"   // contact IC: PAN, expiry, card sequence number, track 2 equivalent and field 55
	Manual Entry = "manual" // keyed PAN and expiry
)

var entryCodes = map[Entry]string{Swipe: "02", Chip: "05", Manual: "01"}

// Card is the card presented to the terminal. Use published test PANs only.
type Card struct {
	PAN    string `yaml:"pan" json:"pan"`
	Expiry string `yaml:"expiry" json:"expiry"` // YYMM; default 3012
	Entry  Entry  `yaml:"entry" json:"entry"`   // default swipe
	PIN    string `yaml:"pin" json:"pin"`       // empty: no PIN entered
	Track2 string `yaml:"track2" json:"track2"` // default: PAN=YYMM101 and a zero discretionary part
}

// check fills defaults and validates the card, never showing its values.
func (c *Card) check() error {
	if len(c.PAN) < 12 || len(c.PAN) > 19 || !digits(c.PAN) {
		return fmt.Errorf("card PAN: want 12 to 19 digits")
	}
	if c.Expiry == "" {
		c.Expiry = "3012"
	}
	if len(c.Expiry) != 4 || !digits(c.Expiry) {
		return fmt.Errorf("card expiry: want YYMM")
	}
	if c.Entry == "" {
		c.Entry = Swipe
	}
	if _, ok := entryCodes[c.Entry]; !ok {
		return fmt.Errorf("card entry %q: want swipe, chip or manual", c.Entry)
	}
	if c.PIN != "" && (len(c.PIN) < 4 || len(c.PIN) > 12 || !digits(c.PIN)) {
		return fmt.Errorf("card PIN: want 4 to 12 digits")
	}
	if c.Track2 == "" {
		c.Track2 = c.PAN + "=" + c.Expiry + "101" + "0000000"
	}
	return nil
}

// entryMode is field 22: entry digits and 1 with PIN, 2 without.
func (c *Card) entryMode() string {
	if c.PIN != "" {
		return entryCodes[c.Entry] + "1"
	}
	return entryCodes[c.Entry] + "2"
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// chipData builds the small EMV data set of field 55 a contact card and terminal produce for an ARQC. The
// cryptogram is a digest of the transaction, standing in for the card's key, which the host never checks.
func chipData(pan string, amount int64, trace string, now time.Time, txnType byte) []byte {
	amt := bcd(fmt.Sprintf("%012d", amount))
	atc, _ := strconv.Atoi(trace)
	sum := sha256.Sum256([]byte(pan + trace + strconv.FormatInt(amount, 10)))
	var b []byte
	b = codec.AppendTLV(b, 0x9F26, sum[:8])                                          // application cryptogram
	b = codec.AppendTLV(b, 0x9F27, []byte{0x80})                                     // ARQC
	b = codec.AppendTLV(b, 0x9F10, []byte{0x07, 0x01, 0x01, 0x03, 0xA0, 0x00, 0x00}) // issuer application data
	b = codec.AppendTLV(b, 0x9F37, sum[8:12])                                        // unpredictable number
	b = codec.AppendTLV(b, 0x9F36, []byte{byte(atc >> 8), byte(atc)})                // ATC
	b = codec.AppendTLV(b, 0x95, make([]byte, 5))                                    // TVR
	b = codec.AppendTLV(b, 0x9A, bcd(now.Format("060102")))                          // transaction date
	b = codec.AppendTLV(b, 0x9C, []byte{txnType})                                    // transaction type
	b = codec.AppendTLV(b, 0x9F02, amt)                                              // amount authorised
	b = codec.AppendTLV(b, 0x5F2A, []byte{0x01, 0x56})                               // currency CNY
	b = codec.AppendTLV(b, 0x82, []byte{0x7C, 0x00})                                 // AIP
	b = codec.AppendTLV(b, 0x9F1A, []byte{0x01, 0x56})                               // terminal country
	b = codec.AppendTLV(b, 0x9F33, []byte{0xE0, 0xE1, 0xC8})                         // terminal capabilities
	return codec.AppendTLV(b, 0x84, []byte{0xA0, 0x00, 0x00, 0x03, 0x33, 0x01, 0x01, 0x01})
}

// reversalChipData keeps the elements a chip reversal carries: TVR, issuer application data and ATC.
func reversalChipData(orig []byte) []byte {
	var b []byte
	for _, tag := range []uint32{0x95, 0x9F10, 0x9F36} {
		if v, ok := codec.FindTLV(orig, tag); ok {
			b = codec.AppendTLV(b, tag, v)
		}
	}
	return b
}

// nibbleChar maps a nibble to its track character: '=' is nibble D.
const nibbleChar = "0123456789ABC=EF"

// bcd packs digits (and '=' or A-F) left-aligned, with a trailing 0 nibble for an odd count.
func bcd(s string) []byte {
	out := make([]byte, (len(s)+1)/2)
	for i := 0; i < len(s); i++ {
		var n byte
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			n = c - '0'
		case c == '=':
			n = 0xD
		case c >= 'A' && c <= 'F':
			n = c - 'A' + 10
		}
		if i%2 == 0 {
			out[i/2] = n << 4
		} else {
			out[i/2] |= n
		}
	}
	return out
}

// unbcd unpacks n track characters from left-aligned packed bytes.
func unbcd(b []byte, n int) string {
	out := make([]byte, n)
	for i := range out {
		c := b[i/2]
		if i%2 == 0 {
			c >>= 4
		}
		out[i] = nibbleChar[c&0x0F]
	}
	return string(out)
}
