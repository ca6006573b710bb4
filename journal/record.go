package journal

import (
	"errors"
	"fmt"
	"time"

	"github.com/railswitch/railswitch/codec"
)

// RecordVersion is the encoding version that Append writes. Readers decode every version up to this one, so
// segments written by an older switch stay readable.
const RecordVersion = 1

// Kind says what a posting record does to the ledger.
type Kind uint8

// The kinds of posting records. The numeric values are stored in segments: never renumber them.
const (
	KindAuthorization    Kind = 1 // purchase or other financial authorization (0200/0210)
	KindPreauthorization Kind = 2 // pre-authorization hold (0100/0110)
	KindCompletion       Kind = 3 // pre-authorization completion
	KindVoid             Kind = 4 // cancels an original of the same batch
	KindRefund           Kind = 5 // returns money of an earlier original
	KindReversal         Kind = 6 // undoes an original that may have reached the acquirer (0400/0420)
	KindAdvice           Kind = 7 // advice the acquirer must accept (0220/0221)
)

var kindNames = [...]string{
	KindAuthorization:    "authorization",
	KindPreauthorization: "preauthorization",
	KindCompletion:       "completion",
	KindVoid:             "void",
	KindRefund:           "refund",
	KindReversal:         "reversal",
	KindAdvice:           "advice",
}

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool { return k >= KindAuthorization && int(k) < len(kindNames) }

// String returns the kind's lower-case name, or "kind(N)" for an undefined value.
func (k Kind) String() string {
	if !k.Valid() {
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
	return kindNames[k]
}

// MarshalText encodes the kind as its name.
func (k Kind) MarshalText() ([]byte, error) {
	if !k.Valid() {
		return nil, fmt.Errorf("journal: undefined record kind %d", uint8(k))
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText decodes a kind name.
func (k *Kind) UnmarshalText(b []byte) error {
	for i, n := range kindNames {
		if n != "" && n == string(b) {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("journal: unknown record kind %q", b)
}

// MaskedPAN is a card number reduced to its first 6 and last 4 digits (DESIGN invariant 4). Its only
// constructor masks, so a Record cannot hold a full PAN, whatever its producer passes in.
type MaskedPAN struct{ s string }

// MaskPAN masks pan with codec.MaskPAN. Masking an already masked value returns it unchanged.
func MaskPAN(pan string) MaskedPAN { return MaskedPAN{codec.MaskPAN([]byte(pan))} }

// String returns the masked digits, for example "622202******1234".
func (p MaskedPAN) String() string { return p.s }

// MarshalText returns the masked digits.
func (p MaskedPAN) MarshalText() ([]byte, error) { return []byte(p.s), nil }

// UnmarshalText masks what it reads, so decoding cannot smuggle a full PAN in either.
func (p *MaskedPAN) UnmarshalText(b []byte) error {
	*p = MaskPAN(string(b))
	return nil
}

// Record is one posting: a finished transaction as the ledger must see it. Text fields hold the values as
// exchanged on the wire (digits as ASCII). Amounts are in minor units of Currency.
type Record struct {
	// TxnID is the globally unique transaction id assigned by the first switch tier; it travels between tiers.
	TxnID string `json:"txn_id"`
	// Kind says what the record does to the ledger.
	Kind Kind `json:"kind"`
	// OriginalTxnID is the TxnID of the original transaction of a void, refund, completion or reversal.
	OriginalTxnID string `json:"original_txn_id,omitempty"`
	// Posting is set when this tier is the one configured to post: a bureau switch forwarding to the central
	// switch journals with Posting false when the central tier posts, and the other way round.
	Posting bool `json:"posting"`

	Bureau   string `json:"bureau"`   // railway bureau that owns the station
	Station  string `json:"station"`  // station of the terminal
	Channel  string `json:"channel"`  // name of the channel the terminal came in on
	Terminal string `json:"terminal"` // terminal id (field 41)
	Merchant string `json:"merchant"` // merchant id (field 42)
	Acquirer string `json:"acquirer"` // name of the acquirer the transaction was routed to

	MTI            string `json:"mti"`             // MTI of the request, for example "0200"
	ProcessingCode string `json:"processing_code"` // field 3
	Amount         int64  `json:"amount"`          // transaction amount in minor units (field 4)
	Currency       string `json:"currency"`        // ISO 4217 numeric code (field 49), for example "156"

	ResponseCode string `json:"response_code"`       // response code returned to the terminal (field 39)
	AuthCode     string `json:"auth_code,omitempty"` // authorization id response (field 38)
	RRN          string `json:"rrn"`                 // retrieval reference number (field 37) sent to the acquirer
	TerminalSTAN string `json:"terminal_stan"`       // STAN the terminal sent (field 11)
	AcquirerSTAN string `json:"acquirer_stan"`       // STAN the switch sent to the acquirer

	PAN MaskedPAN `json:"pan"` // first 6 and last 4 digits only

	// TerminalLocalTime is the terminal's local date and time as it sent them, MMDDhhmmss (fields 13 and 12).
	TerminalLocalTime string    `json:"terminal_local_time"`
	ReceivedAt        time.Time `json:"received_at"`          // when the switch received the request
	AnsweredAt        time.Time `json:"answered_at,omitzero"` // when the acquirer's answer arrived; zero if none
}

// IdempotencyKey identifies the posting for the ledger: the transaction id and the kind. Every copy of the
// record (a redelivery by the shipper, the same transaction journaled at two tiers, a repeated advice) has the
// same key, so a sink that keeps keys applies it once.
func (r *Record) IdempotencyKey() string { return r.TxnID + "/" + r.Kind.String() }

// validate checks what the journal needs to store a record usefully.
func (r *Record) validate() error {
	if r.TxnID == "" {
		return errors.New("journal: record without a transaction id")
	}
	if !r.Kind.Valid() {
		return fmt.Errorf("journal: record %s has undefined kind %d", r.TxnID, uint8(r.Kind))
	}
	return nil
}

// MarshalJSON adds the encoding version and the idempotency key to the record's fields.
func (r Record) MarshalJSON() ([]byte, error) {
	return appendJSON(make([]byte, 0, 512), &r)
}
