package server

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/simulators/bank"
	"github.com/railswitch/railswitch/specs"
	"go.uber.org/zap/zaptest"
)

// posTerminals are demo terminals of the pos channel without limits: id and merchant.
var posTerminals = [][2]string{{"22003600", "104512541110001"}, {"10000001", "898110000000001"},
	{"10000002", "898110000000001"}, {"10000003", "898110000000001"}}

// startBank starts one more simulated bank with the demo's zone key zoneHex and accounts for the prefixes.
func startBank(t *testing.T, zoneHex string, prefixes ...string) (*bank.Server, string) {
	t.Helper()
	spec, _ := specs.Get("iso87-ascii")
	key, _ := hex.DecodeString(zoneHex)
	srv, err := bank.New(bank.Config{Spec: spec, Rules: demoAccounts(prefixes...), Keys: bank.Keys{ZPK: key, ZAK: key, ZMK: key},
		Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return srv, l.Addr().String()
}

// editFile rewrites a file of the demo's folder, replacing old with new (which must occur).
func editFile(t *testing.T, dir, name, old, new string) {
	t.Helper()
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s has no %q", name, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// restartSwitch stops the demo's switch and starts a new one on the (edited) configuration of its folder; the
// banks keep running.
func restartSwitch(t *testing.T, d *Demo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Switch.Stop(ctx); err != nil {
		t.Logf("stop: %v", err)
	}
	cfg, err := LoadConfig(filepath.Join(d.Dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Switch, err = New(cfg, Options{Log: zaptest.NewLogger(t)}); err != nil {
		t.Fatal(err)
	}
	if err := d.Switch.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bank links", 5*time.Second, func() bool { ok, _ := d.Ready(); return ok })
}

// demoWithTwoBankAEndpoints is the demo with bank A on two endpoints, a1 (the demo's BankA) and a2 (returned).
func demoWithTwoBankAEndpoints(t *testing.T) (*Demo, *bank.Server) {
	t.Helper()
	d := startTestDemo(t)
	a2, addr := startBank(t, demoZoneA, cupCard)
	editFile(t, d.Dir, "routes.yaml", "      - {name: a1, address: \""+d.BankAddrs[0]+"\", connections: 2}\n",
		"      - {name: a1, address: \""+d.BankAddrs[0]+"\", connections: 2}\n"+
			"      - {name: a2, address: \""+addr+"\", connections: 2}\n")
	restartSwitch(t, d)
	return d, a2
}

func balance(b *bank.Server) int64 {
	v, _ := b.Ledger().Balance(cupCard)
	return v
}

func TestBankAEndpointsBothCarryTraffic(t *testing.T) {
	d, a2 := demoWithTwoBankAEndpoints(t)
	a1Before, a2Before := balance(d.BankA), balance(a2)
	tt := dialTerminal(t, d.Channels()[0].Addr(), "22003600", "104512541110001")
	tt.signOn()
	for i := 0; i < 8; i++ {
		if rep := tt.purchase(cupCard, 100); rep.String(39) != "00" {
			t.Fatalf("purchase %d answered %q", i, rep.String(39))
		}
	}
	spent1, spent2 := a1Before-balance(d.BankA), a2Before-balance(a2)
	if spent1 == 0 || spent2 == 0 || spent1+spent2 != 800 {
		t.Fatalf("endpoint a1 took %d, a2 %d of 800: want both some, 800 in all", spent1, spent2)
	}
}

// traffic is terminals purchasing in a loop, each in its own goroutine, on connections the test dialed.
type traffic struct {
	terms      []*testTerminal
	ok, failed atomic.Int64
	codes      sync.Map // tid/trace -> response code of each purchase not approved
	wg         sync.WaitGroup
	stop       chan struct{}
	stopOnce   sync.Once
	after      int
}

// runTraffic signs the terminals on and has each purchase 100 again and again until wait is called, and then
// `after` more times. A terminal's failure (no reply, bad MAC) fails the test and ends its goroutine.
func runTraffic(t *testing.T, addr string, terms [][2]string, after int) *traffic {
	t.Helper()
	tr := &traffic{stop: make(chan struct{}), after: after}
	for _, term := range terms {
		tt := dialTerminal(t, addr, term[0], term[1])
		tt.signOn()
		tt.fatalf = func(format string, args ...any) { t.Errorf(tt.tid+": "+format, args...); runtime.Goexit() }
		tr.terms = append(tr.terms, tt)
	}
	for _, tt := range tr.terms {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for n := 0; n < tr.after; {
				select {
				case <-tr.stop:
					n++
				default:
				}
				if rc := tt.purchase(cupCard, 100).String(39); rc == "00" {
					tr.ok.Add(1)
				} else {
					tr.failed.Add(1)
					tr.codes.Store(tt.tid+"/"+strconv.Itoa(tt.trace), rc)
				}
			}
		}()
	}
	t.Cleanup(tr.wait) // also when the test fails before it waits
	return tr
}

// wait stops the traffic and waits for the terminals' last purchases; then they belong to the test again.
func (tr *traffic) wait() {
	tr.stopOnce.Do(func() { close(tr.stop) })
	tr.wg.Wait()
	for _, tt := range tr.terms {
		tt.fatalf = tt.t.Fatalf
	}
}

// report fails the test when more than maxFailed purchases were not approved, listing them.
func (tr *traffic) report(t *testing.T, maxFailed int64) {
	t.Helper()
	t.Logf("%d purchases approved, %d not", tr.ok.Load(), tr.failed.Load())
	if n := tr.failed.Load(); n > maxFailed {
		tr.codes.Range(func(k, v any) bool { t.Logf("%s answered %s", k, v); return true })
		t.Fatalf("%d purchases not approved (%d approved); at most %d may be", n, tr.ok.Load(), maxFailed)
	}
}

// TestFailoverWhenABankAEndpointDies: bank A runs on two endpoints; one dies under traffic from several
// terminals. Only requests in flight at that moment may fail (one per terminal at most); the rest, and every
// purchase after, are approved through the other endpoint.
func TestFailoverWhenABankAEndpointDies(t *testing.T) {
	d, a2 := demoWithTwoBankAEndpoints(t)
	a2Before := balance(a2)
	tr := runTraffic(t, d.Channels()[0].Addr(), posTerminals, 10)
	waitFor(t, "traffic", 5*time.Second, func() bool { return tr.ok.Load() >= 20 })
	_ = d.BankA.Close()
	tr.wait()
	tr.report(t, int64(len(posTerminals)))
	if spent, min := a2Before-balance(a2), int64(9*len(posTerminals)*100); spent < min {
		t.Fatalf("endpoint a2 took %d; after a1 died it should have taken at least %d", spent, min)
	}
	for _, tt := range tr.terms {
		if rc := tt.purchase(cupCard, 100).String(39); rc != "00" {
			t.Fatalf("%s after the failover: %q", tt.tid, rc)
		}
	}
}

// TestRouteReloadUnderTrafficMovesTrafficWithoutDroppingConnections: while terminals purchase, bins.csv is
// rewritten to send UnionPay cards to bank B and the routes are reloaded; the terminals keep their TCP
// connections, nothing fails, and their next purchases go to bank B.
func TestRouteReloadUnderTrafficMovesTrafficWithoutDroppingConnections(t *testing.T) {
	d := startTestDemo(t)
	tr := runTraffic(t, d.Channels()[0].Addr(), posTerminals, 5)
	waitFor(t, "traffic", 5*time.Second, func() bool { return tr.ok.Load() >= 10 })
	editFile(t, d.Dir, "bins.csv", "621000,629999,bank-a", "621000,629999,bank-b")
	if _, err := d.ReloadRoutes(); err != nil {
		t.Fatal(err)
	}
	tr.wait()
	tr.report(t, 0)
	before := balance(d.BankA)
	for _, tt := range tr.terms { // the same connections
		if rc := tt.purchase(cupCard, 100).String(39); rc != "00" {
			t.Fatalf("%s after the reload: %q", tt.tid, rc)
		}
	}
	if after := balance(d.BankA); after != before {
		t.Fatalf("bank A still debited after the reload: %d -> %d", before, after)
	}
	if st := d.Channels()[0].Stats(); st.Accepted != uint64(len(tr.terms)) || st.Open != uint64(len(tr.terms)) {
		t.Fatalf("pos channel accepted %d connections and has %d open, want %d and %d", st.Accepted, st.Open,
			len(tr.terms), len(tr.terms))
	}
}

func TestTerminalOverItsRateLimitIsRefusedWithTheConfiguredCode(t *testing.T) {
	d := startTestDemo(t)
	tt := dialTerminal(t, d.Channels()[0].Addr(), "22003601", "104512541110001") // demo limits: 1/s, burst 1, code 65
	tt.signOn()
	if rc := tt.purchase(cupCard, 100).String(39); rc != "00" {
		t.Fatalf("first purchase answered %q", rc)
	}
	before := balance(d.BankA)
	if rc := tt.purchase(cupCard, 100).String(39); rc != "65" {
		t.Fatalf("second purchase within the second answered %q, want 65", rc)
	}
	if after := balance(d.BankA); after != before {
		t.Fatal("a refused purchase reached the bank")
	}
}

// TestBankReplyWithWrongMACIsDeclinedAndReversed: an approval whose MAC does not verify is not trusted: the
// terminal gets 96 and the approval is reversed at the bank.
func TestBankReplyWithWrongMACIsDeclinedAndReversed(t *testing.T) {
	d := startTestDemo(t)
	before := balance(d.BankA)
	tt := dialTerminal(t, d.Channels()[0].Addr(), "22003600", "104512541110001")
	tt.signOn()
	if err := d.BankA.SetFaults(bank.Faults{WrongMAC: 1}); err != nil {
		t.Fatal(err)
	}
	rep := tt.purchase(cupCard, 700)
	_ = d.BankA.SetFaults(bank.Faults{})
	if rc := rep.String(39); rc != "96" {
		t.Fatalf("approval with a wrong MAC answered %q, want 96", rc)
	}
	waitFor(t, "the reversal to be acknowledged", 10*time.Second, func() bool {
		return balance(d.BankA) == before && len(d.queue.Pending()) == 0
	})
	if n := len(d.queue.DeadLetters()); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}

// TestMalformedFramesFromOneTerminalLeaveOthersTransacting: one connection sends frames that decode only
// partly (answered 30) and then one with no MTI (its connection is closed), while several terminals purchase
// on their own connections: all of their purchases are approved.
func TestMalformedFramesFromOneTerminalLeaveOthersTransacting(t *testing.T) {
	d := startTestDemo(t)
	addr := d.Channels()[0].Addr()
	tr := runTraffic(t, addr, posTerminals[1:], 5)
	bad := dialTerminal(t, addr, "22003600", "104512541110001")
	for i := 0; i < 5; i++ {
		if rc := bad.sendMalformed(t); rc != "30" {
			t.Errorf("malformed frame %d answered %q, want 30", i, rc)
		}
	}
	_ = bad.conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = bad.conn.Write([]byte{0x00, 0x04, 0xde, 0xad, 0xbe, 0xef}) // no TPDU, header or MTI
	if _, err := bad.r.ReadByte(); err == nil {
		t.Error("an undecodable frame got an answer; want the connection closed")
	}
	tr.wait()
	tr.report(t, 0)
	if n := tr.ok.Load(); n < int64(5*len(tr.terms)) {
		t.Fatalf("good terminals: %d approved", n)
	}
}

// sendMalformed sends a sign-on whose field 60 length prefix is impossible and returns the reply's 39.
func (tt *testTerminal) sendMalformed(t *testing.T) string {
	m := tt.newMessage("0800")
	_ = m.SetString(60, "00000000003")
	frame, _ := m.AppendFrame(tt.spec.Framing(), nil)
	frame[len(frame)-7] = 0x09 // the LLL prefix of 60 becomes 0911
	_ = tt.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := tt.conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	var hdr [2]byte
	if _, err := io.ReadFull(tt.r, hdr[:]); err != nil {
		t.Fatalf("no reply to a malformed frame: %v", err)
	}
	body := make([]byte, int(hdr[0])<<8|int(hdr[1]))
	if _, err := io.ReadFull(tt.r, body); err != nil {
		t.Fatal(err)
	}
	rep := codec.NewMessage(tt.spec)
	if err := rep.UnpackFrame(tt.spec.Framing(), body); err != nil {
		t.Fatalf("reply does not decode: %v", err)
	}
	return rep.String(39)
}
