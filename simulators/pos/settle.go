package pos

import (
	"context"
	"fmt"
	"strings"
)

// Settlement flags of field 48 in the 0510 (digit 31 for RMB cards).
const (
	flagBalanced   = "1"
	flagUnbalanced = "2"
	flagError      = "3"
)

// uploadPerMessage is how many 40-digit detail records one 0320 carries (field 48 n...322).
const uploadPerMessage = 8

// settle sends the batch totals (0500). A balanced reply closes the batch; an unbalanced one makes the
// terminal upload every counted transaction (0320, 60.3 = 201) and the end of the upload (202) first.
func (t *Terminal) settle(ctx context.Context, fault Fault) (*Result, error) {
	if err := t.requireSignOn(); err != nil {
		return nil, err
	}
	res := &Result{Txn: Settle}
	if err := t.flushReversal(ctx, res); err != nil {
		return res, err
	}
	tot := t.st.totals()
	if fault == WrongTotals {
		tot.DebitAmount++
	}
	m := t.newMessage("0500")
	b := builder{m: m}
	b.set(11, t.st.nextTrace())
	b.set(41, t.cfg.tid)
	b.set(42, t.cfg.mid)
	b.set(48, fmt.Sprintf("%012d%03d%012d%03d0", tot.DebitAmount, tot.DebitCount, tot.CreditAmount, tot.CreditCount)+
		strings.Repeat("0", 31)) // foreign-card totals: none
	b.set(49, "156")
	b.set(60, t.field60("00", "201"))
	b.set(63, t.cfg.operator)
	if b.err != nil {
		return nil, b.err
	}
	// NEWPOS-era terminals accept a 0510 without field 39: the flag in field 48 is the answer.
	if err := t.send(ctx, res, m, fault, false, true); err != nil {
		return res, err
	}
	if len(res.Problems) > 0 {
		return res, nil
	}
	flag, _ := res.Reply.Subfield(48, 5)
	switch string(flag) {
	case flagBalanced:
		res.Notes = append(res.Notes, "host: totals balanced")
	case flagUnbalanced:
		res.Notes = append(res.Notes, "host: totals not balanced, uploading the batch")
		if err := t.upload(ctx, res); err != nil {
			res.Approved = false
			return res, err
		}
		if len(res.Problems) > 0 {
			res.Approved = false
			return res, nil
		}
	case flagError:
		res.Problems = append(res.Problems, "host reports a settlement error (flag 3)")
	default:
		res.Problems = append(res.Problems, "0510 without a settlement flag in field 48")
	}
	if len(res.Problems) > 0 {
		res.Approved = false
		return res, nil
	}
	res.Approved = res.RC == "00" || res.RC == ""
	t.closeBatch(res)
	return res, nil
}

// upload sends the batch's counted transactions as 0320 detail messages and the end message.
func (t *Terminal) upload(ctx context.Context, res *Result) error {
	var recs []Record
	for _, r := range t.st.Records {
		if r.counted() {
			recs = append(recs, r)
		}
	}
	type part struct{ f48, code string }
	var parts []part
	for i := 0; i < len(recs); i += uploadPerMessage {
		chunk := recs[i:min(i+uploadPerMessage, len(recs))]
		var sb strings.Builder
		fmt.Fprintf(&sb, "%02d", len(chunk))
		for _, r := range chunk {
			pan := t.st.secrets.PANs[r.Trace]
			// org 00 (CUP card), trace, PAN zero-padded to 20, amount
			fmt.Fprintf(&sb, "00%s%s%s%012d", r.Trace, strings.Repeat("0", max(0, 20-len(pan))), pan, r.Amount)
		}
		parts = append(parts, part{sb.String(), "201"})
	}
	parts = append(parts, part{fmt.Sprintf("%04d", len(recs)), "202"}) // end of the upload: the total count
	for _, p := range parts {
		m := t.newMessage("0320")
		b := builder{m: m}
		b.set(11, t.st.nextTrace())
		b.set(41, t.cfg.tid)
		b.set(42, t.cfg.mid)
		b.set(48, p.f48)
		b.set(60, t.field60("00", p.code))
		if b.err != nil {
			return b.err
		}
		up := &Result{Txn: BatchUpload}
		res.Upload = append(res.Upload, up)
		if err := t.send(ctx, up, m, NoFault, false, false); err != nil {
			return fmt.Errorf("batch upload: %w", err)
		}
		if !up.Approved {
			res.Problems = append(res.Problems, fmt.Sprintf("batch upload %s refused: 39=%q %s", p.code, up.RC, FormatProblems(up.Problems)))
			return nil
		}
	}
	res.Notes = append(res.Notes, fmt.Sprintf("batch uploaded: %d transactions in %d messages", len(recs), len(res.Upload)))
	return nil
}

// closeBatch starts the next batch after a settlement.
func (t *Terminal) closeBatch(res *Result) {
	old := t.st.Batch
	var n int
	fmt.Sscanf(old, "%d", &n)
	t.st.Batch = fmt.Sprintf("%06d", n%999999+1)
	t.st.Records = nil
	clear(t.st.secrets.PANs)
	res.Notes = append(res.Notes, fmt.Sprintf("batch %s closed, batch %s open", old, t.st.Batch))
}
