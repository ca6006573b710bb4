package pos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/specs"
)

// KioskConfig is a ticket kiosk's configuration. Its keys are fixed test keys: kiosks do not sign on.
type KioskConfig struct {
	Spec       string        `yaml:"spec"` // kiosk (default) or a spec file
	TerminalID string        `yaml:"tid"`  // field 41, 8 characters
	MerchantID string        `yaml:"mid"`  // field 42, 15 characters
	MAK        string        `yaml:"mak"`  // double-length MAC key, hex: ANSI X9.19 MAC in field 64 (128)
	PIK        string        `yaml:"pik"`  // PIN key, hex: ISO format 0 PIN block in field 52
	Railway    Railway       `yaml:"railway"`
	Timeout    time.Duration `yaml:"timeout"`
}

// KioskSale is an approved ticket purchase the kiosk keeps for refunds. The PAN is masked.
type KioskSale struct {
	Trace     string `json:"trace"`
	DateTime  string `json:"datetime"` // field 7 of the purchase, MMDDhhmmss
	Amount    int64  `json:"amount"`
	RRN       string `json:"rrn"`
	Auth      string `json:"auth"`
	Railway   string `json:"railway"` // field 57 as sent
	PANMasked string `json:"pan"`
	Refunded  bool   `json:"refunded,omitempty"`
}

// KioskState is what a kiosk remembers between runs: its trace number and its sales.
type KioskState struct {
	Trace int         `json:"trace"`
	Sales []KioskSale `json:"sales"`
}

// KioskRequest is one kiosk transaction. Refunds need the card again, as at a real kiosk.
type KioskRequest struct {
	Txn    Txn    // KioskPurchase or KioskRefund
	Amount int64  // refund: default the original's amount
	Card   Card   // swipe or manual; chip is not offered by kiosks
	Order  string // 57.4 of a purchase; default K + terminal id + trace
	Orig   string // refund: trace of the purchase; default the latest one not refunded
	Fault  Fault
}

// Kiosk is a simulated self-service ticket kiosk (spec kiosk: ISO 8583:1987 ASCII).
type Kiosk struct {
	spec      *codec.Spec
	tid, mid  string
	railway   Railway
	mac       *hsm.MACer
	pik       []byte
	link      link
	statePath string
	st        KioskState
	now       func() time.Time
}

// NewKiosk builds a kiosk that talks to the host at addr, keeping its state in statePath when not empty.
func NewKiosk(cfg KioskConfig, addr, statePath string) (*Kiosk, error) {
	name := orDefault(cfg.Spec, "kiosk")
	spec, err := specs.Get(name)
	if err != nil {
		return nil, err
	}
	if len(cfg.TerminalID) != 8 || len(cfg.MerchantID) != 15 {
		return nil, fmt.Errorf("kiosk terminal id (8 characters) and merchant id (15) required")
	}
	rw := cfg.Railway
	rw.Order = orDefault(rw.Order, "-") // each ticket has its own order number
	if _, err := rw.Field57(); err != nil {
		return nil, err
	}
	mak, err := hexKey("kiosk MAK", cfg.MAK, 16)
	if err != nil {
		return nil, err
	}
	k := &Kiosk{spec: spec, tid: cfg.TerminalID, mid: cfg.MerchantID, railway: cfg.Railway, statePath: statePath, now: time.Now}
	if k.mac, err = hsm.NewMACer(hsm.MACX919, mak); err != nil {
		return nil, err
	}
	if k.pik, err = hexKey("kiosk PIK", cfg.PIK, 8, 16, 24); err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	k.link = link{addr: addr, timeout: timeout, framing: spec.Framing(), spec: spec}
	if statePath != "" {
		data, err := os.ReadFile(statePath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, err
		default:
			if err := json.Unmarshal(data, &k.st); err != nil {
				return nil, fmt.Errorf("kiosk state file %s: %w", statePath, err)
			}
		}
	}
	return k, nil
}

// State returns a copy of the kiosk's state.
func (k *Kiosk) State() KioskState {
	s := k.st
	s.Sales = append([]KioskSale(nil), k.st.Sales...)
	return s
}

// Close hangs up.
func (k *Kiosk) Close() error {
	k.link.close()
	return nil
}

func (k *Kiosk) persist() error {
	if k.statePath == "" {
		return nil
	}
	data, err := json.MarshalIndent(k.st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(k.statePath, append(data, '\n'), 0o600)
}

// macField is where the MAC goes: 64, or 128 when the message has a secondary bitmap (ISO 8583:1987).
func macField(m *codec.Message) int {
	f := m.Fields()
	if len(f) > 0 && f[len(f)-1] > 64 {
		return 128
	}
	return 64
}

// kioskMAB returns the MAC block: the packed message from the MTI to the end of the field before the MAC,
// with the MAC's bit set. The MAC field is last and fixed: 8 bytes, or 16 characters when written as hex.
func kioskMAB(m *codec.Message, n int) ([]byte, error) {
	packed, err := m.Pack(nil)
	if err != nil {
		return nil, err
	}
	wire := 8
	if fd, _ := m.Spec().Field(n); fd.Encoding == codec.EncHex {
		wire = 16
	}
	if len(packed) < wire {
		return nil, errors.New("message shorter than its MAC")
	}
	return packed[:len(packed)-wire], nil
}

// Do runs one kiosk transaction; see Terminal.Do for what is an error and what a result.
func (k *Kiosk) Do(ctx context.Context, req KioskRequest) (*Result, error) {
	start := time.Now()
	res := &Result{Txn: req.Txn}
	m, orig, err := k.build(req)
	if err != nil {
		return nil, err
	}
	n := macField(m)
	if err := m.Set(n, make([]byte, 8)); err != nil {
		return nil, err
	}
	mab, err := kioskMAB(m, n)
	if err != nil {
		return nil, err
	}
	mac := k.mac.Sum(nil, mab)
	if req.Fault == BadMAC {
		mac[0] ^= 0x01
	}
	m.Set(n, mac)
	defer func() { res.Elapsed = time.Since(start) }()
	res.Request, res.Trace = m, m.String(11)
	rep, err := k.link.exchange(ctx, m, req.Fault)
	if perr := k.persist(); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return res, err
	}
	res.Reply = rep
	res.Problems, res.RC = k.check(m, rep)
	res.Approved = res.RC == "00" && len(res.Problems) == 0
	if res.Approved {
		if req.Txn == KioskPurchase {
			k.st.Sales = append(k.st.Sales, KioskSale{Trace: res.Trace, DateTime: m.String(7), Amount: mustAmount(m),
				RRN: rep.String(37), Auth: strings.TrimSpace(rep.String(38)), Railway: m.String(57),
				PANMasked: codec.MaskPAN([]byte(req.Card.PAN))})
		} else {
			orig.Refunded = true
		}
	}
	return res, k.persist()
}

func mustAmount(m *codec.Message) int64 {
	a, _ := m.Amount(4)
	return a
}

// build lays out a ticket purchase (0200, 000000) or refund (0200, 200000, with 37 and 90 of the purchase).
func (k *Kiosk) build(req KioskRequest) (*codec.Message, *KioskSale, error) {
	card := req.Card
	if err := card.check(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", req.Txn, err)
	}
	if card.Entry == Chip {
		return nil, nil, fmt.Errorf("%s: kiosks take swipe or manual entry", req.Txn)
	}
	var orig *KioskSale
	proc := "000000"
	switch req.Txn {
	case KioskPurchase:
	case KioskRefund:
		proc = "200000"
		for i := len(k.st.Sales) - 1; i >= 0 && orig == nil; i-- {
			s := &k.st.Sales[i]
			if !s.Refunded && (req.Orig == "" || req.Orig == s.Trace) {
				orig = s
			}
		}
		if orig == nil {
			return nil, nil, fmt.Errorf("%s: no purchase to refund (trace %q)", req.Txn, req.Orig)
		}
	default:
		return nil, nil, fmt.Errorf("a kiosk does not do %q", req.Txn)
	}
	amount := req.Amount
	if orig != nil && amount == 0 {
		amount = orig.Amount
	}
	if amount <= 0 {
		return nil, nil, fmt.Errorf("%s: amount required", req.Txn)
	}
	k.st.Trace = k.st.Trace%999999 + 1
	trace := fmt.Sprintf("%06d", k.st.Trace)
	now := k.now()
	m := codec.NewMessage(k.spec)
	m.SetMTI("0200")
	b := builder{m: m}
	if card.Entry == Manual {
		b.set(2, card.PAN)
	}
	b.set(3, proc)
	b.set(4, fmt.Sprintf("%012d", amount))
	b.set(7, now.UTC().Format("0102150405"))
	b.set(11, trace)
	b.set(12, now.Format("150405"))
	b.set(13, now.Format("0102"))
	if card.Entry == Manual {
		b.set(14, card.Expiry)
	}
	b.set(22, card.entryMode())
	b.set(25, "00")
	if card.Entry == Swipe {
		b.set(35, card.Track2)
	}
	if orig != nil {
		b.set(37, orig.RRN)
	}
	b.set(41, k.tid)
	b.set(42, k.mid)
	b.set(49, "156")
	if card.PIN != "" {
		pik, err := hsm.NewTDESCipher(k.pik)
		if err != nil {
			return nil, nil, err
		}
		block, err := hsm.EncryptPINBlock(pik, hsm.ISO0, card.PIN, card.PAN, nil)
		if err != nil {
			return nil, nil, err
		}
		b.setBytes(52, block)
	}
	if orig != nil {
		b.set(57, orig.Railway)
		b.set(90, "0200"+orig.Trace+orig.DateTime+strings.Repeat("0", 22))
	} else {
		rw := k.railway
		rw.Order = orDefault(req.Order, orDefault(rw.Order, "K"+k.tid+trace))
		f57, err := rw.Field57()
		if err != nil {
			return nil, nil, err
		}
		b.set(57, f57)
	}
	return m, orig, b.err
}

// check validates a kiosk reply: MTI + 10, the same 3, 11, 41 and 57, the same 4 and 42 on approval, and
// the X9.19 MAC on approvals.
func (k *Kiosk) check(req, rep *codec.Message) (problems []string, rc string) {
	problems, rc = matchReply(req, rep, false, []int{3, 11, 41, 57}, []int{4, 42})
	if rc == "00" {
		n := macField(rep)
		mac, ok := rep.Value(n)
		mac = append([]byte(nil), mac...)
		if !ok {
			problems = append(problems, fmt.Sprintf("approval without MAC (field %d)", n))
		} else if mab, err := kioskMAB(rep, n); err != nil || !k.mac.Verify(mab, mac) {
			problems = append(problems, "MAC of the reply does not verify")
		}
	}
	return problems, rc
}
