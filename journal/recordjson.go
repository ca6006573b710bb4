package journal

import (
	"encoding/json"
	"strconv"
	"time"
)

// appendJSON appends the JSON form of r (what MarshalJSON returns: version, idempotency key, then the fields
// in declaration order) to dst, without reflection: the file sink writes one such line per record. Strings
// that need escaping, and times json.Marshal would refuse, take encoding/json's path, so the output is the
// same byte for byte.
func appendJSON(dst []byte, r *Record) ([]byte, error) {
	dst = append(dst, `{"version":`...)
	dst = strconv.AppendInt(dst, RecordVersion, 10)
	dst = append(dst, `,"idempotency_key":`...)
	if !r.Kind.Valid() {
		_, err := r.Kind.MarshalText() // its error, the one json.Marshal returns
		return nil, err
	}
	kind := r.Kind.String()
	dst = append(dst, '"')
	var err error
	if dst, err = appendJSONText(dst, r.TxnID); err != nil {
		return nil, err
	}
	dst = append(dst, '/')
	dst = append(dst, kind...) // kind names are plain lower-case words
	dst = append(dst, '"')
	fields := [...]struct {
		key       string
		val       string
		omitEmpty bool
	}{
		{`,"txn_id":`, r.TxnID, false},
		{`,"kind":`, kind, false},
		{`,"original_txn_id":`, r.OriginalTxnID, true},
	}
	for _, f := range fields {
		if dst, err = appendJSONField(dst, f.key, f.val, f.omitEmpty); err != nil {
			return nil, err
		}
	}
	dst = append(dst, `,"posting":`...)
	dst = strconv.AppendBool(dst, r.Posting)
	for _, f := range [...]struct{ key, val string }{
		{`,"bureau":`, r.Bureau}, {`,"station":`, r.Station}, {`,"channel":`, r.Channel},
		{`,"terminal":`, r.Terminal}, {`,"merchant":`, r.Merchant}, {`,"acquirer":`, r.Acquirer},
		{`,"mti":`, r.MTI}, {`,"processing_code":`, r.ProcessingCode},
	} {
		if dst, err = appendJSONField(dst, f.key, f.val, false); err != nil {
			return nil, err
		}
	}
	dst = append(dst, `,"amount":`...)
	dst = strconv.AppendInt(dst, r.Amount, 10)
	for _, f := range [...]struct {
		key       string
		val       string
		omitEmpty bool
	}{
		{`,"currency":`, r.Currency, false}, {`,"response_code":`, r.ResponseCode, false},
		{`,"auth_code":`, r.AuthCode, true}, {`,"rrn":`, r.RRN, false},
		{`,"terminal_stan":`, r.TerminalSTAN, false}, {`,"acquirer_stan":`, r.AcquirerSTAN, false},
		{`,"pan":`, r.PAN.s, false}, {`,"terminal_local_time":`, r.TerminalLocalTime, false},
	} {
		if dst, err = appendJSONField(dst, f.key, f.val, f.omitEmpty); err != nil {
			return nil, err
		}
	}
	dst = append(dst, `,"received_at":`...)
	if dst, err = appendJSONTime(dst, r.ReceivedAt); err != nil {
		return nil, err
	}
	if !r.AnsweredAt.IsZero() {
		dst = append(dst, `,"answered_at":`...)
		if dst, err = appendJSONTime(dst, r.AnsweredAt); err != nil {
			return nil, err
		}
	}
	return append(dst, '}'), nil
}

func appendJSONField(dst []byte, key, val string, omitEmpty bool) ([]byte, error) {
	if omitEmpty && val == "" {
		return dst, nil
	}
	dst = append(dst, key...)
	dst = append(dst, '"')
	dst, err := appendJSONText(dst, val)
	if err != nil {
		return nil, err
	}
	return append(dst, '"'), nil
}

// appendJSONText appends the inside of s's JSON string: as it is when every byte is printable ASCII that
// json.Marshal leaves alone, else what json.Marshal writes (escapes, HTML-safe forms, U+FFFD for bad UTF-8).
func appendJSONText(dst []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, err := json.Marshal(s)
			if err != nil {
				return nil, err
			}
			return append(dst, b[1:len(b)-1]...), nil
		}
	}
	return append(dst, s...), nil
}

// appendJSONTime appends t as time.Time's MarshalJSON does (RFC 3339 with nanoseconds, quoted).
func appendJSONTime(dst []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		b, err := t.MarshalJSON() // its error, for the same record json.Marshal would refuse
		if err != nil {
			return nil, err
		}
		return append(dst, b...), nil
	}
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"'), nil
}
