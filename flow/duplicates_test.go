package flow

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRetransmissionAfterCompletionGetsTheSameReplyAndTheBankSeesOneRequest: a terminal that sends the same
// request again (same bytes) after it was answered gets the first reply byte for byte (its MAC included), and
// the acquirer sees the request once, on the POS (key with batch 60.2) and kiosk (key with field 7) channels.
func TestRetransmissionAfterCompletionGetsTheSameReplyAndTheBankSeesOneRequest(t *testing.T) {
	p := newParts(t)
	n := newNode(t, p, NewMemoryDuplicates(0, nil, nil))
	tests := []struct {
		name  string
		spec  string
		conn  func() *terminalConn
		frame []byte
	}{
		{"pos purchase", "cup-pos", func() *terminalConn { return dialChannel(t, n.posCh, "cup-pos") },
			n.posRequest("0200", "000000", "000101", "22", 1500, nil)},
		{"kiosk purchase", "kiosk", func() *terminalConn { return dialChannel(t, n.kioskCh, "kiosk") },
			n.kioskRequest("000101", "1127101500", 2500)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := p.bank.requests("0200")
			first := tc.conn().exchange(tc.frame)
			if rc := decode(t, tc.spec, first).String(39); rc != RCApproved {
				t.Fatalf("first reply %q", rc)
			}
			// Until its delivery is settled the original is in flight (a retransmission then gets 94).
			eventually(t, "the approval's delivery settled", func() bool { return n.intents.pending() == 0 })
			again := tc.conn().exchange(tc.frame) // a new connection, as after a reconnect
			if !bytes.Equal(first, again) {
				t.Fatalf("retransmission answered\n%x\nwant the first reply\n%x", again, first)
			}
			if got := p.bank.requests("0200") - before; got != 1 {
				t.Fatalf("the bank saw %d requests, want 1", got)
			}
			if got := len(n.journal.records()); got == 0 {
				t.Fatal("nothing journaled")
			}
		})
	}
	if got := value(t, n.metrics.duplicates.WithLabelValues("pos", "replayed")); got != 1 {
		t.Fatalf("pos replayed = %v, want 1", got)
	}
}

// TestRetransmissionWhileInFlightGets94: a retransmission that arrives while the original is still at the
// bank is answered 94 (duplicate) without a second request; the original then gets its approval.
func TestRetransmissionWhileInFlightGets94(t *testing.T) {
	p := newParts(t)
	n := newNode(t, p, NewMemoryDuplicates(0, nil, nil))
	hold := make(chan struct{})
	p.bank.hold.Store(&hold)
	frame := n.posRequest("0200", "000000", "000201", "22", 1500, nil)
	first := dialChannel(t, n.posCh, "cup-pos")
	first.send(frame)
	eventually(t, "the request at the bank", func() bool { return p.bank.requests("0200") == 1 })
	if rc := decode(t, "cup-pos", dialChannel(t, n.posCh, "cup-pos").exchange(frame)).String(39); rc != RCDuplicate {
		t.Fatalf("retransmission in flight answered %q, want 94", rc)
	}
	close(hold)
	if rc := decode(t, "cup-pos", first.read()).String(39); rc != RCApproved {
		t.Fatalf("original answered %q", rc)
	}
	if got := p.bank.requests("0200"); got != 1 {
		t.Fatalf("the bank saw %d requests, want 1", got)
	}
	if got := value(t, n.metrics.duplicates.WithLabelValues("pos", "in_flight")); got != 1 {
		t.Fatalf("in_flight = %v, want 1", got)
	}
}

// TestRequestsThatDifferInAKeyFieldAreNotDuplicates: another trace number, another batch or another MTI
// (a reversal carries its original's trace) is a new request that goes to the bank.
func TestRequestsThatDifferInAKeyFieldAreNotDuplicates(t *testing.T) {
	p := newParts(t)
	n := newNode(t, p, NewMemoryDuplicates(0, nil, nil))
	base := n.posRequest("0200", "000000", "000301", "22", 1500, nil)
	tc := dialChannel(t, n.posCh, "cup-pos")
	if rc := decode(t, "cup-pos", tc.exchange(base)).String(39); rc != RCApproved {
		t.Fatalf("first purchase %q", rc)
	}
	tests := []struct {
		name  string
		frame []byte
		mti   string // what the bank must receive once more
	}{
		{"another trace", n.posRequest("0200", "000000", "000302", "22", 1500, nil), "0200"},
		{"another batch", n.posRequest("0200", "000000", "000301", "22", 1500, map[int]string{60: "22000002000"}), "0200"},
		{"the reversal of the first (same trace, MTI 0400)", n.posRequest("0400", "000000", "000301", "22", 1500,
			map[int]string{39: "98"}), "0420"},
	}
	for _, c := range tests {
		t.Run(c.name, func(t *testing.T) {
			before := p.bank.requests(c.mti)
			if rc := decode(t, "cup-pos", tc.exchange(c.frame)).String(39); rc != RCApproved {
				t.Fatalf("answered %q", rc)
			}
			if got := p.bank.requests(c.mti) - before; got != 1 {
				t.Fatalf("the bank saw %d new %s, want 1", got, c.mti)
			}
		})
	}
}

// TestARequestThatNeverLeftIsDecidedAgainOnRetransmission: a request declined before it left the switch
// (here by a routing rule) has its claim released, so its retransmission is handled as a new request (and
// declined again) instead of replayed.
func TestARequestThatNeverLeftIsDecidedAgainOnRetransmission(t *testing.T) {
	p := newParts(t)
	n := newNode(t, p, NewMemoryDuplicates(0, nil, nil))
	frame := n.posRequest("0200", "400000", "000401", "22", 1500, nil)
	tc := dialChannel(t, n.posCh, "cup-pos")
	for i := range 2 {
		if rc := decode(t, "cup-pos", tc.exchange(frame)).String(39); rc != "57" {
			t.Fatalf("send %d answered %q, want the route's 57", i+1, rc)
		}
	}
	if got := value(t, n.metrics.duplicates.WithLabelValues("pos", "replayed")); got != 0 {
		t.Fatalf("a request that never left was replayed %v times", got)
	}
}

// TestMemoryDuplicatesExpireAndStayBounded: a key is held for its window only, a completed key is replayed,
// and the store never holds more than its bound.
func TestMemoryDuplicatesExpireAndStayBounded(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	d := NewMemoryDuplicates(dupShards*4, nil, clock)
	c, _ := d.Claim(ctx, "k", time.Minute)
	if c.State != DupNew {
		t.Fatalf("first claim %v", c.State)
	}
	if got, _ := d.Claim(ctx, "k", time.Minute); got.State != DupInFlight {
		t.Fatalf("claim in flight: %v", got.State)
	}
	if err := d.Complete(ctx, "k", c, []byte("reply"), time.Minute); err != nil {
		t.Fatal(err)
	}
	now = now.Add(59 * time.Second)
	if got, _ := d.Claim(ctx, "k", time.Minute); got.State != DupDone || string(got.Reply) != "reply" {
		t.Fatalf("within the window: %v %q", got.State, got.Reply)
	}
	now = now.Add(2 * time.Second)
	if got, _ := d.Claim(ctx, "k", time.Minute); got.State != DupNew {
		t.Fatalf("after the window: %v, want a new claim", got.State)
	}
	stale := c // the first claim, expired: it must not complete the new one
	if err := d.Complete(ctx, "k", stale, []byte("old"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Claim(ctx, "k", time.Minute); got.State != DupInFlight {
		t.Fatalf("an expired claim completed its successor: %v", got.State)
	}
	for i := range 10_000 {
		_, _ = d.Claim(ctx, string(rune('a'+i%26))+time.Duration(i).String(), time.Hour)
	}
	if n := d.Len(); n > dupShards*4 {
		t.Fatalf("%d keys held, bound %d", n, dupShards*4)
	}
}

// TestStoredRepliesAreSealed: with a Sealer the store never holds the reply in clear.
func TestStoredRepliesAreSealed(t *testing.T) {
	ctx := context.Background()
	d := NewMemoryDuplicates(0, xorSealer{}, nil)
	c, _ := d.Claim(ctx, "k", time.Minute)
	_ = d.Complete(ctx, "k", c, []byte(testPAN), time.Minute)
	sh := d.shard("k")
	if bytes.Contains(sh.m["k"].reply, []byte(testPAN)) {
		t.Fatal("reply held in clear")
	}
	if got, _ := d.Claim(ctx, "k", time.Minute); string(got.Reply) != testPAN {
		t.Fatalf("opened reply %q", got.Reply)
	}
}

// xorSealer is a test sealer (not encryption): it flips every byte.
type xorSealer struct{}

func (xorSealer) Seal(p []byte) ([]byte, error) { return flip(p), nil }
func (xorSealer) Open(s []byte) ([]byte, error) { return flip(s), nil }

func flip(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = c ^ 0xFF
	}
	return out
}

func TestDupConfigValidatesKeyFields(t *testing.T) {
	tests := []struct {
		name string
		cfg  DupConfig
		ok   bool
	}{
		{"defaults", DupConfig{}, true},
		{"own key", DupConfig{Keys: map[string][]string{"kiosk": {"channel", "41", "7", "11", "mti"}}}, true},
		{"bad field", DupConfig{Keys: map[string][]string{"kiosk": {"terminal"}}}, false},
		{"bad subfield", DupConfig{Keys: map[string][]string{"cup-pos": {"60.x"}}}, false},
		{"empty key", DupConfig{Keys: map[string][]string{"cup-pos": {}}}, false},
		{"negative window", DupConfig{Window: -time.Second}, false},
		{"redis store", DupConfig{Store: "redis"}, true},
		{"unknown store", DupConfig{Store: "postgres"}, false},
		{"negative bound", DupConfig{MaxEntries: -1}, false},
	}
	for _, tc := range tests {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok %t", tc.name, err, tc.ok)
		}
	}
}

func TestNewDuplicatesOpensTheConfiguredStore(t *testing.T) {
	if d, err := NewDuplicates(DupConfig{}, nil, nil, nil); err != nil {
		t.Fatal(err)
	} else if _, ok := d.(*MemoryDuplicates); !ok {
		t.Fatalf("default store %T, want memory", d)
	}
	if _, err := NewDuplicates(DupConfig{Store: "redis"}, nil, xorSealer{}, nil); err == nil {
		t.Fatal("a redis store without a client was accepted")
	}
	var none *redis.Client // a switch without a redis: section
	if _, err := NewDuplicates(DupConfig{Store: "redis"}, none, xorSealer{}, nil); err == nil {
		t.Fatal("a redis store on a nil *redis.Client was accepted")
	}
}

// FuzzDupKey: any key configuration is either refused or builds a key from any message without a crash.
func FuzzDupKey(f *testing.F) {
	f.Add("channel,41,42,60.2,11,mti", "22000001000")
	f.Add("60.9,7,128", "")
	f.Add("x.y,,.", "\xff")
	f.Fuzz(func(t *testing.T, fields, f60 string) {
		parts, err := parseDupKey(strings.Split(fields, ","))
		if err != nil {
			return
		}
		m := message(t, "cup-pos", "0200", map[int]string{41: posTID, 11: "000001"})
		_ = m.SetString(60, f60) // may be refused: the key then lacks it
		_ = dupKey(parts, "pos", m)
	})
}

// BenchmarkMemoryDuplicatesClaimComplete is the check's work on one request: claim a new key, complete it
// with a 150-byte reply; from every core at once, as the flows' goroutines do.
func BenchmarkMemoryDuplicatesClaimComplete(b *testing.B) {
	d := NewMemoryDuplicates(0, nil, nil)
	ctx := context.Background()
	reply := bytes.Repeat([]byte{'x'}, 150)
	var seq atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := "{22003600}\x1fpos\x1f" + strconv.FormatUint(seq.Add(1), 10)
			c, err := d.Claim(ctx, key, time.Minute)
			if err != nil || c.State != DupNew {
				b.Fatalf("claim %v %v", c.State, err)
			}
			_ = d.Complete(ctx, key, c, reply, time.Minute)
		}
	})
}

// TestReplayGoesBackByTheRetransmissionsTPDU: a retransmission that came through another access address
// (TPDU source) gets the stored reply with the TPDU addresses of its own request swapped; the rest, MAC
// included, is the first reply.
func TestReplayGoesBackByTheRetransmissionsTPDU(t *testing.T) {
	p := newParts(t)
	n := newNode(t, p, NewMemoryDuplicates(0, nil, nil))
	frame := n.posRequest("0200", "000000", "001301", "22", 1500, nil)
	first := dialChannel(t, n.posCh, "cup-pos").exchange(frame)
	eventually(t, "the approval's delivery settled", func() bool { return n.intents.pending() == 0 })
	moved := append([]byte(nil), frame...)
	copy(moved[2:7], []byte{0x60, 0x00, 0x03, 0x00, 0x11}) // source address 0011
	again := dialChannel(t, n.posCh, "cup-pos").exchange(moved)
	if want := []byte{0x60, 0x00, 0x11, 0x00, 0x03}; !bytes.Equal(again[2:7], want) {
		t.Fatalf("replay TPDU %x, want %x", again[2:7], want)
	}
	if !bytes.Equal(again[7:], first[7:]) || !bytes.Equal(again[:2], first[:2]) {
		t.Fatal("the replay differs from the first reply beyond the TPDU")
	}
	if got := p.bank.requests("0200"); got != 1 {
		t.Fatalf("the bank saw %d requests, want 1", got)
	}
}
