package terminal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
	"go.uber.org/zap"
)

// Response codes the manager answers with.
const (
	rcApproved    = "00"
	rcFormat      = "30" // message format error
	rcNotAllowed  = "58" // transaction not permitted to the terminal
	rcMalfunction = "96" // system malfunction (key generation failed, store down)
)

// Manager answers the terminal-management messages of UnionPay-style terminals locally.
type Manager struct {
	Registry *Registry
	Sessions Sessions
	Batches  Batches
	HSM      hsm.Module
	// Keys returns the key of that name from the key store: terminals' TMKs and static working keys.
	Keys func(name string) (hsm.Key, error)
	// AcquirerID is field 32 of sign-on replies (the acquiring institution code), digits; empty leaves it out.
	AcquirerID string
	Now        func() time.Time
	Log        *zap.Logger
}

// IsManagement reports whether req is a message the manager answers: 0800 sign-on, 0820 echo or sign-off,
// 0500 settlement, 0320 batch upload.
func IsManagement(req *codec.Message) bool {
	switch req.MTI() {
	case "0800", "0820", "0500", "0320":
		return true
	}
	return false
}

// NewReply prepares the reply to req: MTI + 10, TPDU with its addresses swapped, the same header, and the
// fields a terminal checks on every reply (3, 4, 11, 41, 42) plus 25, 49, 57 (railway data) and 60 when present.
func NewReply(req, rsp *codec.Message) error {
	rsp.Reset()
	mti := req.MTIBytes()
	if mti == nil {
		return errors.New("request has no MTI")
	}
	reply := []byte{mti[0], mti[1], mti[2] + 1, mti[3]}
	if reply[2] > '9' {
		return fmt.Errorf("MTI %s has no reply", req.MTI())
	}
	if err := rsp.SetMTI(string(reply)); err != nil {
		return err
	}
	if t := req.TPDU(); t != nil {
		_ = rsp.SetTPDU(t)
		rsp.SwapTPDU()
	}
	if h := req.Header(); h != nil {
		_ = rsp.SetHeader(h)
	}
	for _, n := range [...]int{3, 4, 11, 25, 41, 42, 49, 57, 60} { // 57: railway data, echoed
		if req.Has(n) {
			if err := rsp.CopyField(n, req); err != nil {
				return err
			}
		}
	}
	return nil
}

// Handle answers a management request from terminal t into rsp, which NewReply has prepared. It returns the
// response code it set.
func (m *Manager) Handle(ctx context.Context, t *Terminal, req, rsp *codec.Message) string {
	net, _ := req.Subfield(60, 3)
	var rc string
	switch req.MTI() {
	case "0800":
		rc = m.signOn(ctx, t, string(net), req, rsp)
	case "0820":
		rc = m.echoOrSignOff(ctx, t, string(net))
	case "0500":
		rc = m.settle(ctx, t, req, rsp)
	case "0320":
		rc = rcApproved // batch upload details and end messages are acknowledged; totals were compared at 0500
	default:
		rc = rcFormat
	}
	_ = rsp.SetString(39, rc)
	return rc
}

// Session returns a terminal's session: the stored one of a terminal that signs on, or for a terminal with
// static keys one that is always signed on with those keys (no batch: such terminals do not settle here).
func (m *Manager) Session(ctx context.Context, t *Terminal) (Session, bool, error) {
	if !t.Static() {
		return m.Sessions.Get(ctx, t.ID)
	}
	mak, err := m.Keys(t.MAK)
	if err != nil {
		return Session{}, false, fmt.Errorf("terminal %s: static mak: %w", t.ID, err)
	}
	pik, err := m.Keys(t.PIK)
	if err != nil {
		return Session{}, false, fmt.Errorf("terminal %s: static pik: %w", t.ID, err)
	}
	return Session{TID: t.ID, SignedOn: true, PIK: pik, MAK: mak}, true, nil
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Manager) log() *zap.Logger {
	if m.Log != nil {
		return m.Log
	}
	return zap.NewNop()
}

// signOn generates fresh working keys under the terminal's TMK in the layout it asked for (60.3), keeps them
// under the LMK in the terminal's session, and sends them in field 62 with the batch number in 60.2.
func (m *Manager) signOn(ctx context.Context, t *Terminal, netCode string, req, rsp *codec.Message) string {
	if netCode != "001" && netCode != "003" && netCode != "004" {
		return rcFormat
	}
	if t.KeyLayout != "" && t.KeyLayout != netCode {
		return rcNotAllowed
	}
	tmk, err := m.Keys(t.TMK)
	if err != nil {
		m.log().Error("sign-on: terminal master key unavailable", zap.String("terminal", t.ID), zap.Error(err))
		return rcMalfunction
	}
	keys, err := m.HSM.CUPSignOnKeys(ctx, hsm.CUPSignOnRequest{TMK: tmk, NetCode: netCode, Prefix: "term/" + t.ID})
	if err != nil {
		m.log().Error("sign-on: key generation failed", zap.String("terminal", t.ID), zap.Error(err))
		return rcMalfunction
	}
	prev, _, err := m.Sessions.Get(ctx, t.ID)
	if err != nil {
		return rcMalfunction
	}
	batch := prev.Batch
	if reqBatch, ok := req.Subfield(60, 2); ok && len(reqBatch) == 6 && batch == "" && string(reqBatch) != "000000" {
		batch = string(reqBatch)
	}
	if batch == "" {
		batch = "000001"
	}
	now := m.now()
	s := Session{TID: t.ID, SignedOn: true, Batch: batch, NetCode: netCode, PIK: keys.PIK, MAK: keys.MAK,
		TDK: keys.TDK, SignedOnAt: now}
	if err := m.Sessions.Put(ctx, s); err != nil {
		m.log().Error("sign-on: session store failed", zap.String("terminal", t.ID), zap.Error(err))
		return rcMalfunction
	}
	_ = rsp.SetString(12, now.Format("150405"))
	_ = rsp.SetString(13, now.Format("0102"))
	if m.AcquirerID != "" {
		_ = rsp.SetString(32, m.AcquirerID)
	}
	msgType, _ := req.Subfield(60, 1)
	if len(msgType) != 2 {
		msgType = []byte("00")
	}
	_ = rsp.SetString(60, string(msgType)+batch+netCode)
	if err := rsp.Set(62, keys.Field62); err != nil {
		return rcMalfunction
	}
	return rcApproved
}

// echoOrSignOff answers 0820: 301 echo test, 002 sign-off (the session's keys are no longer accepted).
func (m *Manager) echoOrSignOff(ctx context.Context, t *Terminal, netCode string) string {
	switch netCode {
	case "301":
		return rcApproved
	case "002":
		s, ok, err := m.Sessions.Get(ctx, t.ID)
		if err != nil {
			return rcMalfunction
		}
		if ok {
			s.SignedOn = false
			if err := m.Sessions.Put(ctx, s); err != nil {
				return rcMalfunction
			}
		}
		return rcApproved
	}
	return rcFormat
}

// settle compares the terminal's totals in field 48 with the switch's own for the batch in 60.2 and answers
// with the settlement flag at digit 31 (RMB cards) and 62 (foreign cards): 1 balanced, 2 not balanced (the
// terminal then uploads its batch with 0320).
func (m *Manager) settle(ctx context.Context, t *Terminal, req, rsp *codec.Message) string {
	v, ok := req.Value(48)
	if !ok || len(v) < 62 {
		return rcFormat
	}
	batch, _ := req.Subfield(60, 2)
	own, err := m.Batches.Totals(ctx, t.ID, string(batch))
	if err != nil {
		return rcMalfunction
	}
	ours := fmt.Sprintf("%012d%03d%012d%03d", own.DebitAmount, own.DebitCount%1000, own.CreditAmount, own.CreditCount%1000)
	out := append([]byte(nil), v[:62]...)
	out[30] = flag(string(v[:30]) == ours)
	out[61] = flag(string(v[31:61]) == "000000000000000000000000000000")
	_ = rsp.Set(48, out)
	return rcApproved
}

func flag(balanced bool) byte {
	if balanced {
		return '1'
	}
	return '2'
}
