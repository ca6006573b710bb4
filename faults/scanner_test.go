//go:build faults

package faults

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/internal/faultproxy"
	"github.com/railswitch/railswitch/simulators/bank"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Zone PIN keys of the demo banks (server/demo.go): published test values, the X9.24 example BDK for bank A and
// test vector B of unionpay-pos.md for bank B. The scanner looks for the PIN blocks the switch sends them too.
const (
	zoneA = "0123456789ABCDEFFEDCBA9876543210"
	zoneB = "70F2A84CCBC2AE8625CBB0F2C22AB923"
)

// needles is a set of byte strings searched for, grouped by length so that a scan is one pass per length.
type needles struct {
	byLen map[int]map[string]string // length -> needle -> what it is
}

func newNeedles() *needles { return &needles{byLen: map[int]map[string]string{}} }

func (n *needles) add(what string, b []byte) {
	if len(b) < 6 {
		return
	}
	m := n.byLen[len(b)]
	if m == nil {
		m = map[string]string{}
		n.byLen[len(b)] = m
	}
	m[string(b)] = what
}

// addEncodings adds b as it is, as hex (upper and lower case) and as base64 at each of the three alignments
// it can have inside a longer encoded value.
func (n *needles) addEncodings(what string, b []byte) {
	n.add(what, b)
	h := hex.EncodeToString(b)
	n.add(what+" (hex)", []byte(h))
	n.add(what+" (HEX)", []byte(strings.ToUpper(h)))
	for k := range 3 {
		enc := base64.StdEncoding.EncodeToString(append(make([]byte, k), b...))
		// Characters that also encode the k filler bytes, and the last, partial group, depend on the neighbours.
		from := (k*8 + 5) / 6
		to := (k + len(b)) / 3 * 4
		if to-from >= 8 {
			n.add(what+" (base64)", []byte(enc[from:to]))
		}
	}
}

// bcdVariants packs digits (and 'D' or '=' as the separator nibble) as BCD: as is when even, else with a 0 or F
// nibble on either side.
func bcdVariants(s string) [][]byte {
	s = strings.ReplaceAll(s, "=", "D")
	if len(s)%2 == 0 {
		return [][]byte{packBCD(s)}
	}
	return [][]byte{packBCD("0" + s), packBCD(s + "0"), packBCD(s + "F"), packBCD("F" + s)}
}

func packBCD(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// addCard adds every form of a card's PAN, track 2 and PIN blocks.
func (n *needles) addCard(o outcome, track2 string) error {
	n.addEncodings("PAN", []byte(o.PAN))
	for _, b := range bcdVariants(o.PAN) {
		n.addEncodings("PAN (BCD)", b)
	}
	if track2 != "" {
		n.addEncodings("track 2", []byte(track2))
		d := strings.ReplaceAll(track2, "=", "D")
		n.add("track 2 (BCD hex)", []byte(d))
		n.add("track 2 (BCD hex)", []byte(strings.ToLower(d)))
		for _, b := range bcdVariants(track2) {
			n.addEncodings("track 2 (BCD)", b)
		}
	}
	if len(o.PINBlock) > 0 {
		n.addEncodings("PIN block under the PIK", o.PINBlock)
	}
	clearBlock, err := hsm.EncodePINBlock(hsm.ISO0, "123456", o.PAN, nil)
	if err != nil {
		return err
	}
	n.addEncodings("clear PIN block", clearBlock)
	zone := zoneB
	if strings.HasPrefix(o.PAN, prefixA) {
		zone = zoneA
	}
	zk, _ := hex.DecodeString(zone)
	zc, err := hsm.NewTDESCipher(zk)
	if err != nil {
		return err
	}
	zb, err := hsm.EncryptPINBlock(zc, hsm.ISO0, "123456", o.PAN, nil)
	if err != nil {
		return err
	}
	n.addEncodings("PIN block under the ZPK", zb)
	return nil
}

func (n *needles) count() int {
	c := 0
	for _, m := range n.byLen {
		c += len(m)
	}
	return c
}

// scan returns what was found in data, at most a few findings.
func (n *needles) scan(data []byte) []string {
	var found []string
	lens := make([]int, 0, len(n.byLen))
	for l := range n.byLen {
		lens = append(lens, l)
	}
	sort.Ints(lens)
	for _, l := range lens {
		m := n.byLen[l]
		for i := 0; i+l <= len(data); i++ {
			if what, ok := m[string(data[i:i+l])]; ok {
				found = append(found, what+" at offset "+strconv.Itoa(i)+": "+snippet(data, i, l))
				if len(found) >= 5 {
					return found
				}
			}
		}
	}
	return found
}

// snippet is the neighbourhood of a finding with the finding itself masked, for the test's message.
func snippet(data []byte, i, l int) string {
	from, to := max(0, i-40), min(len(data), i+l+40)
	s := bytes.Clone(data[from:to])
	for j := i - from; j < i-from+l; j++ {
		s[j] = '#'
	}
	return strings.ToValidUTF8(string(s), "?")
}

// lockedBuffer is a zap sink that keeps everything.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Sync() error { return nil }

func (l *lockedBuffer) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// readTree returns the contents of every regular file under dir, by path.
func readTree(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file removed while walking (a reversal acknowledged meanwhile)
		}
		if d.Type().IsRegular() {
			if b, err := os.ReadFile(path); err == nil {
				out[path] = b
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNoPANTrackOrPINBlockInLogsJournalMetricsSinkOrFiles runs purchases, keyed and swiped, through the switch
// with its log at debug level captured, with a spell of bank faults (wrong MACs, unanswered requests that get
// reversed, garbage frames) in the middle, and then searches the switch's log output, its /metrics page, and
// every file it wrote (journal, reversal queue, node state, the file sink's postings) for the run's own PANs,
// track 2 data and PIN blocks (under the terminal's PIK, under the bank's ZPK, and clear), as ASCII, hex in upper
// and lower case, packed BCD and base64. The reversal queue's files are searched while reversals wait in it.
func TestNoPANTrackOrPINBlockInLogsJournalMetricsSinkOrFiles(t *testing.T) {
	logs := &lockedBuffer{}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	log := zap.New(zapcore.NewCore(enc, logs, zapcore.DebugLevel))
	r := startRig(t, rigOptions{Log: log})
	b := newBook()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); runTraffic(ctx, r.posAddr(), b, trafficOptions{Swipe: true}) }()
	defer func() { cancel(); wg.Wait() }()

	time.Sleep(1500 * time.Millisecond)
	if err := r.demo.BankA.SetFaults(bank.Faults{WrongMAC: 0.3, NoReply: 0.2}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	during := readTree(t, r.dir) // reversals wait in the queue now
	r.proxyA.Corrupt(faultproxy.GarbageFrames(3, 48))
	time.Sleep(time.Second)
	r.proxyA.Restore()
	if err := r.demo.BankA.SetFaults(bank.Faults{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	cancel()
	wg.Wait()
	metrics, err := r.adminGet("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	r.checkMoney(b) // drains the reversals and stops the switch, so every file is complete
	after := readTree(t, r.dir)

	out, _ := b.snapshot()
	n := newNeedles()
	swiped := 0
	for _, o := range out {
		if o.Track2 != "" {
			swiped++
		}
		if err := n.addCard(o, o.Track2); err != nil {
			t.Fatal(err)
		}
		if !luhnValid(o.PAN) {
			t.Fatalf("generated PAN fails Luhn")
		}
	}
	if len(out) < 100 {
		t.Fatalf("only %d purchases: too few to mean anything", len(out))
	}
	sources := map[string][]byte{"switch log (debug)": logs.bytes(), "GET /metrics": metrics}
	for p, data := range during {
		sources["during the faults: "+p] = data
	}
	for p, data := range after {
		sources[p] = data
	}
	var names []string
	total := 0
	for name, data := range sources {
		names = append(names, name)
		total += len(data)
	}
	sort.Strings(names)
	start := time.Now()
	for _, name := range names {
		if found := n.scan(sources[name]); len(found) > 0 {
			t.Errorf("%s holds card data:\n  %s", name, strings.Join(found, "\n  "))
		}
	}
	var queued int
	for p := range during {
		if strings.Contains(p, string(filepath.Separator)+"reversals"+string(filepath.Separator)) {
			queued++
		}
	}
	lines := bytes.Count(logs.bytes(), []byte("\n"))
	t.Logf("scanned %d sources (%d bytes: %d log lines, %d bytes of metrics, %d files at the end, %d while %d reversal-queue files existed) for %d needles from %d purchases in %v",
		len(sources), total, lines, len(metrics), len(after), len(during), queued, n.count(), len(out), time.Since(start).Round(time.Millisecond))
	var rel []string
	for p := range after {
		if x, err := filepath.Rel(r.dir, p); err == nil {
			rel = append(rel, x)
		}
	}
	sort.Strings(rel)
	t.Logf("files searched at the end: %s", strings.Join(rel, " "))
	t.Logf("purchases (%d swiped): %s", swiped, summary(out))
}
