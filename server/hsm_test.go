package server

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/hsm/payshield"
	"github.com/railswitch/railswitch/internal/faultproxy"
	"go.uber.org/zap/zaptest"
)

// TestNetworkedHSMCarriesPurchasesAndItsOutageDeclines: with `hsm: {type: payshield}` every PIN translation,
// MAC and sign-on key goes to the networked HSM; while the HSM is down the terminal gets a clear decline (no
// approval without the MAC checks) and no request leaves for the bank; once it is back, purchases go through.
func TestNetworkedHSMCarriesPurchasesAndItsOutageDeclines(t *testing.T) {
	log := zaptest.NewLogger(t)
	dir := t.TempDir()
	d, err := StartDemo(context.Background(), dir, DemoAddrs{}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.BankA.Close(); _ = d.BankB.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Switch.Stop(ctx); err != nil {
		t.Logf("stop: %v", err)
	}

	lmk, err := hsm.LoadLMKFile(filepath.Join(dir, "lmk.key"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hsmServer := &payshield.Server{Module: hsm.NewSoftware(lmk, nil)}
	go func() { _ = hsmServer.Serve(ln) }()
	defer hsmServer.Close()
	// The switch reaches the HSM through a fault proxy, which takes it down and brings it back.
	proxy, err := faultproxy.New(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	addr := proxy.Addr()

	cfgPath := filepath.Join(dir, "config.yaml")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, []byte("hsm: {type: payshield, address: \""+addr+"\", timeout: 300ms}\n")...)
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sw := startFromDir(t, dir, log)
	if _, ok := sw.module.(*payshield.Client); !ok {
		t.Fatalf("module is %T, want the payShield client", sw.module)
	}
	waitFor(t, "bank links", 10*time.Second, func() bool { ok, _ := sw.Ready(); return ok })

	tt := dialTerminal(t, sw.Channels()[0].Addr(), "22003600", "104512541110001")
	tt.signOn()
	if rep := tt.purchase(cupCard, 1200); rep.String(39) != "00" {
		t.Fatalf("purchase through the networked HSM answered %q, want 00", rep.String(39))
	}
	before, _ := d.BankA.Ledger().Balance(cupCard)

	proxy.Cut() // the HSM goes down: its connections are reset and new ones too
	for _, amount := range []int64{1300, 1301, 1302} {
		if rc := tt.purchase(cupCard, amount).String(39); rc != "96" {
			t.Fatalf("purchase of %d with the HSM down answered %q, want 96 (not A0: the terminal's keys are fine)", amount, rc)
		}
	}
	if after, _ := d.BankA.Ledger().Balance(cupCard); after != before {
		t.Fatalf("the bank's balance moved from %d to %d while the HSM was down", before, after)
	}

	proxy.Restore()
	waitFor(t, "a purchase after the HSM is back", 10*time.Second, func() bool {
		return tt.purchase(cupCard, 1400).String(39) == "00"
	})
	if after, _ := d.BankA.Ledger().Balance(cupCard); after != before-1400 {
		t.Fatalf("after the HSM was back the bank's balance moved from %d to %d, want by 1400", before, after)
	}
}
