package flow

import (
	"context"
	"testing"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/journal"
	"github.com/railswitch/railswitch/specs"
)

func message(t *testing.T, spec, mti string, fields map[int]string) *codec.Message {
	t.Helper()
	s, err := specs.Get(spec)
	if err != nil {
		t.Fatal(err)
	}
	m := codec.NewMessage(s)
	_ = m.SetMTI(mti)
	for n, v := range fields {
		if err := m.SetString(n, v); err != nil {
			t.Fatalf("field %d: %v", n, err)
		}
	}
	return m
}

func TestRecordKindReadsProcessingCodeWhenThereIsNoField60(t *testing.T) {
	tests := []struct {
		name, spec, mti string
		fields          map[int]string
		want            journal.Kind
	}{
		{"pos purchase", "cup-pos", "0200", map[int]string{3: "000000", 60: "22000001"}, journal.KindAuthorization},
		{"pos void", "cup-pos", "0200", map[int]string{3: "200000", 60: "23000001"}, journal.KindVoid},
		{"pos refund", "cup-pos", "0220", map[int]string{3: "200000", 60: "25000001"}, journal.KindRefund},
		{"kiosk purchase", "kiosk", "0200", map[int]string{3: "000000"}, journal.KindAuthorization},
		{"kiosk refund", "kiosk", "0200", map[int]string{3: "200000", 37: "000000000001"}, journal.KindRefund},
		{"kiosk reversal", "kiosk", "0400", map[int]string{3: "000000"}, journal.KindReversal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := recordKind(message(t, tc.spec, tc.mti, tc.fields)); got != tc.want {
				t.Fatalf("kind %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMACFieldIs128OnlyWithASecondaryBitmap(t *testing.T) {
	tests := []struct {
		name   string
		fields map[int]string
		want   int
	}{
		{"primary bitmap only", map[int]string{3: "000000", 41: "20000001"}, 64},
		{"field 90 present", map[int]string{3: "200000", 90: "020000000101271200000000000000000000000000"}, 128},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := macFieldOf(message(t, "kiosk", "0200", tc.fields)); got != tc.want {
				t.Fatalf("MAC field %d, want %d", got, tc.want)
			}
		})
	}
}

func TestMemoryTxnsFindAnOriginalByTraceAndByRRN(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryTxns()
	_ = s.Put(ctx, "20000001", "", "000001", Txn{ID: "a", RRN: "100000000001"})
	_ = s.Put(ctx, "20000002", "", "000001", Txn{ID: "b", RRN: "100000000002"})
	tests := []struct {
		name   string
		get    func() (Txn, bool, error)
		wantID string
	}{
		{"by trace", func() (Txn, bool, error) { return s.Get(ctx, "20000001", "", "000001") }, "a"},
		{"by rrn", func() (Txn, bool, error) { return s.GetByRRN(ctx, "20000002", "100000000002") }, "b"},
		{"rrn of another terminal", func() (Txn, bool, error) { return s.GetByRRN(ctx, "20000001", "100000000002") }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := tc.get()
			if err != nil || ok != (tc.wantID != "") || got.ID != tc.wantID {
				t.Fatalf("got %+v ok %v err %v, want id %q", got, ok, err, tc.wantID)
			}
		})
	}
}
