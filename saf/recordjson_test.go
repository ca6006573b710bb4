package saf

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestMarshalRecordMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 30, 0, 123456789, time.UTC)
	paris := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	full := &Entry{ID: "n1-abc-1", Seq: 42, Acquirer: "bank-a", Link: "bank-a/p/0", TxnID: "t-9", Kind: KindReversal,
		MTI: "0400", Node: "n1", Queued: at, Since: paris, Attempts: 3, Sent: 5, Next: at.Add(time.Second),
		LastError: "timeout", Dead: true, Sealed: []byte{0, 1, 2, 0xff, 0xfe}}
	minimal := &Entry{ID: "x", Acquirer: "b", TxnID: "t", Kind: KindAdvice, MTI: "0220", Sealed: []byte("m")}
	cases := []struct {
		name string
		r    fileRecord
	}{
		{"put with every field", fileRecord{Op: opPut, E: full}},
		{"put with zero times and omitted fields", fileRecord{Op: opPut, E: minimal}},
		{"set without message", fileRecord{Op: opSet, E: &Entry{ID: "x", Acquirer: "b"}}},
		{"del", fileRecord{Op: opDel, ID: "n1-abc-1"}},
		{"escaped strings fall back", fileRecord{Op: opPut, E: &Entry{ID: "a\"<&>\\\n", Acquirer: "bänk", LastError: "é\x7f", Sealed: []byte("m")}}},
		{"odd zone offset", fileRecord{Op: opPut, E: &Entry{ID: "z", Queued: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 5*3600+1800)), Sealed: []byte("m")}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want, werr := json.Marshal(&tc.r)
			got, err := marshalRecord(&tc.r)
			if (err != nil) != (werr != nil) || !bytes.Equal(got, want) {
				t.Fatalf("marshalRecord = %s, %v\nwant          %s, %v", got, err, want, werr)
			}
		})
	}
}

func TestMarshalRecordRejectsWhatEncodingJSONRejects(t *testing.T) {
	cases := []struct {
		name string
		at   time.Time
	}{
		{"year after 9999", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"negative year", time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"zone offset of 24h", time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := marshalRecord(&fileRecord{Op: opPut, E: &Entry{ID: "x", Next: tc.at, Sealed: []byte("m")}}); err == nil {
				t.Fatal("marshalRecord accepted a time json.Marshal rejects")
			}
		})
	}
}

func BenchmarkMarshalRecord(b *testing.B) {
	now := time.Now()
	r := &fileRecord{Op: opPut, E: &Entry{ID: "n1-mabc-12", Acquirer: "bank-a", Link: "bank-a/p/0", TxnID: "0000123456",
		Kind: KindReversal, Queued: now, Since: now, Sealed: make([]byte, 180)}}
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := marshalRecord(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
