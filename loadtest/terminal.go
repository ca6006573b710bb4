package loadtest

import (
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
)

// Session is implemented by builders whose terminals sign on, on every new connection, before their first
// request (terminal specs). The sign-on is not part of the measured traffic.
type Session interface {
	// BuildSignOn fills m, which is empty, with the sign-on request.
	BuildSignOn(m *codec.Message, now time.Time) error
	// SignedOn takes the sign-on reply (already matched on 11 and 41, MTI checked); an error means the
	// terminal is not signed on.
	SignedOn(resp *codec.Message) error
}

// Sealer is implemented by builders whose requests need their packed bytes, e.g. for a MAC: Seal gets the
// request and its whole frame as it will be written, and may change the frame in place.
type Sealer interface {
	Seal(m *codec.Message, frame []byte)
}

// Terminal-spec defaults: the published UnionPay test TMK (shared/reference/unionpay-pos.md, vector B), the
// demo's test card and PIN, and the merchant of the demo's load-test terminals.
const (
	DefaultTIDPrefix = "LT"
	DefaultMID       = "898110000000009"
	DefaultTMK       = "70F2A84CCBC2AE8625CBB0F2C22AB923"
	DefaultPAN       = "6212341234567890"
	DefaultPIN       = "123456"
)

// UnionPay POS framing values every request carries, as the POS simulator sends them.
var (
	cupTPDU   = []byte{0x60, 0x00, 0x03, 0x00, 0x00}
	cupHeader = []byte{0x60, 0x31, 0x00, 0x31, 0x07, 0x30}
)

// zeroMAC holds the place of field 64 until Seal writes the MAC.
var zeroMAC [8]byte

// keyLayout is field 60.3 of the sign-on: double-length PIK and single-length MAK, without TDK.
const keyLayout = "003"

// TerminalOptions configure the virtual terminals of a terminal spec (cup-pos, rail-pos).
type TerminalOptions struct {
	TIDPrefix string // terminal ids are the prefix and the terminal number from 1, zero-padded to 8 characters
	MID       string // field 42, 15 characters
	TMK       []byte // the terminals' clear test TMK (16 or 24 bytes)
	PAN, PIN  string // the test card of every request
	Amount    int64  // of each purchase, in minor units (small, so that a test account lasts)
	Railway   string // field 57 as sent (rail-pos: 36 characters); empty: none
}

// NewTerminalBuilder checks o and returns the NewBuilder of terminal specs: each terminal signs on (0800,
// 60.3 = 003), decrypts its PIK and MAK from field 62 under the TMK, and sends 0200 purchases with a PIN block
// under its PIK, 0200 balance inquiries and 0200 voids of its own approved purchases, all MACed (UnionPay
// ECB MAC under its MAK). Approvals must carry a valid MAC.
func NewTerminalBuilder(o TerminalOptions) (NewBuilder, error) {
	tmk, err := hsm.NewTDESCipher(o.TMK)
	if err != nil {
		return nil, fmt.Errorf("terminal master key: %w", err)
	}
	switch {
	case len(o.TIDPrefix) >= 8:
		return nil, fmt.Errorf("terminal id prefix %q: want at most 7 characters", o.TIDPrefix)
	case len(o.MID) != 15:
		return nil, fmt.Errorf("merchant id %q: want 15 characters", o.MID)
	case len(o.PAN) < 13 || len(o.PAN) > 19 || strings.Trim(o.PAN, "0123456789") != "":
		return nil, errors.New("card number: want 13 to 19 digits")
	case o.Amount < 1:
		return nil, errors.New("amount: want at least 1 minor unit")
	}
	// Encrypting once checks the PIN and the card number, so a bad one fails here, not every sign-on.
	if _, err := hsm.EncryptPINBlock(tmk, hsm.ISO0, o.PIN, o.PAN, rand.Reader); err != nil {
		return nil, fmt.Errorf("PIN: %w", err)
	}
	width := 8 - len(o.TIDPrefix)
	return func(spec *codec.Spec, i int) (Builder, error) {
		n := fmt.Sprint(i + 1)
		if len(n) > width {
			return nil, fmt.Errorf("terminal %d does not fit an 8-character id after prefix %q", i+1, o.TIDPrefix)
		}
		if o.Railway != "" {
			if _, ok := spec.Field(57); !ok {
				return nil, fmt.Errorf("spec %s has no field 57 for railway data", spec.Name())
			}
		}
		b := &TerminalBuilder{o: &o, tmk: tmk, macAt: framePrefix(spec.Framing()),
			tid: []byte(o.TIDPrefix + strings.Repeat("0", width-len(n)) + n)}
		putDigits(b.batch[:], 1) // until the host names one
		b.trace = traceStart(time.Now())
		return b, nil
	}, nil
}

// framePrefix is the number of frame bytes before the message: length header, TPDU and header.
func framePrefix(f codec.Framing) int {
	n := f.HeaderLen
	switch f.Length {
	case codec.LenBinary2, codec.LenBCD2:
		n += 2
	case codec.LenASCII4:
		n += 4
	}
	if f.TPDU {
		n += 5
	}
	return n
}

// TerminalBuilder is one virtual UnionPay POS terminal (see NewTerminalBuilder).
type TerminalBuilder struct {
	o        *TerminalOptions
	tmk      cipher.Block
	macAt    int // frame bytes before the MAC block
	tid      []byte
	mac      *hsm.MACer
	pinBlock []byte  // the card's PIN block under the current PIK
	pinSec   []byte  // field 53
	batch    [6]byte // 000001, then the host's from each sign-on
	trace    int
	open     []cupOriginal // approved purchases not yet voided, newest last
	last     cupOriginal   // the purchase built last, until it is answered
	scratch  [16]byte
}

// cupOriginal is what a void needs of a purchase.
type cupOriginal struct {
	batch, trace [6]byte
	rrn          [12]byte
	auth         [6]byte
}

// traceStart is where a run's trace numbers begin. A real terminal keeps its trace across power-offs; a new
// run of the load generator would otherwise start at 000001 again in the same batch, and the switch would
// take its requests for retransmissions of the last run's (duplicate detection). Starting at a point that
// moves 1,000 a second gives each run fresh traces while a terminal sends fewer than 1,000 a second, and
// comes round again only after about 17 minutes, beyond the duplicate window.
func traceStart(now time.Time) int { return int(now.Unix() * 1000 % 999999) }

// nextTrace advances the terminal's trace number (11) and returns it.
func (b *TerminalBuilder) nextTrace() [6]byte {
	b.trace = b.trace%999999 + 1
	var t [6]byte
	putDigits(t[:], b.trace)
	return t
}

// start sets what every request of the terminal has: MTI, TPDU, header, 11, 41 and 42.
func (b *TerminalBuilder) start(m *codec.Message, mti string, trace []byte) error {
	return firstErr(m.SetMTI(mti), m.SetTPDU(cupTPDU), m.SetHeader(cupHeader), m.Set(11, trace),
		m.Set(41, b.tid), m.SetString(42, b.o.MID))
}

// BuildSignOn implements Session.
func (b *TerminalBuilder) BuildSignOn(m *codec.Message, _ time.Time) error {
	trace := b.nextTrace()
	return firstErr(b.start(m, "0800", trace[:]), m.SetString(60, "00"+string(b.batch[:])+keyLayout),
		m.SetString(63, "01 "))
}

// SignedOn implements Session: it loads the working keys of field 62 and adopts the batch of 60.2.
func (b *TerminalBuilder) SignedOn(resp *codec.Message) error {
	if code := resp.String(39); code != "00" {
		return fmt.Errorf("sign-on answered %q", code)
	}
	f62, _ := resp.Value(62)
	set, err := hsm.ParseCUPField62(keyLayout, f62)
	if err != nil {
		return fmt.Errorf("sign-on field 62: %w", err)
	}
	pik, mak, _, err := set.DecryptKeys(b.tmk)
	if err != nil {
		return fmt.Errorf("sign-on field 62: %w", err)
	}
	defer clear(pik)
	defer clear(mak)
	if b.mac, err = hsm.NewMACer(hsm.MACCupECB, mak); err != nil {
		return err
	}
	pc, err := hsm.NewTDESCipher(pik)
	if err != nil {
		return err
	}
	// ISO-0 blocks carry no random fill: a card's block under one PIK never changes.
	if b.pinBlock, err = hsm.EncryptPINBlock(pc, hsm.ISO0, b.o.PIN, b.o.PAN, rand.Reader); err != nil {
		return err
	}
	b.pinSec = []byte("2000000000000000") // 53.1 '2': ISO 0 with PAN; 53.2 '6': double-length PIK
	if len(pik) > 8 {
		b.pinSec[1] = '6'
	}
	if batch, ok := resp.Subfield(60, 2); ok && len(batch) == 6 {
		copy(b.batch[:], batch)
	}
	return nil
}

// Build implements Builder.
func (b *TerminalBuilder) Build(m *codec.Message, k Kind, _ time.Time) (Kind, error) {
	if b.mac == nil {
		return k, errors.New("terminal is not signed on")
	}
	if k == Void && len(b.open) == 0 {
		k = Purchase // nothing to void yet
	}
	trace := b.nextTrace()
	if err := b.start(m, "0200", trace[:]); err != nil {
		return k, err
	}
	var f60 [13]byte // 60.1 message type, 60.2 batch, 60.3 000, 60.4 '5' chip-capable, 60.5 '0' normal
	copy(f60[2:], b.batch[:])
	copy(f60[8:], "00050")
	err := firstErr(m.SetString(2, b.o.PAN), m.SetString(22, "021"), m.SetString(25, "00"), m.SetString(49, "156"))
	switch k {
	case Purchase, Balance:
		proc, typ := "000000", "22"
		if k == Balance {
			proc, typ = "310000", "01"
		} else {
			err = firstErr(err, m.SetAmount(4, b.o.Amount))
			b.last = cupOriginal{batch: b.batch, trace: trace}
		}
		copy(f60[:], typ)
		err = firstErr(err, m.SetString(3, proc), m.SetString(26, "12"), m.Set(52, b.pinBlock), m.Set(53, b.pinSec))
	case Void:
		o := b.open[len(b.open)-1]
		b.open = b.open[:len(b.open)-1]
		var f61 [12]byte
		copy(f61[:], o.batch[:])
		copy(f61[6:], o.trace[:])
		copy(f60[:], "23")
		err = firstErr(err, m.SetString(3, "200000"), m.SetAmount(4, b.o.Amount), m.Set(37, o.rrn[:]),
			m.Set(38, o.auth[:]), m.Set(61, f61[:]))
	}
	if b.o.Railway != "" {
		err = firstErr(err, m.SetString(57, b.o.Railway))
	}
	return k, firstErr(err, m.Set(60, f60[:]), m.Set(64, zeroMAC[:]))
}

// Seal implements Sealer: when m has field 64 (the frame's last 8 bytes) it writes there the MAC of the
// message bytes before it.
func (b *TerminalBuilder) Seal(m *codec.Message, frame []byte) {
	if !m.Has(64) {
		return
	}
	end := len(frame) - 8
	copy(frame[end:], b.mac.Sum(b.scratch[:0], frame[b.macAt:end]))
}

// Answered implements Builder like a terminal: an approval must carry the request's processing code and a
// valid MAC; an approved purchase becomes voidable.
func (b *TerminalBuilder) Answered(req, resp *codec.Message) error {
	if resp == nil || resp.String(39) != "00" {
		return nil
	}
	mab, ok := resp.BytesBefore(64)
	if !ok {
		return errors.New("approval without a MAC")
	}
	if got, _ := resp.Value(64); !b.mac.Verify(mab, got) {
		return errors.New("approval's MAC does not verify")
	}
	proc, _ := req.Value(3)
	if got, _ := resp.Value(3); len(got) > 0 && string(got) != string(proc) {
		return errors.New("approval's processing code differs from the request's")
	}
	if string(proc) != "000000" {
		return nil
	}
	o := b.last
	rrn, _ := resp.Value(37)
	auth, _ := resp.Value(38)
	if len(rrn) != len(o.rrn) || len(auth) != len(o.auth) {
		return errors.New("approved purchase without RRN (37) or authorization code (38)")
	}
	copy(o.rrn[:], rrn)
	copy(o.auth[:], auth)
	const keep = 16
	if len(b.open) == keep {
		b.open = append(b.open[:0], b.open[1:]...)
	}
	b.open = append(b.open, o)
	return nil
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
