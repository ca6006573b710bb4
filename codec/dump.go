package codec

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// DumpOptions control how dumps show card data.
type DumpOptions struct {
	ShowSensitive bool // show PAN, tracks, PIN block and chip data in clear (test data only)
}

// DisplayValue returns field n as dumps and JSON show it: digits and text as UTF-8 strings, binary fields as
// uppercase hex, sensitive fields masked unless opts.ShowSensitive.
func (m *Message) DisplayValue(n int, opts DumpOptions) (string, bool) {
	v, ok := m.Value(n)
	if !ok {
		return "", false
	}
	f := &m.spec.fields[n]
	if !opts.ShowSensitive {
		switch f.meta.def.Sensitivity {
		case SensitivePAN:
			return MaskPAN(v), true
		case SensitiveTrack, SensitivePIN, SensitiveChip, SensitiveKey:
			return Hidden, true
		}
	}
	switch f.kind {
	case KindBinary:
		return string(appendHex(nil, v)), true
	case KindText:
		return textToUTF8(v, f.meta.def.Charset), true
	}
	return string(v), true
}

// SetDisplayValue is the inverse of DisplayValue (with ShowSensitive): it parses s (UTF-8 text, digits, or
// hex for binary fields) and sets field n.
func (m *Message) SetDisplayValue(n int, s string) error {
	f, ok := m.spec.Field(n)
	if !ok {
		return fieldErr(n, -1, ErrUnknownField, "not defined in spec %s", m.spec.def.Name)
	}
	switch f.Kind {
	case KindBinary:
		if !validHex([]byte(s)) {
			return fieldErr(n, -1, ErrBadValue, "binary field needs an even number of hex digits")
		}
		return m.Set(n, appendUnhex(nil, []byte(s)))
	case KindText:
		if f.Charset == CharsetGBK {
			b, err := simplifiedchinese.GBK.NewEncoder().Bytes([]byte(s))
			if err != nil {
				return fieldErr(n, -1, ErrBadValue, "text cannot be written in GBK")
			}
			return m.Set(n, b)
		}
		for _, r := range s {
			if r >= 0x80 {
				return fieldErr(n, -1, ErrBadValue, "non-ASCII text in a %s field", charsetName(f.Charset))
			}
		}
	}
	return m.SetString(n, s)
}

func charsetName(c Charset) string {
	switch c {
	case CharsetGBK:
		return "gbk"
	case CharsetEBCDIC:
		return "ebcdic"
	}
	return "ascii"
}

// textToUTF8 converts text bytes of a charset to UTF-8; bytes that do not decode are shown as \xNN.
func textToUTF8(v []byte, cs Charset) string {
	if cs == CharsetGBK {
		if u, err := simplifiedchinese.GBK.NewDecoder().Bytes(v); err == nil && utf8.Valid(u) {
			return string(u)
		}
	}
	var sb strings.Builder
	for _, c := range v {
		if c >= 0x20 && c < 0x7F {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "\\x%02X", c)
		}
	}
	return sb.String()
}

// Dump writes a readable listing of the message: MTI, TPDU and header when present, then one line per field
// with its number, name, length and value, and the subfields or TLV elements of fields that have them.
func (m *Message) Dump(w io.Writer, opts DumpOptions) error {
	var sb strings.Builder
	if t := m.TPDU(); t != nil {
		fmt.Fprintf(&sb, "tpdu   %X\n", t)
	}
	if h := m.Header(); h != nil {
		fmt.Fprintf(&sb, "header %X\n", h)
	}
	fmt.Fprintf(&sb, "mti    %s\n", m.MTI())
	for _, n := range m.Fields() {
		f := &m.spec.fields[n]
		val, _ := m.DisplayValue(n, opts)
		fmt.Fprintf(&sb, "%3d %-32s %4d  %s\n", n, truncate(f.meta.def.Name, 32), m.refs[n].n, quoteIfNeeded(val))
		hidden := !opts.ShowSensitive && f.meta.def.Sensitivity != NotSensitive
		if hidden {
			continue
		}
		if len(f.meta.def.Subfields) > 0 {
			for _, sf := range f.meta.def.Subfields {
				if sv, ok := m.Subfield(n, sf.ID); ok {
					fmt.Fprintf(&sb, "    %d.%-3d %-30s %s\n", n, sf.ID, truncate(sf.Name, 30), quoteIfNeeded(textToUTF8(sv, f.meta.def.Charset)))
				}
			}
		}
		if f.meta.def.TLV {
			v, _ := m.Value(n)
			err := ParseTLV(v, func(t TLV) error {
				fmt.Fprintf(&sb, "    tag %-6X %3d  %X\n", t.Tag, len(t.Value), t.Value)
				return nil
			})
			if err != nil {
				fmt.Fprintf(&sb, "    (%v)\n", err)
			}
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "~"
}

func quoteIfNeeded(s string) string {
	if strings.HasPrefix(s, " ") || strings.HasSuffix(s, " ") {
		return strconv.Quote(s)
	}
	return s
}

// MarshalJSON-like output of a message, with fields in numeric order:
// {"mti":"0200","tpdu":"6000030000","header":"603100311130","fields":{"3":"000000",...}}.

// AppendJSON appends the message as one JSON object.
func (m *Message) AppendJSON(dst []byte, opts DumpOptions) []byte {
	dst = append(dst, `{"mti":`...)
	dst = strconv.AppendQuote(dst, m.MTI())
	if t := m.TPDU(); t != nil {
		dst = append(dst, `,"tpdu":"`...)
		dst = appendHex(dst, t)
		dst = append(dst, '"')
	}
	if h := m.Header(); h != nil {
		dst = append(dst, `,"header":"`...)
		dst = appendHex(dst, h)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"fields":{`...)
	for i, n := range m.Fields() {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = strconv.AppendInt(dst, int64(n), 10)
		dst = append(dst, `":`...)
		v, _ := m.DisplayValue(n, opts)
		b, _ := json.Marshal(v)
		dst = append(dst, b...)
	}
	return append(dst, "}}"...)
}

// MessageJSON is the JSON form of a message that AppendJSON writes and FromJSON reads.
type MessageJSON struct {
	MTI    string            `json:"mti"`
	TPDU   string            `json:"tpdu,omitempty"`
	Header string            `json:"header,omitempty"`
	Fields map[string]string `json:"fields"`
}

// FromJSON resets m and fills it from the JSON form (values as DisplayValue shows them with ShowSensitive).
func (m *Message) FromJSON(data []byte) error {
	var j MessageJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("message JSON: %w", err)
	}
	m.Reset()
	if err := m.SetMTI(j.MTI); err != nil {
		return err
	}
	if j.TPDU != "" {
		b := []byte(j.TPDU)
		if !validHex(b) {
			return fieldErr(-2, -1, ErrBadValue, "tpdu is not hex")
		}
		if err := m.SetTPDU(appendUnhex(nil, b)); err != nil {
			return err
		}
	}
	if j.Header != "" {
		b := []byte(j.Header)
		if !validHex(b) {
			return fieldErr(-2, -1, ErrBadValue, "header is not hex")
		}
		if err := m.SetHeader(appendUnhex(nil, b)); err != nil {
			return err
		}
	}
	for k, v := range j.Fields {
		n, err := strconv.Atoi(k)
		if err != nil || n < 2 || n > MaxField {
			return fmt.Errorf("message JSON: %q is not a field number", k)
		}
		if err := m.SetDisplayValue(n, v); err != nil {
			return err
		}
	}
	return nil
}
