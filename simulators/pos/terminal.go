package pos

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
)

// Request is one transaction asked of the terminal.
type Request struct {
	Txn    Txn
	Amount int64 // minor units (fen); voids default to the original's amount
	Card   Card  // for follow-ups an empty PAN means the original's card, keyed
	Orig   string
	Fault  Fault
}

// Result is what one transaction did. Request and Reply are nil when nothing was sent or received.
type Result struct {
	Txn      Txn
	Trace    string
	RC       string // field 39 of the reply ("" without one)
	Approved bool   // 39 = 00 and the reply passed every check
	Request  *codec.Message
	Reply    *codec.Message
	Problems []string  // what the reply got wrong, as a terminal would reject it
	Notes    []string  // what the terminal did besides: keys loaded, batch adopted, batch closed...
	Reversal *Result   // the stored reversal sent before this transaction
	Upload   []*Result // batch upload messages after an unbalanced settlement
	Elapsed  time.Duration
}

// Terminal is a simulated UnionPay POS terminal. It is not safe for concurrent use: a terminal does one
// transaction at a time.
type Terminal struct {
	cfg       *settings
	statePath string
	st        *State
	link      link
	now       func() time.Time

	pik, tdk cipher.Block
	mac      *hsm.MACer
}

// Option changes how a terminal is built.
type Option func(*Terminal)

// WithStateFile keeps the terminal's state in the file at path (mode 0600), read now and written after
// every change, so separate runs chain.
func WithStateFile(path string) Option { return func(t *Terminal) { t.statePath = path } }

// WithClock replaces the terminal's clock (tests).
func WithClock(now func() time.Time) Option { return func(t *Terminal) { t.now = now } }

// New builds a terminal that talks to the host at addr.
func New(cfg Config, addr string, opts ...Option) (*Terminal, error) {
	s, err := cfg.check()
	if err != nil {
		return nil, err
	}
	t := &Terminal{cfg: s, now: time.Now, st: newState()}
	for _, o := range opts {
		o(t)
	}
	t.link = link{addr: addr, timeout: s.timeout, framing: s.spec.Framing(), spec: s.spec}
	if t.statePath != "" {
		if t.st, err = loadState(t.statePath, s.tmk); err != nil {
			return nil, err
		}
	}
	if t.st.SignedOn {
		if err := t.loadKeys(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// State returns a copy of the terminal's plain state (no keys, no card data).
func (t *Terminal) State() State {
	s := *t.st
	s.Records = append([]Record(nil), t.st.Records...)
	if s.Reversal != nil {
		r := *s.Reversal
		s.Reversal = &r
	}
	s.Sealed, s.secrets = nil, secrets{}
	return s
}

// Totals returns the open batch's settlement totals.
func (t *Terminal) Totals() Totals { return t.st.totals() }

// Close hangs up.
func (t *Terminal) Close() error {
	t.link.close()
	return nil
}

// persist writes the state file, when there is one.
func (t *Terminal) persist() error {
	if t.statePath == "" {
		return nil
	}
	return saveState(t.statePath, t.st, t.cfg.tmk)
}

// loadKeys prepares the ciphers of the working keys in the state.
func (t *Terminal) loadKeys() error {
	k := &t.st.secrets
	var err error
	if t.pik, err = hsm.NewTDESCipher(k.PIK); err != nil {
		return fmt.Errorf("PIK: %w", err)
	}
	if t.mac, err = hsm.NewMACer(hsm.MACCupECB, k.MAK); err != nil {
		return fmt.Errorf("MAK: %w", err)
	}
	t.tdk = nil
	if len(k.TDK) > 0 {
		if t.tdk, err = hsm.NewTDESCipher(k.TDK); err != nil {
			return fmt.Errorf("TDK: %w", err)
		}
	}
	return nil
}

// Do runs one transaction. The error reports what kept it from completing: no reply (ErrNoReply), a
// refused connection, a missing original, a state file that cannot be written. A declined or invalid reply
// is not an error: see Result.RC, Approved and Problems.
func (t *Terminal) Do(ctx context.Context, req Request) (*Result, error) {
	start := time.Now()
	var res *Result
	var err error
	switch req.Txn {
	case SignOn:
		res, err = t.signOn(ctx, req.Fault)
	case SignOff, Echo:
		res, err = t.management(ctx, req.Txn, req.Fault)
	case Settle:
		res, err = t.settle(ctx, req.Fault)
	default:
		if _, ok := financials[req.Txn]; !ok {
			return nil, fmt.Errorf("a POS terminal does not do %q", req.Txn)
		}
		res, err = t.financial(ctx, req)
	}
	if res != nil {
		res.Elapsed = time.Since(start)
	}
	if perr := t.persist(); perr != nil && err == nil {
		err = perr
	}
	return res, err
}

// newMessage starts a request with the terminal's TPDU, header and MTI.
func (t *Terminal) newMessage(mti string) *codec.Message {
	m := codec.NewMessage(t.cfg.spec)
	m.SetTPDU(t.cfg.tpdu)
	m.SetHeader(t.cfg.hdr)
	m.SetMTI(mti)
	return m
}

// builder sets the fields of a request and keeps the first error: a value the terminal built that its spec
// refuses, which means a spec that does not fit the terminal.
type builder struct {
	m   *codec.Message
	err error
}

func (b *builder) set(n int, v string) {
	if err := b.m.SetString(n, v); err != nil && b.err == nil {
		b.err = err
	}
}

func (b *builder) setBytes(n int, v []byte) {
	if err := b.m.Set(n, v); err != nil && b.err == nil {
		b.err = err
	}
}

// field60 is 60.1 message type, 60.2 batch and 60.3 network management code.
func (t *Terminal) field60(typ, code string) string { return typ + t.st.Batch + code }

// applyMAC sets field 64: the UnionPay ECB MAC over the message from the MTI to the end of field 63, with
// bit 64 set in the bitmap. BadMAC sends a wrong one.
func (t *Terminal) applyMAC(m *codec.Message, fault Fault) error {
	if t.mac == nil {
		return errors.New("no MAK: sign on first")
	}
	if err := m.SetString(64, "00000000"); err != nil {
		return err
	}
	packed, err := m.Pack(nil)
	if err != nil {
		return err
	}
	mac := t.mac.Sum(nil, packed[:len(packed)-8])
	if fault == BadMAC {
		// Another hex digit, so the host sees a wrong MAC rather than a badly formed one.
		if mac[0] == '0' {
			mac[0] = '1'
		} else {
			mac[0] = '0'
		}
	}
	return m.Set(64, mac)
}

// verifyMAC checks field 64 of a reply.
func (t *Terminal) verifyMAC(m *codec.Message) bool {
	mac, ok := m.Value(64)
	if !ok || t.mac == nil {
		return false
	}
	mac = append([]byte(nil), mac...)
	packed, err := m.Pack(nil)
	if err != nil || len(packed) < 8 {
		return false
	}
	return t.mac.Verify(packed[:len(packed)-8], mac)
}

// check validates a reply the way terminals do: MTI = request + 10, the same 3, 11 and 41, the same 42 and
// 4 on approval (4 may differ with 10, partial approval), field 39 present unless noRC, and a good MAC on
// approvals when withMAC. It returns the problems found and the response code.
func (t *Terminal) check(req, rep *codec.Message, withMAC, noRC bool) (problems []string, rc string) {
	problems, rc = matchReply(req, rep, noRC, []int{3, 11, 41}, []int{42, 4})
	if withMAC && rc == "00" {
		switch {
		case !rep.Has(64):
			problems = append(problems, "approval without MAC (field 64)")
		case !t.verifyMAC(rep):
			problems = append(problems, "MAC of the reply does not verify")
		}
	}
	return problems, rc
}

// matchReply checks what every device checks in a reply: MTI = request + 10, field 39 present unless noRC,
// the request's fields in always unchanged, and those in onApproval too when 39 = 00.
func matchReply(req, rep *codec.Message, noRC bool, always, onApproval []int) (problems []string, rc string) {
	want := []byte(req.MTI())
	want[2]++
	if rep.MTI() != string(want) {
		problems = append(problems, fmt.Sprintf("MTI %s, want %s", rep.MTI(), want))
	}
	rc = rep.String(39)
	if !rep.Has(39) && !noRC {
		problems = append(problems, "field 39 missing")
	}
	same := always
	if rc == "00" {
		same = append(slices.Clone(always), onApproval...)
	}
	for _, n := range same {
		if !req.Has(n) {
			continue
		}
		if got, sent := rep.String(n), req.String(n); got != sent {
			problems = append(problems, fmt.Sprintf("field %d: reply %q, sent %q", n, got, sent))
		}
	}
	return problems, rc
}

// send packs, exchanges and validates one message, filling res.
func (t *Terminal) send(ctx context.Context, res *Result, req *codec.Message, fault Fault, withMAC, noRC bool) error {
	res.Request = req
	res.Trace = req.String(11)
	rep, err := t.link.exchange(ctx, req, fault)
	if err != nil {
		return err
	}
	res.Reply = rep
	res.Problems, res.RC = t.check(req, rep, withMAC, noRC)
	res.Approved = res.RC == "00" && len(res.Problems) == 0
	if d, ok := rep.CUPProcessingRequirement(); ok && d == 3 {
		t.st.SignedOn = false // the host wants a new sign-on before the next transaction
		res.Notes = append(res.Notes, "host asks for a new sign-on (header processing requirement 3)")
	}
	return nil
}

// signOn sends 0800 and loads the working keys of the 0810.
func (t *Terminal) signOn(ctx context.Context, fault Fault) (*Result, error) {
	res := &Result{Txn: SignOn}
	m := t.newMessage("0800")
	b := builder{m: m}
	b.set(11, t.st.nextTrace())
	b.set(41, t.cfg.tid)
	b.set(42, t.cfg.mid)
	b.set(60, t.field60("00", t.cfg.layout))
	b.set(63, t.cfg.operator)
	if b.err != nil {
		return nil, b.err
	}
	if err := t.send(ctx, res, m, fault, false, false); err != nil {
		return res, err
	}
	if res.RC != "00" || len(res.Problems) > 0 {
		return res, nil
	}
	ks, err := hsm.ParseCUPField62(t.cfg.layout, res.Reply.Raw(62))
	if err != nil {
		res.Problems = append(res.Problems, "field 62: "+err.Error())
		res.Approved = false
		return res, nil
	}
	tmk, err := hsm.NewTDESCipher(t.cfg.tmk)
	if err != nil {
		return res, err
	}
	pik, mak, tdk, err := ks.DecryptKeys(tmk)
	if err != nil {
		what := err.Error()
		if errors.Is(err, hsm.ErrKCV) {
			what = "a working key does not match its check value (wrong TMK?)"
		}
		res.Problems = append(res.Problems, "field 62: "+what)
		res.Approved = false
		return res, nil
	}
	t.st.secrets.PIK, t.st.secrets.MAK, t.st.secrets.TDK = pik, mak, tdk
	if err := t.loadKeys(); err != nil {
		return res, err
	}
	t.st.SignedOn = true
	res.Notes = append(res.Notes, fmt.Sprintf("working keys loaded (layout %s)", t.cfg.layout))
	if batch, ok := res.Reply.Subfield(60, 2); ok && len(batch) == 6 && string(batch) != t.st.Batch {
		res.Notes = append(res.Notes, fmt.Sprintf("batch %s adopted from the host (was %s)", batch, t.st.Batch))
		t.st.Batch = string(batch)
	}
	if host, ok := hostClock(res.Reply, t.now()); ok {
		t.st.ClockOffset = int64(host.Sub(t.now()).Round(time.Second) / time.Second)
		res.Notes = append(res.Notes, "clock set from the host: "+host.Format("01-02 15:04:05"))
	}
	return res, nil
}

// hostClock reads the host's time from 12 (hhmmss) and 13 (MMDD), in the year nearest to now.
func hostClock(m *codec.Message, now time.Time) (time.Time, bool) {
	hms, d := m.String(12), m.String(13)
	if len(hms) != 6 || len(d) != 4 {
		return time.Time{}, false
	}
	best, ok := time.Time{}, false
	for _, y := range []int{now.Year() - 1, now.Year(), now.Year() + 1} {
		c, err := time.ParseInLocation("2006 0102 150405", fmt.Sprintf("%d %s %s", y, d, hms), now.Location())
		if err != nil {
			continue
		}
		if !ok || absDur(c.Sub(now)) < absDur(best.Sub(now)) {
			best, ok = c, true
		}
	}
	return best, ok
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// clock is the terminal's time, corrected by the host's clock at sign-on.
func (t *Terminal) clock() time.Time {
	return t.now().Add(time.Duration(t.st.ClockOffset) * time.Second)
}

// management sends sign-off (0820, 002) or echo (0820, 301).
func (t *Terminal) management(ctx context.Context, txn Txn, fault Fault) (*Result, error) {
	res := &Result{Txn: txn}
	code := "301"
	if txn == SignOff {
		code = "002"
	}
	m := t.newMessage("0820")
	b := builder{m: m}
	b.set(11, t.st.nextTrace())
	b.set(41, t.cfg.tid)
	b.set(42, t.cfg.mid)
	b.set(60, t.field60("00", code))
	if b.err != nil {
		return nil, b.err
	}
	if err := t.send(ctx, res, m, fault, false, false); err != nil {
		return res, err
	}
	if txn == SignOff && res.Approved {
		t.st.SignedOn = false
		t.st.secrets.PIK, t.st.secrets.MAK, t.st.secrets.TDK = nil, nil, nil
		t.pik, t.tdk, t.mac = nil, nil, nil
		res.Notes = append(res.Notes, "signed off: working keys erased")
	}
	return res, nil
}

// requireSignOn refuses transactions before a sign-on, as terminals do.
func (t *Terminal) requireSignOn() error {
	if !t.st.SignedOn || t.mac == nil {
		return errors.New("terminal is not signed on: run sign-on first")
	}
	return nil
}

// FormatProblems joins a result's problems for one line of output.
func FormatProblems(p []string) string { return strings.Join(p, "; ") }
