//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/railswitch/railswitch/internal/faultproxy"
	"github.com/railswitch/railswitch/journal"
	"github.com/railswitch/railswitch/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Card number prefixes of the demo banks' accounts (server/demo.go): each prefix is one account, so a bank's
// balance for it moves by the sum of what was approved and not reversed on every card of the prefix.
const (
	prefixA       = "621234" // bank A
	prefixB       = "401234" // bank B
	prefixHostile = "411111" // bank B, a second account: the hostile test's attackers, left out of the sums
	loadMerchant  = "898110000000009"
)

// rig is a running switch whose bank links go through fault proxies.
type rig struct {
	t              testing.TB
	demo           *server.Demo
	sw             *server.Switch
	dir            string
	proxyA, proxyB *faultproxy.Proxy
	start          map[string]int64 // balance per account prefix at the start
	stopped        atomic.Bool
	logs           *tailCore // nil when the test gave its own logger
	// journaled is the number of approved authorizations checkJournal found.
	journaled int
}

type rigOptions struct {
	Timeout       time.Duration // the banks' timeout; default 1s
	LoadTerminals int           // LT000001...; default 8
	// BreakerCooldown is the banks' circuit-breaker cool-down (default 2s, the product's default is 30s): after
	// a run of timeouts the breaker opens and the switch declines with 91 until the cool-down lets a probe through.
	BreakerCooldown time.Duration
	Log             *zap.Logger // the switch's logger; default: warnings and errors counted, the last few kept
}

// startRig starts the demo (switch and two simulated banks), restarts its switch on the same configuration with
// both banks' endpoints pointing at fault proxies, and waits until the bank links are signed on.
func startRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = time.Second
	}
	if o.LoadTerminals == 0 {
		o.LoadTerminals = 8
	}
	if o.BreakerCooldown == 0 {
		o.BreakerCooldown = 2 * time.Second
	}
	var logs *tailCore
	if o.Log == nil {
		logs = newTailCore(t, zapcore.WarnLevel)
		o.Log = zap.New(*logs)
	}
	dir := t.TempDir()
	ctx := context.Background()
	d, err := server.StartDemo(ctx, dir, server.DemoAddrs{Timeout: o.Timeout, LoadTerminals: o.LoadTerminals}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, demo: d, dir: dir, logs: logs}
	t.Cleanup(func() {
		r.stop()
		_ = d.BankA.Close()
		_ = d.BankB.Close()
	})
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.Switch.Stop(stopCtx); err != nil {
		t.Logf("stopping the demo's own switch: %v", err)
	}
	if r.proxyA, err = faultproxy.New(d.BankAddrs[0]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.proxyA.Close() })
	if r.proxyB, err = faultproxy.New(d.BankAddrs[1]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.proxyB.Close() })
	routes := filepath.Join(dir, "routes.yaml")
	data, err := os.ReadFile(routes)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for i, p := range []*faultproxy.Proxy{r.proxyA, r.proxyB} {
		if !strings.Contains(s, d.BankAddrs[i]) {
			t.Fatalf("routes.yaml does not name bank %d at %s", i, d.BankAddrs[i])
		}
		s = strings.ReplaceAll(s, `"`+d.BankAddrs[i]+`"`, `"`+p.Addr()+`"`)
	}
	for _, name := range []string{"bank-a", "bank-b"} {
		entry := "  - name: " + name + "\n"
		if !strings.Contains(s, entry) {
			t.Fatalf("routes.yaml has no acquirer entry %q", entry)
		}
		s = strings.Replace(s, entry, entry+"    breaker: {cooldown: "+o.BreakerCooldown.String()+"}\n", 1)
	}
	if err := os.WriteFile(routes, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := server.LoadConfig(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if r.sw, err = server.New(cfg, server.Options{Log: o.Log}); err != nil {
		t.Fatal(err)
	}
	if err := r.sw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r.waitReady(15 * time.Second)
	r.start = map[string]int64{}
	for _, p := range []string{prefixA, prefixB, prefixHostile} {
		r.start[p] = r.balance(p)
	}
	return r
}

func (r *rig) stop() {
	if r.stopped.CompareAndSwap(false, true) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := r.sw.Stop(ctx); err != nil {
			r.t.Logf("stopping the switch: %v", err)
		}
	}
}

// waitReady waits until both banks have a signed-on link; it returns how long that took.
func (r *rig) waitReady(max time.Duration) time.Duration {
	r.t.Helper()
	start := time.Now()
	for ok, missing := r.sw.Ready(); !ok; ok, missing = r.sw.Ready() {
		if time.Since(start) > max {
			r.t.Fatalf("bank links not ready after %v: %v", max, missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func (r *rig) posAddr() string { return r.sw.Channels()[0].Addr() }

// balance is the bank's balance of the account of the card prefix.
func (r *rig) balance(prefix string) int64 {
	pan := luhnPAN(prefix, 1, 16)
	b := r.demo.BankA
	if prefix != prefixA {
		b = r.demo.BankB
	}
	v, ok := b.Ledger().Balance(pan)
	if !ok {
		r.t.Fatalf("no account for %s", prefix)
	}
	return v
}

// reversals is the admin API's view of the store-and-forward queue.
type reversals struct {
	Pending     []json.RawMessage `json:"pending"`
	DeadLetters []json.RawMessage `json:"dead_letters"`
}

func (r *rig) adminGet(path string) ([]byte, error) {
	// No keep-alive: an idle pooled connection would count as goroutines and fds against the baselines.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + r.sw.AdminAddr() + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, nil
}

func (r *rig) reversals() reversals {
	r.t.Helper()
	b, err := r.adminGet("/reversals")
	if err != nil {
		r.t.Fatalf("admin /reversals: %v", err)
	}
	var v reversals
	if err := json.Unmarshal(b, &v); err != nil {
		r.t.Fatalf("admin /reversals: %v: %s", err, b)
	}
	return v
}

// book collects what the terminals saw.
type book struct {
	mu       sync.Mutex
	outcomes []outcome
	errs     []error
	started  time.Time
}

func newBook() *book { return &book{started: time.Now()} }

func (b *book) add(o outcome, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.errs = append(b.errs, fmt.Errorf("%s stan %s: %w", o.TID, o.STAN, err))
		return
	}
	b.outcomes = append(b.outcomes, o)
}

func (b *book) snapshot() ([]outcome, []error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.outcomes), slices.Clone(b.errs)
}

// approved is the sum of approvals the terminals saw, per card prefix.
func (b *book) approved() map[string]int64 {
	out, _ := b.snapshot()
	m := map[string]int64{}
	for _, o := range out {
		if o.Code == "00" {
			m[o.PAN[:6]] += o.Amount
		}
	}
	return m
}

// filter returns the outcomes for which keep is true.
func (b *book) filter(keep func(outcome) bool) []outcome {
	out, _ := b.snapshot()
	var res []outcome
	for _, o := range out {
		if keep(o) {
			res = append(res, o)
		}
	}
	return res
}

// summary is a line of figures: counts per response code and latency percentiles.
func summary(out []outcome) string {
	codes := map[string]int{}
	lat := make([]time.Duration, 0, len(out))
	for _, o := range out {
		codes[o.Code]++
		lat = append(lat, o.Latency)
	}
	keys := make([]string, 0, len(codes))
	for k := range codes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d replies (", len(out))
	for i, k := range keys {
		if i > 0 {
			sb.WriteString(" ")
		}
		fmt.Fprintf(&sb, "%s:%d", k, codes[k])
	}
	fmt.Fprintf(&sb, ") latency p50 %v p99 %v max %v", pct(lat, 50), pct(lat, 99), pct(lat, 100))
	return sb.String()
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[min(i, len(s)-1)].Round(100 * time.Microsecond)
}

// trafficOptions shape the well-behaved load.
type trafficOptions struct {
	TIDs     []string      // default LT000001..LT000004
	Merchant string        // default the load terminals' merchant
	Prefixes []string      // card prefixes the terminals cycle through; default A and B
	Pause    time.Duration // between a terminal's purchases; default 5ms (0 < Pause), -1 for none
	Swipe    bool          // every other purchase swiped (track 2) instead of keyed
}

// runTraffic runs one goroutine per terminal: sign on, then purchases one after the other until ctx ends. A
// terminal whose connection breaks reconnects and signs on again. It returns when every terminal stopped.
func runTraffic(ctx context.Context, addr string, b *book, o trafficOptions) {
	if len(o.TIDs) == 0 {
		o.TIDs = []string{"LT000001", "LT000002", "LT000003", "LT000004"}
	}
	if o.Merchant == "" {
		o.Merchant = loadMerchant
	}
	if len(o.Prefixes) == 0 {
		o.Prefixes = []string{prefixA, prefixB}
	}
	if o.Pause == 0 {
		o.Pause = 5 * time.Millisecond
	}
	var wg sync.WaitGroup
	for ti, tid := range o.TIDs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			trace := new(atomic.Int64)
			var tt *term
			defer func() {
				if tt != nil {
					tt.Close()
				}
			}()
			for i := 0; ctx.Err() == nil; i++ {
				if tt == nil {
					var err error
					if tt, err = dialTerm(addr, tid, o.Merchant, trace); err == nil {
						if err = tt.signOn(); err != nil {
							tt.Close()
							tt = nil
						}
					}
					if err != nil {
						b.add(outcome{TID: tid}, err)
						sleepCtx(ctx, 100*time.Millisecond)
						continue
					}
				}
				seq := uint64(ti)*1_000_000 + uint64(i)
				pan := luhnPAN(o.Prefixes[i%len(o.Prefixes)], seq*7919+12345, 16)
				c := card{PAN: pan}
				if o.Swipe && i%2 == 1 {
					c.Track2 = pan + "=" + "2912" + "101" + "0000000"
				}
				amount := int64(1 + (i*37)%99) // small: the demo accounts hold 100,000.00 each
				res, err := tt.purchase(c, amount)
				b.add(res, err)
				if err != nil {
					tt.Close()
					tt = nil
				}
				if o.Pause > 0 {
					sleepCtx(ctx, o.Pause)
				}
			}
		}()
	}
	wg.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// checkMoney asserts the money invariants after a run, and stops the switch to read its journal:
//   - every reversal the switch queued was acknowledged by the bank (queue empty, no dead letters);
//   - each bank's balance moved by exactly what the terminals saw approved, so every request that was sent but
//     not answered (or answered but not delivered as an approval) was reversed, and nothing was applied twice;
//   - every approval a terminal saw is in the journal as an approved authorization of that terminal and STAN,
//     with the RRN and amount the terminal saw, once.
//
// prefixes are the accounts checked (the hostile test leaves its attackers' account out). It returns how long
// the reversal queue took to empty.
func (r *rig) checkMoney(b *book, prefixes ...string) time.Duration {
	r.t.Helper()
	if len(prefixes) == 0 {
		prefixes = []string{prefixA, prefixB}
	}
	start := time.Now()
	var rv reversals
	for rv = r.reversals(); len(rv.Pending) > 0; rv = r.reversals() {
		if time.Since(start) > 60*time.Second {
			r.t.Fatalf("%d reversals still pending after 60s", len(rv.Pending))
		}
		time.Sleep(50 * time.Millisecond)
	}
	drained := time.Since(start)
	if len(rv.DeadLetters) > 0 {
		r.t.Errorf("%d reversals in dead letters (never acknowledged): %s", len(rv.DeadLetters), rv.DeadLetters[0])
	}
	want := b.approved()
	// Late originals held by a network fault may still be on their way; give the bank a moment to settle.
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range prefixes {
		for {
			moved := r.start[p] - r.balance(p)
			if moved == want[p] {
				break
			}
			if time.Now().After(deadline) {
				r.t.Errorf("account %s: the bank's balance moved by %d, the terminals saw %d approved (a difference of %d)",
					p, moved, want[p], moved-want[p])
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	r.stop()
	r.checkJournal(b)
	return drained
}

// checkJournal asserts that every approval a terminal saw is journaled once, as an approved authorization.
func (r *rig) checkJournal(b *book) {
	r.t.Helper()
	j, err := journal.Open(journal.Options{Dir: filepath.Join(r.dir, "journal")})
	if err != nil {
		r.t.Fatalf("opening the journal: %v", err)
	}
	defer j.Close()
	rd, err := j.NewReader(1)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rd.Close()
	type key struct{ tid, stan string }
	approved := map[key][]journal.Record{}
	n := 0
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			r.t.Fatalf("reading the journal: %v", err)
		}
		n++
		if e.Record.Kind == journal.KindAuthorization && e.Record.ResponseCode == "00" {
			k := key{e.Record.Terminal, e.Record.TerminalSTAN}
			approved[k] = append(approved[k], e.Record)
		}
	}
	out, _ := b.snapshot()
	missing, dup := 0, 0
	for _, o := range out {
		if o.Code != "00" {
			continue
		}
		recs := approved[key{o.TID, o.STAN}]
		if len(recs) == 0 || recs[0].RRN != o.RRN || recs[0].Amount != o.Amount {
			if missing < 5 {
				r.t.Errorf("approval %s stan %s rrn %s amount %d: journal has %+v", o.TID, o.STAN, o.RRN, o.Amount, recs)
			}
			missing++
		}
		if len(recs) > 1 {
			dup++
		}
	}
	if missing > 0 || dup > 0 {
		r.t.Errorf("%d approvals the terminals saw are not in the journal, %d journaled more than once", missing, dup)
	}
	r.journaled = len(approved)
	r.t.Logf("journal: %d records, %d of them approved authorizations; every approval a terminal saw is among them, once", n, len(approved))
}

// procFDs counts this process's open file descriptors.
func procFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// settle runs the garbage collector and returns the goroutine count and heap in use.
func settle() (goroutines int, heapInuse uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.HeapInuse
}

// waitBaseline polls until goroutines and fds are back within slack of the baseline; it returns what it saw.
func waitBaseline(t testing.TB, baseG, baseFD, slack int, max time.Duration) (g, fd int, took time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		g, _ = settle()
		fd = procFDs()
		if g <= baseG+slack && fd <= baseFD+slack {
			return g, fd, time.Since(start)
		}
		if time.Since(start) > max {
			t.Errorf("after %v: %d goroutines (baseline %d), %d fds (baseline %d); goroutines by creator:\n%s", max, g, baseG, fd, baseFD, goroutinesByCreator())
			return g, fd, time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// goroutinesByCreator counts the goroutines by the function that started them and where they wait.
func goroutinesByCreator() string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	counts := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(g, "\n")
		top, creator := "", ""
		if len(lines) > 1 {
			top = lines[1]
		}
		for i, l := range lines {
			if strings.HasPrefix(l, "created by ") && i+1 < len(lines) {
				creator = strings.TrimSpace(lines[i+1])
			}
		}
		counts[creator+" | "+top]++
	}
	var sb strings.Builder
	for k, n := range counts {
		fmt.Fprintf(&sb, "%4d %s\n", n, k)
	}
	return sb.String()
}

// tailCore is a zap core for the fault tests: it counts entries per level and keeps the last few, which the test
// prints when it fails. (zaptest would keep every line of a 60 s hostile run in memory.)
type tailCore struct {
	zapcore.LevelEnabler
	enc  zapcore.Encoder
	mu   *sync.Mutex
	tail *[]string
	n    *[zapcore.FatalLevel + 2]int
}

func newTailCore(t testing.TB, lvl zapcore.Level) *tailCore {
	c := &tailCore{LevelEnabler: lvl, enc: zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
		mu: new(sync.Mutex), tail: new([]string), n: new([zapcore.FatalLevel + 2]int)}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		t.Logf("switch log: %d warnings, %d errors", c.n[zapcore.WarnLevel+1], c.n[zapcore.ErrorLevel+1])
		if t.Failed() {
			for _, l := range *c.tail {
				t.Log(l)
			}
		}
	})
	return c
}

func (c tailCore) With(f []zapcore.Field) zapcore.Core {
	enc := c.enc.Clone()
	for _, x := range f {
		x.AddTo(enc)
	}
	c.enc = enc
	return c
}

func (c tailCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c tailCore) Write(e zapcore.Entry, f []zapcore.Field) error {
	buf, err := c.enc.EncodeEntry(e, f)
	if err != nil {
		return err
	}
	line := strings.TrimRight(buf.String(), "\n")
	buf.Free()
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := int(e.Level) + 1; i >= 0 && i < len(c.n) {
		c.n[i]++
	}
	*c.tail = append(*c.tail, line)
	if len(*c.tail) > 40 {
		*c.tail = (*c.tail)[1:]
	}
	return nil
}

func (c tailCore) Sync() error { return nil }

// lines returns the kept lines that contain sub.
func (c *tailCore) lines(sub string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range *c.tail {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}
