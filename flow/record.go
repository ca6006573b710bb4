package flow

import (
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/journal"
)

// SwitchReversalRecord is the journal record of a reversal the switch itself decided on for an approval it
// may already have journaled: an approval whose reply could not be delivered, or a request whose outcome a
// stopped node never recorded (its intent). out is the request as sent to the acquirer, or its reversal; it
// supplies the amounts and references. The record reverses txnID (OriginalTxnID) and carries the key
// txnID/reversal, so the ledger nets the approval out once, however often the reversal is journaled; a ledger
// that holds no approval of txnID has nothing to net (docs/journal.md). ResponseCode is the reason sent to the
// bank in 39 (06: undelivered, 98: outcome unknown).
func SwitchReversalRecord(out *codec.Message, acquirer, txnID, reason string, posting bool, now time.Time) *journal.Record {
	amount, _ := out.Amount(4)
	return &journal.Record{TxnID: txnID, Kind: journal.KindReversal, OriginalTxnID: txnID, Posting: posting,
		Terminal: out.String(41), Merchant: out.String(42), Acquirer: acquirer, MTI: out.MTI(),
		ProcessingCode: out.String(3), Amount: amount, Currency: out.String(49), ResponseCode: reason,
		RRN: out.String(37), AcquirerSTAN: out.String(11), PAN: journal.MaskPAN(panOf(out)), ReceivedAt: now}
}
