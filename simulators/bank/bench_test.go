package bank

import (
	"bytes"
	"testing"

	"github.com/railswitch/railswitch/codec"
)

// BenchmarkProcessPurchase is the simulator's work for one approved purchase without the socket: decode,
// ledger (a new transaction each time, so it is remembered and the oldest forgotten), response, pack.
func BenchmarkProcessPurchase(b *testing.B) {
	spec := mustSpec(b, "iso87-ascii")
	s, err := New(Config{Spec: spec})
	if err != nil {
		b.Fatal(err)
	}
	frame, err := purchase(b, spec, testPAN, "987650", "000000000100").AppendFrame(spec.Framing(), nil)
	if err != nil {
		b.Fatal(err)
	}
	body := frame[4:]
	at := bytes.Index(body, []byte("987650")) // the STAN: no other field holds these digits
	req, resp := codec.NewMessage(spec), codec.NewMessage(spec)
	var out []byte
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n = n%999999 + 1
		for i, v := at+5, n; i >= at; i, v = i-1, v/10 {
			body[i] = byte('0' + v%10) // a new STAN: a new transaction
		}
		var ok bool
		if out, ok = s.process(req, resp, body, false, out[:0]); !ok {
			b.Fatal("no reply")
		}
	}
}
