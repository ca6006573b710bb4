package pos

import (
	"context"
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
)

// financial runs a card transaction of the financials table.
func (t *Terminal) financial(ctx context.Context, req Request) (*Result, error) {
	if err := t.requireSignOn(); err != nil {
		return nil, err
	}
	def := financials[req.Txn]
	res := &Result{Txn: req.Txn}
	if err := t.flushReversal(ctx, res); err != nil {
		return res, err
	}
	var orig *Record
	if len(def.orig) > 0 {
		var err error
		if orig, err = t.st.findRecord(req.Orig, def.orig...); err != nil {
			return res, fmt.Errorf("%s: %w", req.Txn, err)
		}
	}
	card := req.Card
	if card.PAN == "" && orig != nil {
		// A follow-up without the card present: the original's card, keyed.
		card = Card{PAN: t.st.secrets.PANs[orig.Trace], Entry: Manual, PIN: req.Card.PIN}
	}
	if err := card.check(); err != nil {
		return res, fmt.Errorf("%s: %w", req.Txn, err)
	}
	amount := req.Amount
	if orig != nil && (def.origAmount || amount == 0) {
		amount = orig.Amount
	}
	if req.Txn != Balance && amount <= 0 {
		return res, fmt.Errorf("%s: amount required", req.Txn)
	}
	m, err := t.buildFinancial(req.Txn, def, &card, amount, orig)
	if err != nil {
		return res, fmt.Errorf("%s: %w", req.Txn, err)
	}
	if def.reversible {
		// Stored, and written to the state file, before the request leaves: a crash or a lost reply then
		// still ends in a reversal.
		packed, err := m.Pack(nil)
		if err != nil {
			return res, err
		}
		t.st.secrets.Reversal = packed
		t.st.Reversal = &PendingReversal{Txn: req.Txn, Trace: m.String(11), Reason: "98"}
		if err := t.persist(); err != nil {
			return res, err
		}
	}
	if err := t.applyMAC(m, req.Fault); err != nil {
		return res, err
	}
	if err := t.send(ctx, res, m, req.Fault, true, false); err != nil {
		if def.reversible {
			res.Notes = append(res.Notes, "reversal stored (39=98): it goes before the next transaction")
		}
		return res, err
	}
	if def.reversible {
		t.settleReversal(res)
	}
	if res.Approved {
		t.record(req.Txn, res, &card, amount, orig)
	}
	return res, nil
}

// settleReversal decides on the stored reversal after a reply: a good reply (approved or declined) clears
// it; an approval that fails the checks keeps it with reason A0 (MAC) or 06; a reply that is not this
// request's keeps reason 98.
func (t *Terminal) settleReversal(res *Result) {
	switch {
	case len(res.Problems) == 0:
		t.clearReversal()
	case res.RC == "00":
		t.st.Reversal.Reason = "06"
		for _, p := range res.Problems {
			if strings.Contains(p, "MAC") {
				t.st.Reversal.Reason = "A0"
			}
		}
		res.Notes = append(res.Notes, fmt.Sprintf("approval rejected: reversal stored (39=%s)", t.st.Reversal.Reason))
	default:
		res.Notes = append(res.Notes, "reply does not match the request: reversal stored (39=98)")
	}
}

func (t *Terminal) clearReversal() {
	t.st.Reversal = nil
	clear(t.st.secrets.Reversal)
	t.st.secrets.Reversal = nil
}

// record keeps an approved transaction in the batch.
func (t *Terminal) record(txn Txn, res *Result, card *Card, amount int64, orig *Record) {
	date := res.Reply.String(13)
	if len(date) != 4 {
		date = t.clock().Format("0102")
	}
	r := Record{Txn: txn, Trace: res.Trace, Batch: t.st.Batch, Date: date, Amount: amount,
		RRN: res.Reply.String(37), Auth: strings.TrimSpace(res.Reply.String(38)), PANMasked: codec.MaskPAN([]byte(card.PAN))}
	switch txn {
	case Void, PreAuthVoid, CompletionVoid:
		orig.Voided = true
	case Completion, CompletionAdvice:
		orig.Completed = true
	}
	if txn != Balance {
		t.st.Records = append(t.st.Records, r)
		t.st.secrets.PANs[r.Trace] = card.PAN
	}
}

// buildFinancial lays out a financial request (unionpay-pos.md section 4, per-message specifics).
func (t *Terminal) buildFinancial(txn Txn, def financial, card *Card, amount int64, orig *Record) (*codec.Message, error) {
	m := t.newMessage(def.mti)
	b := builder{m: m}
	keyed := card.Entry != Swipe
	if keyed {
		b.set(2, card.PAN)
	}
	b.set(3, def.proc)
	if txn != Balance {
		b.set(4, fmt.Sprintf("%012d", amount))
	}
	trace := t.st.nextTrace()
	b.set(11, trace)
	if keyed {
		b.set(14, card.Expiry)
	}
	b.set(22, card.entryMode())
	if card.Entry == Chip {
		b.set(23, "001")
	}
	b.set(25, def.cond)
	if card.PIN != "" {
		b.set(26, "12")
	}
	encTrack := false
	if card.Entry != Manual {
		tr, enc, err := t.track(card.Track2)
		if err != nil {
			return nil, err
		}
		b.set(35, tr)
		encTrack = enc
	}
	if orig != nil {
		if txn == Void || txn == Refund || txn == CompletionVoid {
			b.set(37, orDefault(orig.RRN, "000000000000"))
		}
		if txn != Refund && orig.Auth != "" {
			b.set(38, orig.Auth)
		}
	}
	b.set(41, t.cfg.tid)
	b.set(42, t.cfg.mid)
	b.set(49, "156")
	double := len(t.st.secrets.PIK) > 8
	if card.PIN != "" {
		block, ksn, err := t.pinBlock(card)
		if err != nil {
			return nil, err
		}
		b.setBytes(52, block)
		if ksn != nil {
			b.setBytes(62, ksn)
			double = true
		}
	}
	if card.PIN != "" || encTrack {
		sec := []byte("2000000000000000") // 53.1 '2': ISO 0 with PAN
		if double {
			sec[1] = '6'
		}
		if encTrack {
			sec[2] = '1'
		}
		b.set(53, string(sec))
	}
	if card.Entry == Chip {
		b.setBytes(55, chipData(card.PAN, amount, trace, t.clock(), chipTxnType(def.proc)))
	}
	if t.cfg.field57 != "" {
		b.set(57, t.cfg.field57)
	}
	b.set(60, t.field60(def.typ, "000")+"50") // 60.4 '5': chip-capable terminal, 60.5 '0': normal
	if orig != nil {
		f61 := orig.Batch + orig.Trace
		if def.origDate {
			f61 += orig.Date
		}
		b.set(61, f61)
	}
	if txn == Refund {
		b.set(63, "CUP")
	}
	return m, b.err
}

// chipTxnType is EMV tag 9C from the processing code's first two digits.
func chipTxnType(proc string) byte {
	return (proc[0]-'0')<<4 | (proc[1] - '0')
}

// track returns track 2 as sent: encrypted under the TDK when the terminal is configured for it.
func (t *Terminal) track(tr string) (string, bool, error) {
	if !t.cfg.encryptTrack {
		return tr, false, nil
	}
	if t.tdk == nil {
		return "", false, fmt.Errorf("track encryption needs a TDK: sign on with key layout 004")
	}
	p := bcd(tr)
	defer clear(p)
	if err := hsm.EncryptTrackTDK(t.tdk, p, false); err != nil {
		return "", false, err
	}
	return unbcd(p, len(tr)), true, nil
}

// pinBlock encrypts the PIN as an ISO format 0 block under the PIK, or under the DUKPT PIN key of the next
// transaction counter, whose KSN it also returns.
func (t *Terminal) pinBlock(card *Card) (block, ksn []byte, err error) {
	key := t.pik
	if t.cfg.bdk != nil {
		c := t.st.KSNCounter
		for {
			c++
			if c > 0x1FFFFF {
				return nil, nil, fmt.Errorf("DUKPT transaction counter exhausted")
			}
			if bits.OnesCount32(c) <= hsm.TDESMaxCounterBits {
				break
			}
		}
		t.st.KSNCounter = c
		ksn = slices.Clone(t.cfg.ksn)
		ksn[7] = ksn[7]&0xE0 | byte(c>>16)
		ksn[8], ksn[9] = byte(c>>8), byte(c)
		ik, err := hsm.DUKPTInitialKey(t.cfg.bdk, ksn)
		if err != nil {
			return nil, nil, err
		}
		pk, err := hsm.DUKPTPINKey(ik, ksn)
		clear(ik)
		if err != nil {
			return nil, nil, err
		}
		key, err = hsm.NewTDESCipher(pk)
		clear(pk)
		if err != nil {
			return nil, nil, err
		}
	}
	block, err = hsm.EncryptPINBlock(key, hsm.ISO0, card.PIN, card.PAN, nil)
	return block, ksn, err
}

// flushReversal sends the stored reversal, if any, before a transaction, as terminals do; the transaction
// does not go while the reversal is unacknowledged.
func (t *Terminal) flushReversal(ctx context.Context, res *Result) error {
	if t.st.Reversal == nil {
		return nil
	}
	pr := *t.st.Reversal
	rv := &Result{Txn: Reversal}
	res.Reversal = rv
	m := codec.NewMessage(t.cfg.spec)
	if err := m.Unpack(slices.Clone(t.st.secrets.Reversal)); err != nil {
		t.clearReversal()
		return fmt.Errorf("stored reversal does not decode, dropped: %w", err)
	}
	m.SetTPDU(t.cfg.tpdu)
	m.SetHeader(t.cfg.hdr)
	m.SetMTI("0400")
	for _, n := range []int{26, 35, 36, 37, 52, 53, 62} {
		m.Unset(n)
	}
	if chip, ok := m.Value(55); ok {
		if r := reversalChipData(chip); len(r) > 0 {
			if err := m.Set(55, r); err != nil {
				return err
			}
		} else {
			m.Unset(55)
		}
	}
	if err := m.SetString(39, pr.Reason); err != nil {
		return err
	}
	if err := t.applyMAC(m, NoFault); err != nil {
		return err
	}
	if err := t.send(ctx, rv, m, NoFault, true, false); err != nil {
		return fmt.Errorf("stored reversal of %s trace %s not acknowledged, %s not sent: %w", pr.Txn, pr.Trace, res.Txn, err)
	}
	if len(rv.Problems) > 0 {
		return fmt.Errorf("reply to the stored reversal of trace %s rejected (%s), %s not sent", pr.Trace, FormatProblems(rv.Problems), res.Txn)
	}
	rv.Approved = true // acknowledged: the host answered this reversal, whatever its response code
	rv.Notes = append(rv.Notes, fmt.Sprintf("reversal of %s trace %s (39=%s) acknowledged", pr.Txn, pr.Trace, pr.Reason))
	t.clearReversal()
	return t.persist()
}
