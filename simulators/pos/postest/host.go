// Package postest is a minimal UnionPay POS (and kiosk) host for the tests of the terminal simulator and
// the scenario runner: it signs terminals on with real field-62 keys under their TMK, checks MACs and PIN
// blocks, approves or declines by simple rules, keeps totals so settlement can balance or not, and can drop
// replies. It is test support, not a switch.
package postest

import (
	"crypto/rand"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/specs"
)

// Host answers one spec: cup-pos or rail-pos (a POS host) or kiosk. Set the fields before Start.
type Host struct {
	Spec            string // cup-pos, rail-pos or kiosk
	TMK             []byte // POS: the terminals' master key
	PIN             string // the PIN every card has
	Limit           int64  // amounts above are declined with 51
	NewBatch        string // POS: batch number put in 60.2 of the 0810 ("" echoes the terminal's)
	ForceUnbalanced bool   // POS: answer every settlement "not balanced"
	KioskMAK        []byte // kiosk: X9.19 MAC key
	KioskPIK        []byte // kiosk: PIN key
	BDK             []byte // POS: DUKPT base derivation key; PIN blocks with a KSN in field 62 use it
	CorruptMAC      bool   // send approvals with a wrong MAC
	AskSignOn       bool   // POS: set the header's processing requirement to 3 (sign on again) in replies

	mu       sync.Mutex
	spec     *codec.Spec
	pik, tdk []byte
	mac      *hsm.MACer
	dropNext int
	seen     []string
	last     map[string]*codec.Message // the last request of each MTI
	approved map[string]approval       // trace -> approved, not reversed or voided
	uploaded int
	rrn      int
}

type approval struct {
	typ    string // 60.1
	amount int64
}

// Start listens on a loopback port, serves until the test ends and returns the address.
func (h *Host) Start(t testing.TB) string {
	t.Helper()
	spec, err := specs.Get(h.Spec)
	if err != nil {
		t.Fatal(err)
	}
	h.spec = spec
	h.approved = map[string]approval{}
	h.last = map[string]*codec.Message{}
	if h.KioskMAK != nil {
		if h.mac, err = hsm.NewMACer(hsm.MACX919, h.KioskMAK); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); h.serve(c) }()
		}
	}()
	return l.Addr().String()
}

// DropNext makes the host process the next n requests but not answer them.
func (h *Host) DropNext(n int) {
	h.mu.Lock()
	h.dropNext = n
	h.mu.Unlock()
}

// Seen lists the requests received, as "MTI" or "MTI 39=XX" for reversals.
func (h *Host) Seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.seen...)
}

// Last returns the last request received with the MTI, or nil.
func (h *Host) Last(mti string) *codec.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last[mti]
}

// Uploaded is the number of transaction records received in batch uploads.
func (h *Host) Uploaded() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.uploaded
}

func (h *Host) serve(c net.Conn) {
	defer c.Close()
	f := h.spec.Framing()
	var buf []byte
	tmp := make([]byte, 4096)
	for {
		body, used, err := f.Split(buf)
		if err == codec.ErrNeedMore {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, rerr := c.Read(tmp)
			if rerr != nil {
				return
			}
			buf = append(buf, tmp[:n]...)
			continue
		}
		if err != nil {
			return
		}
		req := codec.NewMessage(h.spec)
		uerr := req.UnpackFrame(f, append([]byte(nil), body...))
		buf = buf[used:]
		if uerr != nil {
			return
		}
		h.mu.Lock()
		rep := h.answer(req)
		drop := h.dropNext > 0
		if drop {
			h.dropNext--
		}
		h.mu.Unlock()
		if rep == nil || drop {
			continue
		}
		out, err := rep.AppendFrame(f, nil)
		if err != nil {
			return
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// reply starts the response with the request's echoed fields.
func (h *Host) reply(req *codec.Message, rc string, echo ...int) *codec.Message {
	rep := codec.NewMessage(h.spec)
	mti := []byte(req.MTI())
	mti[2]++
	rep.SetMTI(string(mti))
	if t := req.TPDU(); t != nil {
		rep.SetTPDU(t)
		rep.SwapTPDU()
	}
	rep.SetHeader(req.Header())
	if h.AskSignOn && req.MTI() != "0800" {
		rep.SetCUPProcessingRequirement(3)
	}
	for _, n := range echo {
		rep.CopyField(n, req)
	}
	rep.SetString(39, rc)
	return rep
}

func (h *Host) answer(req *codec.Message) *codec.Message {
	entry := req.MTI()
	if req.MTI() == "0400" {
		entry += " 39=" + req.String(39)
	}
	h.seen = append(h.seen, entry)
	h.last[req.MTI()] = req
	if h.Spec == "kiosk" {
		return h.kiosk(req)
	}
	now := time.Now()
	switch req.MTI() {
	case "0800":
		return h.signOn(req, now)
	case "0820":
		return h.reply(req, "00", 11, 41, 42, 60)
	case "0500":
		return h.settle(req)
	case "0320":
		if code, _ := req.Subfield(60, 3); string(code) == "201" {
			v := req.String(48)
			var n int
			fmt.Sscanf(v[:2], "%d", &n)
			h.uploaded += n
		}
		return h.reply(req, "00", 11, 41, 42, 48, 60)
	case "0100", "0200", "0220", "0400":
		return h.financial(req, now)
	}
	return h.reply(req, "12", 11, 41, 42)
}

func (h *Host) signOn(req *codec.Message, now time.Time) *codec.Message {
	layout, _ := req.Subfield(60, 3)
	code := string(layout)
	pik, mak := key(16), key(8)
	var tdk []byte
	switch code {
	case hsm.CUPSingleDES:
		pik = key(8)
	case hsm.CUPWithTDK:
		tdk = key(16)
	}
	tmk, err := hsm.NewTDESCipher(h.TMK)
	if err != nil {
		return h.reply(req, "96", 11, 41, 42)
	}
	ks, err := hsm.EncryptCUPKeySet(tmk, pik, mak, tdk)
	if err != nil {
		return h.reply(req, "96", 11, 41, 42)
	}
	f62, err := ks.Field62(code)
	if err != nil {
		return h.reply(req, "96", 11, 41, 42)
	}
	h.pik, h.tdk = pik, tdk
	h.mac, _ = hsm.NewMACer(hsm.MACCupECB, mak)
	rep := h.reply(req, "00", 11, 41, 42)
	batch, _ := req.Subfield(60, 2)
	if h.NewBatch != "" {
		batch = []byte(h.NewBatch)
	}
	rep.SetString(12, now.Format("150405"))
	rep.SetString(13, now.Format("0102"))
	rep.SetString(37, h.nextRRN())
	rep.SetString(60, "00"+string(batch)+code)
	rep.Set(62, f62)
	return rep
}

func key(n int) []byte {
	k := make([]byte, n)
	rand.Read(k)
	hsm.FixParity(k)
	return k
}

func (h *Host) nextRRN() string {
	h.rrn++
	return fmt.Sprintf("%012d", h.rrn)
}

// cupMAC is the UnionPay MAC of a message whose field 64 is set (to anything): over the bytes before it.
func (h *Host) cupMAC(m *codec.Message) []byte {
	packed, _ := m.Pack(nil)
	return h.mac.Sum(nil, packed[:len(packed)-8])
}

func (h *Host) financial(req *codec.Message, now time.Time) *codec.Message {
	rep := h.reply(req, "00", 3, 4, 11, 22, 25, 41, 42, 49, 57, 60, 61)
	rep.SetString(12, now.Format("150405"))
	rep.SetString(13, now.Format("0102"))
	rep.SetString(37, h.nextRRN())
	if h.mac == nil || !req.Has(64) || string(h.cupMAC(req)) != req.String(64) {
		rep.SetString(39, "A0")
		return rep
	}
	rc := h.decide(req)
	rep.SetString(39, rc)
	if rc == "00" {
		rep.SetString(38, fmt.Sprintf("A%05d", h.rrn))
		if req.String(3) == "310000" {
			rep.SetString(54, "1002156C000000123456")
		}
		rep.SetString(64, "00000000")
		mac := h.cupMAC(rep)
		if h.CorruptMAC {
			mac[0] ^= 1
		}
		rep.Set(64, mac)
	}
	return rep
}

// decide applies the rules and keeps the totals.
func (h *Host) decide(req *codec.Message) string {
	trace := req.String(11)
	typ, _ := req.Subfield(60, 1)
	amount, _ := req.Amount(4)
	if req.MTI() == "0400" {
		delete(h.approved, trace)
		return "00"
	}
	if req.Has(52) {
		pan := req.String(2)
		if pan == "" {
			tr := req.Raw(35)
			if sec := req.String(53); len(sec) > 2 && sec[2] == '1' {
				tr = append([]byte(nil), tr...)
				tdk, _ := hsm.NewTDESCipher(h.tdk)
				if err := hsm.EncryptTrackTDK(tdk, tr, true); err != nil {
					return "30"
				}
			}
			pan = strings.SplitN(unpackTrack(tr), "=", 2)[0]
		}
		pik, _ := hsm.NewTDESCipher(h.pik)
		if ksn := req.Raw(62); h.BDK != nil && len(ksn) == hsm.TDESKSNLen {
			ik, _ := hsm.DUKPTInitialKey(h.BDK, ksn)
			pk, err := hsm.DUKPTPINKey(ik, ksn)
			if err != nil {
				return "A7"
			}
			pik, _ = hsm.NewTDESCipher(pk)
		}
		blk, _ := req.Value(52)
		pin, err := hsm.DecryptPINBlock(pik, hsm.ISO0, blk, pan)
		if err != nil || pin != h.PIN {
			return "55"
		}
	}
	if h.Limit > 0 && amount > h.Limit {
		return "51"
	}
	if req.Has(61) {
		orig, _ := req.Subfield(61, 2)
		if _, ok := h.approved[string(orig)]; !ok {
			return "25"
		}
		if req.String(3) == "200000" && req.MTI() != "0220" {
			delete(h.approved, string(orig)) // voids cancel their original
			return "00"
		}
	}
	h.approved[trace] = approval{typ: string(typ), amount: amount}
	return "00"
}

// unpackTrack turns left-aligned packed track bytes into characters, '=' for nibble D.
func unpackTrack(b []byte) string {
	const chars = "0123456789ABC=EF"
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(chars[c>>4])
		sb.WriteByte(chars[c&0x0F])
	}
	return sb.String()
}

func (h *Host) settle(req *codec.Message) *codec.Message {
	var debit, credit int64
	var nd, nc int
	for _, a := range h.approved {
		switch a.typ {
		case "22", "20", "24":
			debit += a.amount
			nd++
		case "25":
			credit += a.amount
			nc++
		}
	}
	mine := fmt.Sprintf("%012d%03d%012d%03d", debit, nd, credit, nc)
	f48 := []byte(req.String(48))
	flag := byte('1')
	if h.ForceUnbalanced || len(f48) < 31 || string(f48[:30]) != mine {
		flag = '2'
	}
	if len(f48) >= 31 {
		f48[30] = flag
	}
	clear(h.approved) // the batch is closed whatever the flag: a new one starts
	rep := h.reply(req, "00", 11, 41, 42, 49, 60)
	rep.Set(48, f48)
	return rep
}

func (h *Host) kiosk(req *codec.Message) *codec.Message {
	rep := h.reply(req, "00", 3, 4, 11, 41, 42, 49, 57)
	rep.SetString(37, h.nextRRN())
	n := 64
	if req.Has(128) {
		n = 128
	}
	mac, _ := req.Value(n)
	mac = append([]byte(nil), mac...)
	packed, _ := req.Pack(nil)
	if len(packed) < 16 || !h.mac.Verify(packed[:len(packed)-16], mac) {
		rep.SetString(39, "A0")
		return rep
	}
	if req.Has(52) {
		pan := req.String(2)
		if pan == "" {
			pan = strings.SplitN(req.String(35), "=", 2)[0]
		}
		pik, _ := hsm.NewTDESCipher(h.KioskPIK)
		blk, _ := req.Value(52)
		if pin, err := hsm.DecryptPINBlock(pik, hsm.ISO0, blk, pan); err != nil || pin != h.PIN {
			rep.SetString(39, "55")
			return rep
		}
	}
	if a, _ := req.Amount(4); h.Limit > 0 && a > h.Limit {
		rep.SetString(39, "51")
		return rep
	}
	rep.SetString(38, fmt.Sprintf("K%05d", h.rrn))
	rep.Set(64, make([]byte, 8))
	p, _ := rep.Pack(nil)
	rep.Set(64, h.mac.Sum(nil, p[:len(p)-16]))
	return rep
}
