package payshield

import (
	"context"
	"testing"

	"github.com/railswitch/railswitch/hsm"
)

// purchase is one purchase's worth of HSM commands: verify the terminal's UnionPay MAC (120 bytes),
// translate the PIN block from the terminal's TPK to the bank's ZPK, generate the bank link's X9.19 MAC
// (200 bytes).
type purchase struct {
	tak, tpk, zpk, zak hsm.Key
	mab, bankMsg       []byte
	termMAC, pinBlock  []byte
}

func newPurchase(b *testing.B, f *fixture) purchase {
	p := purchase{tak: f.tak, tpk: f.tpk, zpk: f.zpkB, mab: make([]byte, 120), bankMsg: make([]byte, 200)}
	p.zak = importClear(b, f.sw, "acq/b/zak", hsm.Spec{Type: hsm.KeyZAK, Algorithm: hsm.AlgTDES, Length: 16}, keyA)
	for i := range p.mab {
		p.mab[i] = byte(i)
	}
	var err error
	if p.termMAC, err = f.sw.GenerateMAC(context.Background(), p.tak, hsm.MACCupECB, p.mab); err != nil {
		b.Fatal(err)
	}
	tpk, _ := hsm.NewTDESCipher(unhex(b, keyA))
	if p.pinBlock, err = hsm.EncryptPINBlock(tpk, hsm.ISO0, pin, pan, nil); err != nil {
		b.Fatal(err)
	}
	return p
}

func (p purchase) run(ctx context.Context, m hsm.Module) error {
	if err := m.VerifyMAC(ctx, p.tak, hsm.MACCupECB, p.mab, p.termMAC); err != nil {
		return err
	}
	if _, err := m.TranslatePIN(ctx, hsm.PINTranslation{Source: p.tpk, Dest: p.zpk, SourceFormat: hsm.ISO0, DestFormat: hsm.ISO0, PAN: pan, Block: p.pinBlock}); err != nil {
		return err
	}
	_, err := m.GenerateMAC(ctx, p.zak, hsm.MACX919, p.bankMsg)
	return err
}

// BenchmarkPayShieldPurchase sends one purchase's commands, one after the other, through the client to
// `switch hsm serve` over loopback: the latency a transaction sees.
func BenchmarkPayShieldPurchase(b *testing.B) {
	f := newFixture(b, Config{}, 0, nil)
	p := newPurchase(b, f)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := p.run(ctx, f.cl); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPayShieldPurchaseParallel runs purchases from many goroutines, so commands pipeline on the
// pool's connections: the throughput the switch gets from one HSM.
func BenchmarkPayShieldPurchaseParallel(b *testing.B) {
	f := newFixture(b, Config{Conns: 2, MaxInFlight: 32}, 0, nil)
	p := newPurchase(b, f)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := p.run(ctx, f.cl); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSoftwarePurchase runs the same commands on the software module directly.
func BenchmarkSoftwarePurchase(b *testing.B) {
	f := newFixture(b, Config{}, 0, nil)
	p := newPurchase(b, f)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := p.run(ctx, f.sw); err != nil {
			b.Fatal(err)
		}
	}
}
