package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/simulators/bank"
	"github.com/railswitch/railswitch/specs"
	"go.uber.org/zap"
)

//go:embed demo/*
var demoFS embed.FS

// Test keys of the demo, all published test vectors (shared/reference): the terminals' TMK is vector B of
// unionpay-pos.md; bank A's zone keys are the X9.24 example BDK value, bank B's the TMK value again.
const (
	DemoTMK    = "70F2A84CCBC2AE8625CBB0F2C22AB923" // the terminals' TMK: published test vector B
	demoZoneA  = "0123456789ABCDEFFEDCBA9876543210"
	demoZoneB  = "70F2A84CCBC2AE8625CBB0F2C22AB923"
	demoTokens = "demo-admin-token"
)

// demoTerminals are the terminals of demo/terminals.yaml; each gets the test TMK.
var demoTerminals = []string{"22003600", "22003601", "RW000001", "10000001", "10000002", "10000003", "10000004",
	"10000005", "10000006"}

// DemoAddrs are where the demo listens, and its tunables.
type DemoAddrs struct {
	POS, Rail, Kiosk, Admin string        // terminal channels and the admin server; empty picks a free port
	Timeout                 time.Duration // how long the switch waits for a bank's answer (default 5s)
	// LoadTerminals registers that many more terminals for load tests: LT000001, LT000002, ... on the pos
	// channel, merchant 898110000000009, all sharing one stored TMK, the demo's test TMK (switch loadtest
	// --tid-prefix LT).
	LoadTerminals int
	// NoFsync journals without fsync, for benchmarks: it gives up durability, and with it the intent records
	// (server/intents.go writes them only when the journal fsyncs).
	NoFsync bool
}

// loadTMK is the key name of the load-test terminals' shared TMK: one key, not one per terminal, because every
// key added rewrites the whole key store, so thousands of keys took minutes to start.
const loadTMK = "term/load/tmk"

// loadTerminalIDs are the ids of the load-test terminals.
func loadTerminalIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("LT%06d", i+1)
	}
	return ids
}

// demoAccounts gives each simulated bank accounts for the published test cards, with PIN 123456, so that
// balances show what was debited, voided and reversed.
func demoAccounts(prefixes ...string) *bank.Rules {
	pin := sha256.Sum256([]byte("123456"))
	r := &bank.Rules{Default: bank.Default{Code: "00"}}
	for _, p := range prefixes {
		r.Accounts = append(r.Accounts, bank.Account{Prefix: p, Balance: 100_000_00, PINHash: pin[:]})
	}
	return r
}

// Demo is a running demo: the switch and its two simulated banks.
type Demo struct {
	*Switch
	Dir           string
	BankA, BankB  *bank.Server
	BankAddrs     [2]string
	bankListeners []net.Listener
}

// StartDemo writes the embedded demo configuration into dir (a new temporary folder when empty), makes a fresh
// LMK and key store holding the demo's test keys, starts two bank simulators on loopback and then the switch.
func StartDemo(ctx context.Context, dir string, addrs DemoAddrs, log *zap.Logger) (*Demo, error) {
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "switch-demo-"); err != nil {
			return nil, err
		}
	}
	d := &Demo{Dir: dir}
	hostSpec, err := specs.Get("iso87-ascii")
	if err != nil {
		return nil, err
	}
	rules := []*bank.Rules{demoAccounts("621234"), demoAccounts("401234", "411111")} // BINs of the published test cards
	for i, zone := range []string{demoZoneA, demoZoneB} {
		key, _ := hex.DecodeString(zone)
		srv, err := bank.New(bank.Config{Spec: hostSpec, Rules: rules[i], Keys: bank.Keys{ZPK: key, ZAK: key, ZMK: key}, Log: log})
		if err != nil {
			return nil, err
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		go func() { _ = srv.Serve(l) }()
		d.BankAddrs[i] = l.Addr().String()
		d.bankListeners = append(d.bankListeners, l)
		if i == 0 {
			d.BankA = srv
		} else {
			d.BankB = srv
		}
	}
	timeout := addrs.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	repl := strings.NewReplacer("{{BANK_A}}", d.BankAddrs[0], "{{BANK_B}}", d.BankAddrs[1], "{{TIMEOUT}}", timeout.String(),
		"{{POS}}", freeAddr(addrs.POS), "{{RAIL}}", freeAddr(addrs.Rail), "{{KIOSK}}", freeAddr(addrs.Kiosk), "{{ADMIN}}", freeAddr(addrs.Admin))
	entries, _ := demoFS.ReadDir("demo")
	for _, e := range entries {
		data, _ := demoFS.ReadFile("demo/" + e.Name())
		if err := os.WriteFile(filepath.Join(dir, e.Name()), []byte(repl.Replace(string(data))), 0o600); err != nil {
			return nil, err
		}
	}
	if addrs.NoFsync {
		if err := demoNoFsync(filepath.Join(dir, "config.yaml")); err != nil {
			return nil, err
		}
	}
	if err := appendLoadTerminals(filepath.Join(dir, "terminals.yaml"), addrs.LoadTerminals); err != nil {
		return nil, err
	}
	if _, err := demoKeys(ctx, dir, addrs.LoadTerminals); err != nil {
		return nil, err
	}
	if os.Getenv("SWITCH_ADMIN_TOKEN") == "" {
		_ = os.Setenv("SWITCH_ADMIN_TOKEN", demoTokens)
	}
	cfg, err := LoadConfig(filepath.Join(dir, "config.yaml"))
	if err != nil {
		return nil, err
	}
	if d.Switch, err = New(cfg, Options{Log: log}); err != nil {
		return nil, err
	}
	if err := d.Switch.Start(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// demoJournalFsync is the journal line of demo/config.yaml; demoNoFsync turns its fsync off.
const demoJournalFsync = "journal: {dir: journal, fsync: true}"

// demoNoFsync rewrites the demo configuration at path to journal without fsync. It fails when the journal line
// is not there, so a change to demo/config.yaml cannot silently leave fsync on.
func demoNoFsync(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(data)
	if !strings.Contains(s, demoJournalFsync) {
		return fmt.Errorf("demo: no line %q in %s to turn fsync off", demoJournalFsync, path)
	}
	s = strings.Replace(s, demoJournalFsync, "journal: {dir: journal, fsync: false}", 1)
	return os.WriteFile(path, []byte(s), 0o600)
}

// appendLoadTerminals adds n load-test terminals to the demo's terminals file.
func appendLoadTerminals(path string, n int) error {
	if n <= 0 {
		return nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	for _, id := range loadTerminalIDs(n) {
		fmt.Fprintf(w, "  - {id: %q, merchant: \"898110000000009\", channel: pos, tmk: %s}\n", id, loadTMK)
	}
	return w.Flush()
}

// freeAddr returns addr, or a loopback address with a port the kernel picks when addr is empty.
func freeAddr(addr string) string {
	if addr != "" {
		return addr
	}
	return "127.0.0.1:0"
}

// demoKeys makes a fresh LMK (in lmk.key, 0600, which the demo configuration names) and a key store with the
// demo's terminal and zone keys.
func demoKeys(ctx context.Context, dir string, loadTerminals int) (*hsm.LMK, error) {
	lmk, lmkHex, err := hsm.GenerateLMK(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := hsm.WriteLMKFile(filepath.Join(dir, "lmk.key"), lmkHex); err != nil {
		return nil, err
	}
	store, err := hsm.CreateKeyStore(filepath.Join(dir, "keys.json"), lmk.CheckValue())
	if err != nil {
		return nil, err
	}
	sw := hsm.NewSoftware(lmk, rand.Reader)
	add := func(name string, typ hsm.KeyType, clearHex string) error {
		k, err := importClear(ctx, sw, name, typ, clearHex)
		if err != nil {
			return fmt.Errorf("demo key %s: %w", name, err)
		}
		_, err = store.Put(k)
		return err
	}
	for _, tid := range demoTerminals {
		if err := add("term/"+tid+"/tmk", hsm.KeyTMK, DemoTMK); err != nil {
			return nil, err
		}
	}
	if loadTerminals > 0 {
		if err := add(loadTMK, hsm.KeyTMK, DemoTMK); err != nil {
			return nil, err
		}
	}
	if err := demoKioskKeys(ctx, sw, store); err != nil {
		return nil, err
	}
	for name, zone := range map[string]string{"bank-a": demoZoneA, "bank-b": demoZoneB} {
		if err := add("acq/"+name+"/zpk", hsm.KeyZPK, zone); err != nil {
			return nil, err
		}
		if err := add("acq/"+name+"/zak", hsm.KeyZAK, zone); err != nil {
			return nil, err
		}
		if err := add("acq/"+name+"/zmk", hsm.KeyZMK, zone); err != nil { // the banks' ZMK is their zone key too
			return nil, err
		}
	}
	dek, err := sw.GenerateKey(ctx, hsm.GenerateKeyRequest{Name: "saf/dek", Spec: hsm.Spec{Type: hsm.KeyDEK, Algorithm: hsm.AlgAES, Length: 32}})
	if err != nil {
		return nil, err
	}
	if _, err := store.Put(dek.Key); err != nil {
		return nil, err
	}
	return lmk, nil
}

// Static keys of the demo kiosk 20000001 (terminals.yaml): the X9.19 MAC key of unionpay-pos.md section 5 and
// the PIN key of test vector B, the keys of simulators/scenarios/07-kiosk.yaml.
const (
	demoKioskMAK = "5775204D69616F6A756E404726444311"
	demoKioskPIK = "70F2A84CCBC2AE8625CBB0F2C22AB923"
)

// demoKioskKeys puts the demo kiosk's static MAK (a TAK) and PIK (a TPK) into the key store.
func demoKioskKeys(ctx context.Context, sw *hsm.Software, store *hsm.KeyStore) error {
	for name, k := range map[string]struct {
		typ   hsm.KeyType
		clear string
	}{"term/20000001/mak": {hsm.KeyTAK, demoKioskMAK}, "term/20000001/pik": {hsm.KeyTPK, demoKioskPIK}} {
		key, err := importClear(ctx, sw, name, k.typ, k.clear)
		if err != nil {
			return fmt.Errorf("demo key %s: %w", name, err)
		}
		if _, err := store.Put(key); err != nil {
			return err
		}
	}
	return nil
}

// importClear takes a clear test key in as a two-component ceremony: the key itself and a component of 01
// bytes, whose XOR the module sets to odd parity again. Components must have odd parity, and some published
// keys do not (the X9.19 MAC vector's key has even-parity bytes), so the first component is the key with its
// parity set: DES ignores the parity bit of each byte, so the key gives the same MACs and check value.
func importClear(ctx context.Context, sw *hsm.Software, name string, typ hsm.KeyType, clearHex string) (hsm.Key, error) {
	clear, err := hex.DecodeString(clearHex)
	if err != nil {
		return hsm.Key{}, err
	}
	hsm.FixParity(clear)
	ones := make([]byte, len(clear))
	for i := range ones {
		ones[i] = 0x01
	}
	kcv, err := hsm.KCV(clear, false, 3)
	if err != nil {
		return hsm.Key{}, err
	}
	return sw.ImportComponents(ctx, hsm.ComponentsRequest{Name: name,
		Spec:       hsm.Spec{Type: typ, Algorithm: hsm.AlgTDES, Length: len(clear)},
		Components: []hsm.Component{{Value: clear}, {Value: ones}}, KCV: strings.ToUpper(hex.EncodeToString(kcv))})
}

// Close stops the switch and the banks.
func (d *Demo) Close(ctx context.Context) error {
	err := d.Switch.Stop(ctx)
	_ = d.BankA.Close()
	_ = d.BankB.Close()
	return err
}
