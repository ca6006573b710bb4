package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/specs"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// testTerminal is a minimal UnionPay POS terminal for end-to-end tests: it signs on, keeps its working keys and
// sends MACed requests. (The full simulator is simulators/pos; this one stays small and explicit.)
type testTerminal struct {
	t        testing.TB
	fatalf   func(format string, args ...any) // t.Fatalf, or for terminals in their own goroutine see runTraffic
	conn     net.Conn
	r        *bufio.Reader
	spec     *codec.Spec
	tid, mid string
	pik, mak []byte
	trace    int
	batch    string
}

func dialTerminal(t testing.TB, addr, tid, mid string) *testTerminal {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, _ := specs.Get("cup-pos")
	return &testTerminal{t: t, fatalf: t.Fatalf, conn: c, r: bufio.NewReader(c), spec: s, tid: tid, mid: mid}
}

func (tt *testTerminal) newMessage(mti string) *codec.Message {
	m := codec.NewMessage(tt.spec)
	_ = m.SetMTI(mti)
	_ = m.SetTPDU([]byte{0x60, 0x00, 0x03, 0x00, 0x00})
	_ = m.SetHeader([]byte{0x60, 0x31, 0x00, 0x31, 0x07, 0x30})
	tt.trace++
	_ = m.SetAmount(11, int64(tt.trace))
	_ = m.SetString(41, tt.tid)
	_ = m.SetString(42, tt.mid)
	return m
}

// exchange sends m (with a MAC when mac is set) and returns the reply.
func (tt *testTerminal) exchange(m *codec.Message, mac bool) *codec.Message {
	tt.t.Helper()
	fr := tt.spec.Framing()
	if mac {
		_ = m.SetString(64, "00000000")
	}
	frame, err := m.AppendFrame(fr, nil)
	if err != nil {
		tt.fatalf("%v", err)
	}
	if mac {
		v, err := hsm.ComputeMAC(hsm.MACCupECB, tt.mak, frame[13:len(frame)-8])
		if err != nil {
			tt.fatalf("%v", err)
		}
		copy(frame[len(frame)-8:], v)
	}
	_ = tt.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := tt.conn.Write(frame); err != nil {
		tt.fatalf("%v", err)
	}
	var hdr [2]byte
	if _, err := io.ReadFull(tt.r, hdr[:]); err != nil {
		tt.fatalf("reading the reply: %v", err)
	}
	body := make([]byte, int(hdr[0])<<8|int(hdr[1]))
	if _, err := io.ReadFull(tt.r, body); err != nil {
		tt.fatalf("%v", err)
	}
	rep := codec.NewMessage(tt.spec)
	if err := rep.UnpackFrame(fr, body); err != nil {
		tt.fatalf("reply does not decode: %v", err)
	}
	if rep.String(11) != m.String(11) || rep.String(41) != tt.tid {
		tt.fatalf("reply does not match: 11 %q 41 %q", rep.String(11), rep.String(41))
	}
	if rep.String(39) == "00" && mac {
		mab, _ := rep.BytesBefore(64)
		got, _ := rep.Value(64)
		want, _ := hsm.ComputeMAC(hsm.MACCupECB, tt.mak, mab)
		if string(got) != string(want) {
			tt.fatalf("approval's MAC does not verify")
		}
	}
	return rep
}

func (tt *testTerminal) signOn() {
	tt.t.Helper()
	m := tt.newMessage("0800")
	_ = m.SetString(60, "00000000003")
	_ = m.SetString(63, "01 ")
	rep := tt.exchange(m, false)
	if rep.String(39) != "00" {
		tt.fatalf("sign-on answered %q", rep.String(39))
	}
	f62, _ := rep.Value(62)
	set, err := hsm.ParseCUPField62("003", f62)
	if err != nil {
		tt.fatalf("%v", err)
	}
	tmkClear, _ := hex.DecodeString(DemoTMK)
	tmk, _ := hsm.NewTDESCipher(tmkClear)
	if tt.pik, tt.mak, _, err = set.DecryptKeys(tmk); err != nil {
		tt.fatalf("%v", err)
	}
	b, _ := rep.Subfield(60, 2)
	tt.batch = string(b)
}

func (tt *testTerminal) purchase(pan string, amount int64) *codec.Message {
	tt.t.Helper()
	return tt.exchange(tt.purchaseMessage(pan, amount), true)
}

// purchaseMessage lays out a purchase with PIN 123456 under the terminal's PIK.
func (tt *testTerminal) purchaseMessage(pan string, amount int64) *codec.Message {
	m := tt.newMessage("0200")
	_ = m.SetString(2, pan)
	_ = m.SetString(3, "000000")
	_ = m.SetAmount(4, amount)
	_ = m.SetString(22, "021")
	_ = m.SetString(25, "00")
	_ = m.SetString(26, "12")
	_ = m.SetString(49, "156")
	pik, _ := hsm.NewTDESCipher(tt.pik)
	block, err := hsm.EncryptPINBlock(pik, hsm.ISO0, "123456", pan, rand.Reader)
	if err != nil {
		tt.fatalf("%v", err)
	}
	_ = m.Set(52, block)
	_ = m.SetString(53, "2600000000000000")
	_ = m.SetString(60, "22"+tt.batch+"000")
	return m
}

func (tt *testTerminal) void(pan string, amount int64, orig *codec.Message, origTrace int) *codec.Message {
	tt.t.Helper()
	m := tt.newMessage("0200")
	_ = m.SetString(2, pan)
	_ = m.SetString(3, "200000")
	_ = m.SetAmount(4, amount)
	_ = m.SetString(22, "021")
	_ = m.SetString(25, "00")
	_ = m.SetString(37, orig.String(37))
	_ = m.SetString(38, orig.String(38))
	_ = m.SetString(49, "156")
	_ = m.SetString(60, "23"+tt.batch+"000")
	_ = m.SetString(61, tt.batch+pad(origTrace))
	return tt.exchange(m, true)
}

func pad(n int) string {
	s := "000000" + strings.TrimLeft(string(rune('0'+n%10)), "")
	return s[len(s)-6:]
}

func startTestDemo(t testing.TB) *Demo {
	t.Helper()
	return startTestDemoWith(t, DemoAddrs{}, zaptest.NewLogger(t))
}

func startTestDemoWith(t testing.TB, addrs DemoAddrs, log *zap.Logger) *Demo {
	t.Helper()
	d, err := StartDemo(context.Background(), t.TempDir(), addrs, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	})
	deadline := time.Now().Add(5 * time.Second)
	for ok, _ := d.Ready(); !ok; ok, _ = d.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("bank links never signed on")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return d
}

func TestDemoPurchaseVoidAndRouting(t *testing.T) {
	d := startTestDemo(t)
	tt := dialTerminal(t, d.Channels()[0].Addr(), "22003600", "104512541110001")
	tt.signOn()
	cup := tt.purchase("6212341234567890", 12345) // UnionPay BIN: bank A
	if cup.String(39) != "00" || cup.String(38) == "" || len(cup.String(37)) != 12 {
		t.Fatalf("purchase: 39 %q 38 %q 37 %q", cup.String(39), cup.String(38), cup.String(37))
	}
	cupTrace := tt.trace
	visa := tt.purchase("4012345678909", 500) // bank B
	if visa.String(39) != "00" {
		t.Fatalf("second purchase: %q", visa.String(39))
	}
	if got := d.BankA.Ledger(); got == nil {
		t.Fatal("no ledger")
	}
	void := tt.void("6212341234567890", 12345, cup, cupTrace)
	if void.String(39) != "00" {
		t.Fatalf("void answered %q", void.String(39))
	}
	// the journal's file sink receives the postings (masked PANs only)
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, _ := os.ReadFile(filepath.Join(d.Dir, "postings.jsonl"))
		if strings.Count(string(data), "\n") >= 3 {
			if strings.Contains(string(data), "6212341234567890") || !strings.Contains(string(data), "621234******7890") {
				t.Fatalf("sink records must hold masked PANs only:\n%s", data)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sink has %q", data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDemoRefusesBadMACAndUnknownTerminal: a request with a wrong MAC gets A0 and an unknown terminal 97; the
// terminal with the good MAK goes on transacting. (Malformed frames: operations_test.go.)
func TestDemoRefusesBadMACAndUnknownTerminal(t *testing.T) {
	d := startTestDemo(t)
	addr := d.Channels()[0].Addr()
	tt := dialTerminal(t, addr, "22003600", "104512541110001")
	tt.signOn()
	good := tt.mak
	tt.mak = []byte("wrongkey")
	if rep := tt.purchase("6212341234567890", 100); rep.String(39) != "A0" {
		t.Fatalf("bad MAC answered %q", rep.String(39))
	}
	tt.mak = good
	unknown := dialTerminal(t, addr, "99999999", "104512541110001")
	m := unknown.newMessage("0800")
	_ = m.SetString(60, "00000000003")
	if rep := unknown.exchange(m, false); rep.String(39) != "97" {
		t.Fatalf("unknown terminal answered %q", rep.String(39))
	}
	// the good terminal still transacts
	if rep := tt.purchase("6212341234567890", 100); rep.String(39) != "00" {
		t.Fatalf("after the others: %q", rep.String(39))
	}
}
