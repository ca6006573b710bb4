package journal

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Published test PANs (reference/hsm.md and reference/unionpay-pos.md).
const (
	testPAN16 = "4111111111111111"
	testPAN13 = "4012345678909"
	testPAN18 = "123456789012345678"
)

// testRecord returns a filled record whose fields depend on i.
func testRecord(i int) *Record {
	received := time.Date(2026, 11, 27, 9, 0, 0, i*1000, time.UTC)
	return &Record{
		TxnID:             fmt.Sprintf("T%08d", i),
		Kind:              KindAuthorization,
		Posting:           i%2 == 0,
		Bureau:            "BJ",
		Station:           "BJX",
		Channel:           "pos",
		Terminal:          "12345678",
		Merchant:          "123456789012345",
		Acquirer:          "bank-a",
		MTI:               "0200",
		ProcessingCode:    "000000",
		Amount:            int64(100 + i),
		Currency:          "156",
		ResponseCode:      "00",
		AuthCode:          "123456",
		RRN:               "123456789012",
		TerminalSTAN:      "000001",
		AcquirerSTAN:      "100001",
		PAN:               MaskPAN(testPAN16),
		TerminalLocalTime: "1127090000",
		ReceivedAt:        received,
		AnsweredAt:        received.Add(80 * time.Millisecond),
	}
}

func TestMaskPANKeepsOnlyFirstSixAndLastFour(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{testPAN16, "411111******1111"},
		{testPAN13, "401234***8909"},
		{testPAN18, "123456********5678"},
		{"411111******1111", "411111******1111"}, // masking twice changes nothing
		{"123456", "******"},                     // too short to show anything
		{"", ""},
	} {
		if got := MaskPAN(tc.in).String(); got != tc.want {
			t.Errorf("MaskPAN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRecordCannotCarryAFullPAN(t *testing.T) {
	r := testRecord(1)
	r.PAN = MaskPAN(testPAN16)

	// Every way into a Record masks: the constructor, JSON decoding, and the binary decoding of a payload
	// that someone crafted with a full PAN.
	var fromJSON Record
	if err := json.Unmarshal([]byte(`{"txn_id":"x","kind":"void","pan":"`+testPAN16+`"}`), &fromJSON); err != nil {
		t.Fatal(err)
	}
	crafted := *r
	crafted.PAN = MaskedPAN{s: testPAN16} // only code inside the package can do this
	fromBinary, err := decodeRecord(appendRecord(nil, &crafted))
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]MaskedPAN{"constructor": r.PAN, "json": fromJSON.PAN, "binary": fromBinary.PAN} {
		if got.String() != "411111******1111" {
			t.Errorf("%s: PAN %q, want it masked", name, got)
		}
	}
	enc, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(enc), testPAN16) || strings.Contains(string(appendRecord(nil, r)), testPAN16) {
		t.Error("an encoding of the record holds the full PAN")
	}
}

func TestBinaryEncodingRoundTripsEveryField(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  *Record
	}{
		{"filled", testRecord(7)},
		{"reversal of an original", func() *Record {
			r := testRecord(8)
			r.Kind, r.OriginalTxnID, r.MTI, r.Amount = KindReversal, "T-original", "0400", -1
			r.AnsweredAt = time.Time{} // the acquirer never answered
			return r
		}()},
		{"minimal", &Record{TxnID: "x", Kind: KindAdvice}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeRecord(appendRecord(nil, tc.rec))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, *tc.rec) {
				t.Errorf("decoded %+v\nwant    %+v", got, *tc.rec)
			}
		})
	}
}

func TestDecodeRejectsUnknownVersionsAndDamage(t *testing.T) {
	good := appendRecord(nil, testRecord(1))
	for _, tc := range []struct {
		name    string
		payload []byte
		want    string
	}{
		{"empty", nil, "ends inside a field"},
		{"future version", append([]byte{RecordVersion + 1}, good[1:]...), "unsupported record version 2"},
		{"cut short", good[:len(good)-3], "ends inside a field"},
		{"trailing bytes", append(append([]byte(nil), good...), 0), "after the last field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeRecord(tc.payload)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestIdempotencyKeyIsTransactionAndKind(t *testing.T) {
	a, b := testRecord(1), testRecord(1)
	b.ReceivedAt = b.ReceivedAt.Add(time.Hour) // a redelivery or the other tier's copy differs elsewhere
	if a.IdempotencyKey() != b.IdempotencyKey() {
		t.Errorf("copies of one posting have keys %q and %q", a.IdempotencyKey(), b.IdempotencyKey())
	}
	b.Kind = KindVoid
	if a.IdempotencyKey() == b.IdempotencyKey() {
		t.Errorf("authorization and void of one transaction share key %q", a.IdempotencyKey())
	}
	if got := a.IdempotencyKey(); got != a.TxnID+"/authorization" {
		t.Errorf("key %q", got)
	}
}

func TestJSONFormCarriesVersionKeyAndKindName(t *testing.T) {
	r := testRecord(3)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"version": 1.0, "idempotency_key": r.IdempotencyKey(), "kind": "authorization",
		"pan": "411111******1111", "amount": 103.0} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, *r) {
		t.Errorf("JSON round trip %+v, want %+v", back, *r)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, testRecord(1)))
	f.Add(appendRecord(nil, &Record{TxnID: "x", Kind: KindVoid}))
	f.Add([]byte{1, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		again, err := decodeRecord(appendRecord(nil, &r))
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encoding a decoded record: %v, %+v != %+v", err, again, r)
		}
	})
}
