package saf

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
)

// marshalRecord encodes r exactly as json.Marshal does, without reflection: it is on the path of every
// request whose intent is stored. Values json.Marshal would escape or reject (strings with characters
// outside printable ASCII or with HTML-significant ones, years outside 0-9999) go through json.Marshal.
func marshalRecord(r *fileRecord) ([]byte, error) {
	if !plainRecord(r) {
		return json.Marshal(r)
	}
	b := make([]byte, 0, 320+base64.StdEncoding.EncodedLen(len(entrySealed(r))))
	b = append(b, `{"op":`...)
	b = appendString(b, r.Op)
	if r.ID != "" {
		b = append(b, `,"id":`...)
		b = appendString(b, r.ID)
	}
	if e := r.E; e != nil {
		b = append(b, `,"e":{"id":`...)
		b = appendString(b, e.ID)
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, e.Seq, 10)
		b = append(b, `,"acq":`...)
		b = appendString(b, e.Acquirer)
		if e.Link != "" {
			b = append(b, `,"link":`...)
			b = appendString(b, e.Link)
		}
		b = append(b, `,"txn":`...)
		b = appendString(b, e.TxnID)
		b = append(b, `,"kind":`...)
		b = appendString(b, string(e.Kind))
		b = append(b, `,"mti":`...)
		b = appendString(b, e.MTI)
		b = append(b, `,"node":`...)
		b = appendString(b, e.Node)
		b = append(b, `,"queued":`...)
		b = appendTime(b, e.Queued)
		b = append(b, `,"since":`...)
		b = appendTime(b, e.Since)
		b = append(b, `,"attempts":`...)
		b = strconv.AppendInt(b, int64(e.Attempts), 10)
		b = append(b, `,"sent":`...)
		b = strconv.AppendInt(b, int64(e.Sent), 10)
		b = append(b, `,"next":`...)
		b = appendTime(b, e.Next)
		if e.LastError != "" {
			b = append(b, `,"err":`...)
			b = appendString(b, e.LastError)
		}
		if e.Dead {
			b = append(b, `,"dead":true`...)
		}
		if len(e.Sealed) > 0 {
			b = append(b, `,"msg":"`...)
			b = base64.StdEncoding.AppendEncode(b, e.Sealed)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

func entrySealed(r *fileRecord) []byte {
	if r.E == nil {
		return nil
	}
	return r.E.Sealed
}

// plainRecord reports whether every string of r is printable ASCII that JSON leaves as is and every time
// has a year and zone offset json.Marshal accepts.
func plainRecord(r *fileRecord) bool {
	if !plainString(r.Op) || !plainString(r.ID) {
		return false
	}
	e := r.E
	if e == nil {
		return true
	}
	for _, s := range [...]string{e.ID, e.Acquirer, e.Link, e.TxnID, string(e.Kind), e.MTI, e.Node, e.LastError} {
		if !plainString(s) {
			return false
		}
	}
	for _, t := range [...]time.Time{e.Queued, e.Since, e.Next} {
		if y := t.Year(); y < 0 || y > 9999 {
			return false
		}
		if _, off := t.Zone(); off <= -24*3600 || off >= 24*3600 {
			return false
		}
	}
	return true
}

func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// appendString appends a plain string (see plainString) quoted.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendTime appends t as time.Time's MarshalJSON does.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}
