package loadtest

import (
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
)

// BenchmarkBuildPurchase is the load generator's work to build and frame one purchase.
func BenchmarkBuildPurchase(b *testing.B) {
	spec := hostSpec(b)
	bld, err := NewHostBuilder(DefaultPANPrefix)(spec, 1)
	if err != nil {
		b.Fatal(err)
	}
	m := codec.NewMessage(spec)
	var out []byte
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		m.Reset()
		if _, err := bld.Build(m, Purchase, now); err != nil {
			b.Fatal(err)
		}
		if out, err = m.AppendFrame(spec.Framing(), out[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildTerminalPurchase is the load generator's work to build, frame and MAC one cup-pos purchase
// of a signed-on terminal.
func BenchmarkBuildTerminalPurchase(b *testing.B) {
	spec := cupSpec(b)
	nb, err := NewTerminalBuilder(testTerminalOptions(b))
	if err != nil {
		b.Fatal(err)
	}
	bld, err := nb(spec, 0)
	if err != nil {
		b.Fatal(err)
	}
	signOn(b, bld.(*TerminalBuilder), spec)
	m := codec.NewMessage(spec)
	var out []byte
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		m.Reset()
		if _, err := bld.Build(m, Purchase, now); err != nil {
			b.Fatal(err)
		}
		if out, err = m.AppendFrame(spec.Framing(), out[:0]); err != nil {
			b.Fatal(err)
		}
		bld.(Sealer).Seal(m, out)
	}
}
