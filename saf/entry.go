package saf

import (
	"fmt"
	"time"

	"github.com/railswitch/railswitch/codec"
)

// Kind says what an entry carries.
type Kind string

// Kinds of entries, from the message's MTI.
const (
	KindReversal Kind = "reversal" // 0400, 0401, 0420, 0421
	KindAdvice   Kind = "advice"   // 0220, 0221
)

// Entry is one queued message with its delivery state. The message itself is sealed (Sealed); Pending and
// DeadLetters return entries without it.
type Entry struct {
	ID       string `json:"id"`  // unique: node and sequence
	Seq      uint64 `json:"seq"` // order within the acquirer's queue
	Acquirer string `json:"acq"`
	Link     string `json:"link,omitempty"` // acquirer/endpoint/conn of the original, or "" for any link
	TxnID    string `json:"txn"`
	Kind     Kind   `json:"kind"`
	MTI      string `json:"mti"` // as queued; repeats may go out with the repeat MTI
	Node     string `json:"node"`
	// Queued is when the entry was first queued; Since when its current round began (Queued, or the last
	// operator Retry): max attempts and the dead-on-age rule count from Since, the age alarm from Queued.
	Queued    time.Time `json:"queued"`
	Since     time.Time `json:"since"`
	Attempts  int       `json:"attempts"` // sends in the current round
	Sent      int       `json:"sent"`     // sends ever: once sent, a repeat carries the repeat MTI
	Next      time.Time `json:"next"`     // earliest time of the next attempt
	LastError string    `json:"err,omitempty"`
	Dead      bool      `json:"dead,omitempty"`
	Sealed    []byte    `json:"msg,omitempty"`
}

// kindOf classifies an MTI; only reversals and advices may be queued.
func kindOf(mti string) (Kind, bool) {
	switch mti {
	case "0400", "0401", "0420", "0421":
		return KindReversal, true
	case "0220", "0221":
		return KindAdvice, true
	}
	return "", false
}

// repeatOf is the MTI a message goes out with when it is sent again (ISO 8583:1987 repeat).
var repeatOf = map[string]string{"0420": "0421", "0220": "0221"}

// mtiWidth is the number of bytes of the MTI on the wire.
func mtiWidth(enc codec.MTIEncoding) int {
	if enc == codec.MTIBCD {
		return 2
	}
	return 4
}

// readMTI returns the four MTI digits at the start of a packed message.
func readMTI(msg []byte, enc codec.MTIEncoding) (string, error) {
	w := mtiWidth(enc)
	if len(msg) < w {
		return "", fmt.Errorf("saf: message of %d bytes has no MTI", len(msg))
	}
	var d [4]byte
	switch enc {
	case codec.MTIBCD:
		for i, b := range msg[:2] {
			d[2*i], d[2*i+1] = '0'+b>>4, '0'+b&0x0F
		}
	case codec.MTIEBCDIC:
		for i, b := range msg[:4] {
			d[i] = '0' + b - 0xF0 // EBCDIC digits are F0-F9
		}
	default:
		copy(d[:], msg[:4])
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return "", fmt.Errorf("saf: message does not start with a %s MTI", encName(enc))
		}
	}
	return string(d[:]), nil
}

// writeMTI overwrites the MTI at the start of msg (which readMTI accepted) with the four digits of mti.
func writeMTI(msg []byte, mti string, enc codec.MTIEncoding) {
	switch enc {
	case codec.MTIBCD:
		msg[0] = (mti[0]-'0')<<4 | (mti[1] - '0')
		msg[1] = (mti[2]-'0')<<4 | (mti[3] - '0')
	case codec.MTIEBCDIC:
		for i := range 4 {
			msg[i] = 0xF0 + mti[i] - '0'
		}
	default:
		copy(msg, mti)
	}
}

func encName(enc codec.MTIEncoding) string {
	switch enc {
	case codec.MTIBCD:
		return "BCD"
	case codec.MTIEBCDIC:
		return "EBCDIC"
	}
	return "ASCII"
}
