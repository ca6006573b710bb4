package flow

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/railswitch/railswitch/channel"
	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/convert"
	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/journal"
	"github.com/railswitch/railswitch/link"
	"github.com/railswitch/railswitch/router"
	"github.com/railswitch/railswitch/specs"
	"github.com/railswitch/railswitch/terminal"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// The harness runs a flow behind a real channel, with a fake acquirer on loopback TCP (iso87-ascii, no zone
// keys), and records what the flow journals, queues and intends. Terminals: posTID (cup-pos, signed on with
// a session MAK) and kioskTID (kiosk, static keys, X9.19 MAC).
const (
	posTID     = "22003600"
	posMID     = "104512541110001"
	kioskTID   = "20000001"
	kioskMID   = "898110000000004"
	testBatch  = "000001"
	testPAN    = "6212341234567890" // a published test card of the demo
	testExpiry = "3012"
)

var (
	posTPDU   = []byte{0x60, 0x00, 0x03, 0x00, 0x00}
	posHeader = []byte{0x60, 0x31, 0x00, 0x31, 0x11, 0x30}
)

// fakeBank answers the link's sign-on and echo, and every request with MTI+10, the echoed fields, 39 = code
// and an authorization code. hold, when set, delays answers to financial requests until it is closed.
type fakeBank struct {
	t    testing.TB
	spec *codec.Spec
	l    net.Listener
	code atomic.Pointer[string]
	hold atomic.Pointer[chan struct{}]

	mu    sync.Mutex
	got   map[string]int // requests by MTI
	conns []net.Conn
}

func startBank(t testing.TB) *fakeBank {
	t.Helper()
	spec, err := specs.Get("iso87-ascii")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBank{t: t, spec: spec, l: l, got: map[string]int{}}
	ok := RCApproved
	b.code.Store(&ok)
	go b.serve()
	t.Cleanup(func() {
		_ = l.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			_ = c.Close()
		}
		b.mu.Unlock()
	})
	return b
}

func (b *fakeBank) serve() {
	for {
		c, err := b.l.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.conns = append(b.conns, c)
		b.mu.Unlock()
		go b.conn(c)
	}
}

func (b *fakeBank) conn(c net.Conn) {
	fr := b.spec.Framing()
	var wmu sync.Mutex
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 4096)
	for {
		n, err := c.Read(tmp)
		buf = append(buf, tmp[:n]...)
		for {
			body, used, serr := fr.Split(buf)
			if serr != nil {
				break
			}
			req := codec.NewMessage(b.spec)
			uerr := req.UnpackFrame(fr, append([]byte(nil), body...))
			buf = append(buf[:0], buf[used:]...)
			if uerr != nil {
				continue
			}
			go func() {
				resp := b.answer(req)
				out, err := resp.AppendFrame(fr, nil)
				if err != nil {
					return
				}
				wmu.Lock()
				_, _ = c.Write(out)
				wmu.Unlock()
			}()
		}
		if err != nil {
			return
		}
	}
}

func (b *fakeBank) answer(req *codec.Message) *codec.Message {
	mti := []byte(req.MTI())
	mti[2]++
	if mti[3] == '1' { // a repeat (0221, 0421) is answered as its original
		mti[3] = '0'
	}
	resp := codec.NewMessage(b.spec)
	_ = resp.SetMTI(string(mti))
	for _, n := range []int{2, 3, 4, 7, 11, 12, 13, 32, 33, 37, 41, 42, 49, 70, 90} {
		_ = resp.CopyField(n, req)
	}
	if req.MTI()[:2] == "08" {
		_ = resp.SetString(39, RCApproved)
		return resp
	}
	b.mu.Lock()
	b.got[req.MTI()]++
	b.mu.Unlock()
	if h := b.hold.Load(); h != nil {
		<-*h
	}
	_ = resp.SetString(39, *b.code.Load())
	_ = resp.SetString(38, "A12345")
	return resp
}

// requests returns how many requests of an MTI the bank received.
func (b *fakeBank) requests(mti string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.got[mti]
}

// recJournal records journaled records; onAppend, when set, runs before each append returns.
type recJournal struct {
	mu       sync.Mutex
	recs     []journal.Record
	onAppend func(*journal.Record)
}

func (j *recJournal) Append(r *journal.Record) (uint64, error) {
	if j.onAppend != nil {
		j.onAppend(r)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.recs = append(j.recs, *r)
	return uint64(len(j.recs)), nil
}

func (j *recJournal) records() []journal.Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]journal.Record(nil), j.recs...)
}

// queued is one message handed to the reversal queue.
type queued struct {
	Acquirer, Link, TxnID string
	Msg                   []byte
}

type recQueue struct {
	mu  sync.Mutex
	got []queued
}

func (q *recQueue) Enqueue(_ context.Context, acquirer, link, txnID string, msg []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.got = append(q.got, queued{acquirer, link, txnID, append([]byte(nil), msg...)})
	return nil
}

func (q *recQueue) entries() []queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]queued(nil), q.got...)
}

// recIntents keeps intents in memory; onEnd, when set, runs when an intent ends.
type recIntents struct {
	mu    sync.Mutex
	open  map[string]string // id -> txn
	seq   int
	ended int
	onEnd func(id string)
}

func (in *recIntents) Begin(_ context.Context, _, _, txnID string, _ []byte) (string, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.seq++
	id := fmt.Sprint(in.seq)
	in.open[id] = txnID
	return id, nil
}

func (in *recIntents) End(_ context.Context, _, id string) error {
	if in.onEnd != nil {
		in.onEnd(id)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	delete(in.open, id)
	in.ended++
	return nil
}

func (in *recIntents) pending() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.open)
}

// harness is one switch node's flows (pos and kiosk channels) on shared parts.
type harness struct {
	t       testing.TB
	module  *hsm.Software
	mak     hsm.Key // the POS terminal's session MAK
	kmak    hsm.Key // the kiosk's static MAK
	bank    *fakeBank
	journal *recJournal
	queue   *recQueue
	intents *recIntents
	txns    *MemoryTxns
	metrics *Metrics
	pool    *link.Pool
	parts   harnessParts
}

// harnessParts are what two nodes may share: the bank, the keys, the terminal sessions.
type harnessParts struct {
	module   *hsm.Software
	mak      hsm.Key
	kmak     hsm.Key
	kpik     hsm.Key
	bank     *fakeBank
	manager  *terminal.Manager
	routes   string
	acquirer func() *Acquirer
}

func newParts(t testing.TB) harnessParts {
	t.Helper()
	lmk, _, err := hsm.GenerateLMK(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	module := hsm.NewSoftware(lmk, rand.Reader)
	gen := func(typ hsm.KeyType, name string) hsm.Key {
		g, err := module.GenerateKey(context.Background(), hsm.GenerateKeyRequest{Name: name,
			Spec: hsm.Spec{Type: typ, Algorithm: hsm.AlgTDES, Length: 16}})
		if err != nil {
			t.Fatal(err)
		}
		return g.Key
	}
	p := harnessParts{module: module, mak: gen(hsm.KeyTAK, "mak"), kmak: gen(hsm.KeyTAK, "kmak"), kpik: gen(hsm.KeyTPK, "kpik")}
	p.bank = startBank(t)
	reg, err := terminal.NewRegistry([]terminal.Terminal{
		{ID: posTID, Merchant: posMID, Channel: "pos", TMK: "tmk"},
		{ID: kioskTID, Merchant: kioskMID, Channel: "kiosk", MAC: terminal.MACX919, MAK: "kmak", PIK: "kpik"},
	})
	if err != nil {
		t.Fatal(err)
	}
	sessions, _ := terminal.NewMemorySessions("")
	_ = sessions.Put(context.Background(), terminal.Session{TID: posTID, SignedOn: true, Batch: testBatch, NetCode: "003",
		MAK: p.mak, PIK: gen(hsm.KeyTPK, "pik")})
	keys := map[string]hsm.Key{"kmak": p.kmak, "kpik": p.kpik}
	p.manager = &terminal.Manager{Registry: reg, Sessions: sessions, Batches: terminal.NewMemoryBatches(), HSM: module,
		Keys: func(name string) (hsm.Key, error) {
			k, ok := keys[name]
			if !ok {
				return hsm.Key{}, errors.New("no key " + name)
			}
			return k, nil
		}}
	p.routes = filepath.Join(t.TempDir(), "routes.yaml")
	routes := `acquirers:
  - name: bank-a
    endpoints:
      - {name: a1, address: "` + p.bank.l.Addr().String() + `", connections: 1}
rules:
  - {name: reversals, class: reversal, original: true}
  - {name: transfers-declined, class: financial, proc: "40", decline: "57"}
  - {name: voids-and-refunds, class: [financial, authorization], proc: "20", original: true}
  - {name: default, class: [authorization, financial], acquirer: bank-a}
`
	if err := os.WriteFile(p.routes, []byte(routes), 0o600); err != nil {
		t.Fatal(err)
	}
	bankSpec, _ := specs.Get("iso87-ascii")
	reqFields := map[int]convert.Rule{2: {}, 3: {}, 4: {}, 7: {Generate: "transmission_time"}, 11: {Generate: "stan"},
		12: {Generate: "local_time"}, 13: {Generate: "local_date"}, 14: {}, 22: {}, 25: {}, 32: {Generate: "acquirer_id"},
		33: {Generate: "forwarder_id"}, 37: {Generate: "rrn"}, 38: {}, 41: {}, 42: {}, 49: {}, 90: {Generate: "original_data"}}
	respFields := map[int]convert.Rule{12: {}, 13: {}, 37: {}, 38: {}, 39: {}}
	codes := map[string]string{"00": "00", "51": "51", "*": "05"}
	p.acquirer = func() *Acquirer {
		acq := &Acquirer{Name: "bank-a", Spec: bankSpec, Requests: map[string]*convert.Converter{},
			Responses: map[string]*convert.Converter{}, MAC: hsm.MACX919, MACBytes: 8, Timeout: 10 * time.Second,
			ReversalMTI: "0420", InstitutionID: "00085500", ForwarderID: "00010000"}
		for _, term := range []string{"cup-pos", "kiosk"} {
			from, _ := specs.Get(term)
			req, err := convert.Compile(convert.Map{Name: term + "-to-bank", From: term, To: "iso87-ascii",
				MTI: map[string]string{"0400": "0420"}, Fields: reqFields}, from, bankSpec)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := convert.Compile(convert.Map{Name: "bank-to-" + term, From: "iso87-ascii", To: term,
				Fields: respFields, Codes: codes}, bankSpec, from)
			if err != nil {
				t.Fatal(err)
			}
			acq.Requests[term], acq.Responses[term] = req, resp
		}
		return acq
	}
	return p
}

// node is one switch node: its flows and channels, on parts that may be shared with another node.
type node struct {
	*harness
	pos, kiosk     *Flow
	posCh, kioskCh *channel.Channel
}

// newNode starts a node; dups (nil: no duplicate check) is its duplicate store.
func newNode(t testing.TB, p harnessParts, dups Duplicates) *node {
	t.Helper()
	h := &harness{t: t, module: p.module, mak: p.mak, kmak: p.kmak, bank: p.bank, journal: &recJournal{},
		queue: &recQueue{}, intents: &recIntents{open: map[string]string{}}, txns: NewMemoryTxns(), parts: p}
	h.metrics, _ = NewMetrics(nil)
	log := zap.NewNop()
	if tt, ok := t.(*testing.T); ok && os.Getenv("FLOW_TEST_LOG") != "" {
		log = zaptest.NewLogger(tt)
	}
	table, err := router.Load(p.routes)
	if err != nil {
		t.Fatal(err)
	}
	var bal atomic.Pointer[router.Balancer]
	bal.Store(router.NewBalancer(table.Acquirers(), nil, nil))
	counter, err := link.NewLocalCounter(link.CounterConfig{Node: 1})
	if err != nil {
		t.Fatal(err)
	}
	bankSpec, _ := specs.Get("iso87-ascii")
	h.pool, err = link.NewPool([]link.Acquirer{{Name: "bank-a",
		Endpoints: []link.Endpoint{{Name: "a1", Address: p.bank.l.Addr().String(), Conns: 1}},
		Link: link.Config{Spec: bankSpec, Counter: counter, EchoInterval: -1, Log: log,
			OnEvent: func(id link.LinkID, ev link.Event) { _ = bal.Load().Observe(router.LinkID(id), router.Event(ev)) }}}})
	if err != nil {
		t.Fatal(err)
	}
	h.pool.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.pool.Close(ctx)
	})
	deadline := time.Now().Add(10 * time.Second)
	for h.pool.Links("bank-a")[0].State() != link.StateReady {
		if time.Now().After(deadline) {
			t.Fatal("bank link not ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	acqs := map[string]*Acquirer{"bank-a": p.acquirer()}
	n := &node{harness: h}
	for _, ch := range []string{"pos", "kiosk"} {
		spec, _ := specs.Get(map[string]string{"pos": "cup-pos", "kiosk": "kiosk"}[ch])
		fl := New(Config{Channel: ch, Spec: spec, Framing: spec.Framing(), Manager: p.manager, HSM: p.module,
			Router: router.NewRouter(table), Balancer: bal.Load, Links: h.pool, Acquirers: acqs, Counter: counter,
			Journal: h.journal, Reversals: h.queue, Intents: h.intents, Txns: h.txns, Metrics: h.metrics,
			Duplicates: dups, NodeID: "n1", Posting: true, Log: log})
		c := channel.New(channel.Config{Name: ch, Addr: "127.0.0.1:0", Framing: spec.Framing(), Loops: 1}, fl, log)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = c.Stop(ctx)
		})
		if ch == "pos" {
			n.pos, n.posCh = fl, c
		} else {
			n.kiosk, n.kioskCh = fl, c
		}
	}
	return n
}

// posRequest is a cup-pos request of the test terminal, MACed under its session MAK.
func (h *harness) posRequest(mti, proc, trace, typ string, amount int64, extra map[int]string) []byte {
	h.t.Helper()
	spec, _ := specs.Get("cup-pos")
	m := codec.NewMessage(spec)
	_ = m.SetTPDU(posTPDU)
	_ = m.SetHeader(posHeader)
	_ = m.SetMTI(mti)
	fields := map[int]string{2: testPAN, 3: proc, 4: fmt.Sprintf("%012d", amount), 11: trace, 14: testExpiry,
		22: "012", 25: "00", 41: posTID, 42: posMID, 49: "156", 60: typ + testBatch + "000"}
	for n, v := range extra {
		fields[n] = v
	}
	for n, v := range fields {
		if err := m.SetString(n, v); err != nil {
			h.t.Fatalf("field %d: %v", n, err)
		}
	}
	if err := m.SetString(64, "00000000"); err != nil {
		h.t.Fatal(err)
	}
	packed, err := m.Pack(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	mac, err := h.module.GenerateMAC(context.Background(), h.mak, hsm.MACCupECB, packed[:len(packed)-8])
	if err != nil {
		h.t.Fatal(err)
	}
	_ = m.Set(64, mac[:8])
	frame, err := m.AppendFrame(spec.Framing(), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return frame
}

// kioskRequest is a kiosk purchase with transmission time dt (MMDDhhmmss), MACed (X9.19) under its MAK.
func (h *harness) kioskRequest(trace, dt string, amount int64) []byte {
	h.t.Helper()
	spec, _ := specs.Get("kiosk")
	m := codec.NewMessage(spec)
	_ = m.SetMTI("0200")
	for n, v := range map[int]string{2: testPAN, 3: "000000", 4: fmt.Sprintf("%012d", amount), 7: dt, 11: trace,
		12: dt[4:], 13: dt[:4], 14: testExpiry, 22: "012", 25: "00", 41: kioskTID, 42: kioskMID, 49: "156"} {
		if err := m.SetString(n, v); err != nil {
			h.t.Fatalf("field %d: %v", n, err)
		}
	}
	if err := signMessage(context.Background(), h.module, h.kmak, hsm.MACX919, 64, 8, m); err != nil {
		h.t.Fatal(err)
	}
	frame, err := m.AppendFrame(spec.Framing(), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return frame
}

// terminalConn is a raw terminal connection.
type terminalConn struct {
	t  testing.TB
	c  net.Conn
	fr codec.Framing
}

func dialChannel(t testing.TB, c *channel.Channel, specName string) *terminalConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", c.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	spec, _ := specs.Get(specName)
	return &terminalConn{t: t, c: nc, fr: spec.Framing()}
}

func (tc *terminalConn) send(frame []byte) {
	tc.t.Helper()
	if _, err := tc.c.Write(frame); err != nil {
		tc.t.Fatal(err)
	}
}

// read returns the next frame as received, length header included.
func (tc *terminalConn) read() []byte {
	tc.t.Helper()
	_ = tc.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	var hdr []byte
	var n int
	switch tc.fr.Length {
	case codec.LenASCII4:
		hdr = make([]byte, 4)
	default:
		hdr = make([]byte, 2)
	}
	if _, err := io.ReadFull(tc.c, hdr); err != nil {
		tc.t.Fatalf("read reply: %v", err)
	}
	if tc.fr.Length == codec.LenASCII4 {
		_, _ = fmt.Sscanf(string(hdr), "%04d", &n)
	} else {
		n = int(binary.BigEndian.Uint16(hdr))
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(tc.c, body); err != nil {
		tc.t.Fatalf("read reply: %v", err)
	}
	return append(hdr, body...)
}

// exchange sends a frame and returns the reply frame.
func (tc *terminalConn) exchange(frame []byte) []byte {
	tc.t.Helper()
	tc.send(frame)
	return tc.read()
}

// decode unpacks a reply frame of spec.
func decode(t testing.TB, specName string, frame []byte) *codec.Message {
	t.Helper()
	spec, _ := specs.Get(specName)
	fr := spec.Framing()
	body, _, err := fr.Split(frame)
	if err != nil {
		t.Fatal(err)
	}
	m := codec.NewMessage(spec)
	if err := m.UnpackFrame(fr, append([]byte(nil), body...)); err != nil {
		t.Fatal(err)
	}
	return m
}

// eventually polls cond for up to 10 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mtiOf reads the ASCII MTI of a message packed in the bank's spec.
func mtiOf(msg []byte) string {
	if len(msg) < 4 {
		return ""
	}
	return strings.ToUpper(string(msg[:4]))
}
