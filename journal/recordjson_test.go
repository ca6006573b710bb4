package journal

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// reflectJSON is the record's JSON form as encoding/json writes it: the reference appendJSON must match.
func reflectJSON(r Record) ([]byte, error) {
	type plain Record // drops the methods, so json.Marshal does not recurse
	return json.Marshal(struct {
		Version int    `json:"version"`
		Key     string `json:"idempotency_key"`
		plain
	}{RecordVersion, r.IdempotencyKey(), plain(r)})
}

func TestRecordJSONIsByteForByteWhatEncodingJSONWrites(t *testing.T) {
	cases := []struct {
		name string
		mod  func(r *Record)
	}{
		{"full record", func(*Record) {}},
		{"empty optional fields are omitted", func(r *Record) { r.OriginalTxnID, r.AuthCode, r.AnsweredAt = "", "", time.Time{} }},
		{"original transaction and negative amount", func(r *Record) { r.Kind, r.OriginalTxnID, r.Amount = KindReversal, "T0", -42 }},
		{"quotes, backslashes and control characters", func(r *Record) { r.Station, r.Merchant = `a"b\c`, "x\ny\t\x01" }},
		{"HTML characters", func(r *Record) { r.Bureau = "<b>&</b>" }},
		{"non-ASCII and invalid UTF-8", func(r *Record) { r.Station, r.Terminal = "北京西\u2028", "\xff\xfe" }},
		{"zero received time, local zone with nanoseconds", func(r *Record) {
			r.ReceivedAt = time.Time{}
			r.AnsweredAt = time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("CST", 8*3600))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := testRecord(7)
			tc.mod(r)
			want, err := reflectJSON(*r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
}

func TestRecordJSONRefusesWhatEncodingJSONRefuses(t *testing.T) {
	cases := []struct {
		name string
		mod  func(r *Record)
	}{
		{"year beyond 9999", func(r *Record) { r.ReceivedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"unknown kind", func(r *Record) { r.Kind = Kind(200) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := testRecord(1)
			tc.mod(r)
			if _, err := reflectJSON(*r); err == nil {
				t.Fatal("encoding/json accepted the record")
			}
			if b, err := r.MarshalJSON(); err == nil {
				t.Fatalf("MarshalJSON accepted the record: %s", b)
			}
		})
	}
}

func BenchmarkRecordJSON(b *testing.B) {
	r := testRecord(1)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = appendJSON(buf[:0], r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRecordJSONReflect(b *testing.B) {
	r := testRecord(1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reflectJSON(*r); err != nil {
			b.Fatal(err)
		}
	}
}
