package bank

import (
	"testing"

	"github.com/railswitch/railswitch/codec"
)

// BenchmarkProcessPurchase is the simulator's work for one approved purchase without the socket: decode,
// ledger, response, pack.
func BenchmarkProcessPurchase(b *testing.B) {
	spec := mustSpec(b, "iso87-ascii")
	s, err := New(Config{Spec: spec})
	if err != nil {
		b.Fatal(err)
	}
	frame, err := purchase(b, spec, testPAN, "000001", "000000000100").AppendFrame(spec.Framing(), nil)
	if err != nil {
		b.Fatal(err)
	}
	body := frame[4:]
	req, resp := codec.NewMessage(spec), codec.NewMessage(spec)
	var out []byte
	b.ReportAllocs()
	for b.Loop() {
		var ok bool
		if out, ok = s.process(req, resp, body, false, out[:0]); !ok {
			b.Fatal("no reply")
		}
	}
}
