//go:build faults

package faults

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/server"
	"github.com/railswitch/railswitch/specs"
)

// card is a test card: a generated PAN that passes Luhn, and track 2 when it is swiped.
type card struct {
	PAN    string
	Track2 string // set: swiped (field 35, no field 2); empty: keyed (field 2)
}

// luhnPAN returns a PAN of length digits that starts with prefix, its middle digits from seq, with a valid Luhn
// check digit. Generated numbers only: no real card data.
func luhnPAN(prefix string, seq uint64, length int) string {
	body := prefix + fmt.Sprintf("%0*d", length-len(prefix)-1, seq%pow10(length-len(prefix)-1))
	return body + string(rune('0'+luhnDigit(body)))
}

func pow10(n int) uint64 {
	p := uint64(1)
	for range n {
		p *= 10
	}
	return p
}

// luhnDigit is the check digit that makes body+digit pass the Luhn check.
func luhnDigit(body string) int {
	sum := 0
	for i := len(body) - 1; i >= 0; i-- {
		d := int(body[i] - '0')
		if (len(body)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return (10 - sum%10) % 10
}

func luhnValid(pan string) bool {
	return len(pan) > 1 && luhnDigit(pan[:len(pan)-1]) == int(pan[len(pan)-1]-'0')
}

// outcome is what a terminal saw of one purchase.
type outcome struct {
	TID, STAN, Code, RRN, Auth string
	PAN, Track2                string // Track2 is set when the card was swiped
	Amount                     int64
	Latency                    time.Duration
	At                         time.Time // when the reply arrived
	PINBlock                   []byte    // the encrypted PIN block the terminal sent
}

// term is a UnionPay POS terminal over TCP (the protocol of server/e2e_test.go's testTerminal), returning errors
// instead of failing so that it can run in goroutines and reconnect.
type term struct {
	conn        net.Conn
	r           *bufio.Reader
	spec        *codec.Spec
	tid, mid    string
	pik, mak    []byte
	trace       *atomic.Int64 // shared across reconnects so STANs stay unique per terminal
	batch       string
	readTimeout time.Duration
}

var errNoReply = errors.New("no reply")

func dialTerm(addr, tid, mid string, trace *atomic.Int64) (*term, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return newTerm(c, tid, mid, trace), nil
}

// newTerm is a terminal on the connection c; trace (nil: a new counter) numbers its messages.
func newTerm(c net.Conn, tid, mid string, trace *atomic.Int64) *term {
	s, err := specs.Get("cup-pos")
	if err != nil {
		panic(err) // the spec is built in
	}
	if trace == nil {
		trace = new(atomic.Int64)
	}
	return &term{conn: c, r: bufio.NewReader(c), spec: s, tid: tid, mid: mid, trace: trace, readTimeout: 20 * time.Second}
}

func (tt *term) Close() error { return tt.conn.Close() }

func (tt *term) newMessage(mti string) *codec.Message {
	m := codec.NewMessage(tt.spec)
	_ = m.SetMTI(mti)
	_ = m.SetTPDU([]byte{0x60, 0x00, 0x03, 0x00, 0x00})
	_ = m.SetHeader([]byte{0x60, 0x31, 0x00, 0x31, 0x07, 0x30})
	n := tt.trace.Add(1)%999999 + 1
	_ = m.SetAmount(11, n)
	_ = m.SetString(41, tt.tid)
	_ = m.SetString(42, tt.mid)
	return m
}

// frame lays m out as a frame, MACed under the terminal's MAK when mac is set.
func (tt *term) frame(m *codec.Message, mac bool) ([]byte, error) {
	if mac {
		_ = m.SetString(64, "00000000")
	}
	frame, err := m.AppendFrame(tt.spec.Framing(), nil)
	if err != nil {
		return nil, err
	}
	if mac {
		v, err := hsm.ComputeMAC(hsm.MACCupECB, tt.mak, frame[13:len(frame)-8])
		if err != nil {
			return nil, err
		}
		copy(frame[len(frame)-8:], v)
	}
	return frame, nil
}

// readReply reads one frame and decodes it.
func (tt *term) readReply() (*codec.Message, error) {
	_ = tt.conn.SetReadDeadline(time.Now().Add(tt.readTimeout))
	var hdr [2]byte
	if _, err := io.ReadFull(tt.r, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: %v", errNoReply, err)
	}
	body := make([]byte, int(hdr[0])<<8|int(hdr[1]))
	if _, err := io.ReadFull(tt.r, body); err != nil {
		return nil, fmt.Errorf("%w: %v", errNoReply, err)
	}
	rep := codec.NewMessage(tt.spec)
	if err := rep.UnpackFrame(tt.spec.Framing(), body); err != nil {
		return nil, fmt.Errorf("reply does not decode: %w", err)
	}
	return rep, nil
}

// exchange sends m and returns the matching reply; it checks the MAC of approvals.
func (tt *term) exchange(m *codec.Message, mac bool) (*codec.Message, error) {
	frame, err := tt.frame(m, mac)
	if err != nil {
		return nil, err
	}
	_ = tt.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := tt.conn.Write(frame); err != nil {
		return nil, fmt.Errorf("%w: write: %v", errNoReply, err)
	}
	rep, err := tt.readReply()
	if err != nil {
		return nil, err
	}
	if rep.String(11) != m.String(11) || rep.String(41) != tt.tid {
		return nil, fmt.Errorf("reply does not match: 11 %q/%q 41 %q", rep.String(11), m.String(11), rep.String(41))
	}
	if rep.String(39) == "00" && mac {
		mab, _ := rep.BytesBefore(64)
		got, _ := rep.Value(64)
		want, _ := hsm.ComputeMAC(hsm.MACCupECB, tt.mak, mab)
		if string(got) != string(want) {
			return nil, fmt.Errorf("approval's MAC does not verify")
		}
	}
	return rep, nil
}

// signOnMessage is a sign-on request (no MAC).
func (tt *term) signOnMessage() *codec.Message {
	m := tt.newMessage("0800")
	_ = m.SetString(60, "00000000003")
	_ = m.SetString(63, "01 ")
	return m
}

func (tt *term) signOn() error {
	rep, err := tt.exchange(tt.signOnMessage(), false)
	if err != nil {
		return fmt.Errorf("sign-on %s: %w", tt.tid, err)
	}
	if rep.String(39) != "00" {
		return fmt.Errorf("sign-on %s answered %q", tt.tid, rep.String(39))
	}
	f62, _ := rep.Value(62)
	set, err := hsm.ParseCUPField62("003", f62)
	if err != nil {
		return err
	}
	tmkClear, _ := hex.DecodeString(server.DemoTMK)
	tmk, _ := hsm.NewTDESCipher(tmkClear)
	if tt.pik, tt.mak, _, err = set.DecryptKeys(tmk); err != nil {
		return err
	}
	b, _ := rep.Subfield(60, 2)
	tt.batch = string(b)
	return nil
}

// purchaseMessage lays out a purchase with PIN 123456 under the terminal's PIK; it returns the PIN block too.
func (tt *term) purchaseMessage(c card, amount int64) (*codec.Message, []byte, error) {
	m := tt.newMessage("0200")
	if c.Track2 == "" {
		_ = m.SetString(2, c.PAN)
		_ = m.SetString(22, "011")
	} else {
		_ = m.SetString(22, "021")
		if err := m.SetString(35, c.Track2); err != nil {
			return nil, nil, fmt.Errorf("track 2: %w", err)
		}
	}
	_ = m.SetString(3, "000000")
	_ = m.SetAmount(4, amount)
	_ = m.SetString(25, "00")
	_ = m.SetString(26, "12")
	_ = m.SetString(49, "156")
	pik, err := hsm.NewTDESCipher(tt.pik)
	if err != nil {
		return nil, nil, err
	}
	block, err := hsm.EncryptPINBlock(pik, hsm.ISO0, "123456", c.PAN, rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	_ = m.Set(52, block)
	_ = m.SetString(53, "2600000000000000")
	_ = m.SetString(60, "22"+tt.batch+"000")
	return m, block, nil
}

// purchase runs one purchase and reports what the terminal saw.
func (tt *term) purchase(c card, amount int64) (outcome, error) {
	m, block, err := tt.purchaseMessage(c, amount)
	if err != nil {
		return outcome{}, err
	}
	start := time.Now()
	rep, err := tt.exchange(m, true)
	o := outcome{TID: tt.tid, STAN: m.String(11), PAN: c.PAN, Track2: c.Track2, Amount: amount, PINBlock: block, Latency: time.Since(start), At: time.Now()}
	if err != nil {
		return o, err
	}
	o.Code, o.RRN, o.Auth = rep.String(39), rep.String(37), strings.TrimSpace(rep.String(38))
	return o, nil
}
