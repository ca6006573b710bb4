package flow

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// realRedis returns the machine's Redis (REDIS_ADDR, default 127.0.0.1:6379) and a key prefix unique to the
// test, whose keys are deleted afterwards. Without Redis the test fails under CI and is skipped elsewhere.
func realRedis(t testing.TB) (addr, prefix string) {
	t.Helper()
	addr = os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("this test needs Redis at %s (set REDIS_ADDR): %v", addr, err)
		}
		t.Skipf("skipping: no Redis at %s (set REDIS_ADDR; under CI this fails): %v", addr, err)
	}
	prefix = fmt.Sprintf("railswitch:dup:test:%d:%d:", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		keys, err := rdb.Keys(ctx, prefix+"*").Result()
		if err == nil && len(keys) > 0 {
			err = rdb.Del(ctx, keys...).Err()
		}
		if err != nil {
			t.Errorf("cleaning up test keys: %v", err)
		}
	})
	return addr, prefix
}

func redisDups(t testing.TB, addr, prefix string, mod func(*RedisDupOptions)) *RedisDuplicates {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second})
	t.Cleanup(func() { rdb.Close() })
	o := RedisDupOptions{Prefix: prefix, Sealer: xorSealer{}, Timeout: time.Second}
	if mod != nil {
		mod(&o)
	}
	d, err := NewRedisDuplicates(rdb, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRedisDuplicatesAreSharedByTwoNodes: a retransmission that reaches another node (the terminal
// reconnected elsewhere) gets the first node's reply byte for byte, and the bank sees one request; one
// arriving while the first node still holds the request gets 94.
func TestRedisDuplicatesAreSharedByTwoNodes(t *testing.T) {
	addr, prefix := realRedis(t)
	p := newParts(t)
	n1 := newNode(t, p, redisDups(t, addr, prefix, nil))
	n2 := newNode(t, p, redisDups(t, addr, prefix, nil))

	frame := n1.posRequest("0200", "000000", "000501", "22", 1500, nil)
	first := dialChannel(t, n1.posCh, "cup-pos").exchange(frame)
	if rc := decode(t, "cup-pos", first).String(39); rc != RCApproved {
		t.Fatalf("first reply %q", rc)
	}
	eventually(t, "the approval's delivery settled", func() bool { return n1.intents.pending() == 0 })
	again := dialChannel(t, n2.posCh, "cup-pos").exchange(frame)
	if !bytes.Equal(first, again) {
		t.Fatalf("the other node answered\n%x\nwant the first reply\n%x", again, first)
	}
	if got := p.bank.requests("0200"); got != 1 {
		t.Fatalf("the bank saw %d requests, want 1", got)
	}

	hold := make(chan struct{})
	p.bank.hold.Store(&hold)
	frame = n1.posRequest("0200", "000000", "000502", "22", 1500, nil)
	held := dialChannel(t, n1.posCh, "cup-pos")
	held.send(frame)
	eventually(t, "the request at the bank", func() bool { return p.bank.requests("0200") == 2 })
	if rc := decode(t, "cup-pos", dialChannel(t, n2.posCh, "cup-pos").exchange(frame)).String(39); rc != RCDuplicate {
		t.Fatalf("retransmission to the other node while in flight answered %q, want 94", rc)
	}
	close(hold)
	if rc := decode(t, "cup-pos", held.read()).String(39); rc != RCApproved {
		t.Fatalf("original answered %q", rc)
	}
	if bytes.Contains(redisDump(t, addr, prefix), []byte(testPAN)) {
		t.Fatal("a stored reply holds the card number in clear")
	}
}

// redisDump returns every value under prefix, concatenated.
func redisDump(t testing.TB, addr, prefix string) []byte {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, k := range keys {
		v, _ := rdb.Get(ctx, k).Bytes()
		out = append(out, v...)
	}
	return out
}

// proxy forwards TCP to target while up; cut closes every connection and refuses new ones until restore.
type proxy struct {
	l      net.Listener
	target string
	up     atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target}
	p.up.Store(true)
	t.Cleanup(func() { _ = l.Close(); p.cut() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if !p.up.Load() {
				_ = c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
			go func() { _, _ = io.Copy(c, u); _ = c.Close() }()
		}
	}()
	return p
}

func (p *proxy) cut() {
	p.up.Store(false)
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
}

func (p *proxy) restore() { p.up.Store(true) }

// TestRedisOutageFallsBackToTheNodesOwnStore: while Redis is unreachable, claims go to the node's local
// store (no request is refused, and retransmissions to the same node are still caught); once Redis answers
// again after the retry interval, claims go to Redis, and a claim made locally is still completed locally.
func TestRedisOutageFallsBackToTheNodesOwnStore(t *testing.T) {
	addr, prefix := realRedis(t)
	px := startProxy(t, addr)
	d := redisDups(t, px.l.Addr().String(), prefix, func(o *RedisDupOptions) {
		o.RetryInterval = 200 * time.Millisecond
		o.Timeout = 500 * time.Millisecond
	})
	ctx := context.Background()
	if c, err := d.Claim(ctx, "warm", time.Minute); err != nil || strings.HasPrefix(c.Token, localToken) {
		t.Fatalf("claim with Redis up: %+v %v", c, err)
	}
	px.cut()
	local, err := d.Claim(ctx, "k1", time.Minute)
	if err != nil || local.State != DupNew || !strings.HasPrefix(local.Token, localToken) {
		t.Fatalf("claim during the outage: %+v %v, want a local claim", local, err)
	}
	if c, _ := d.Claim(ctx, "k1", time.Minute); c.State != DupInFlight {
		t.Fatalf("retransmission during the outage: %v, want in flight", c.State)
	}
	px.restore()
	time.Sleep(300 * time.Millisecond) // the retry interval
	remote, err := d.Claim(ctx, "k2", time.Minute)
	if err != nil || remote.State != DupNew || strings.HasPrefix(remote.Token, localToken) {
		t.Fatalf("claim after the outage: %+v %v, want a Redis claim", remote, err)
	}
	if err := d.Complete(ctx, "k1", local, []byte("local reply"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := d.Complete(ctx, "k2", remote, []byte("redis reply"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if c, _ := d.local.Claim(ctx, "k1", time.Minute); c.State != DupDone || string(c.Reply) != "local reply" {
		t.Fatalf("local claim completed: %v %q", c.State, c.Reply)
	}
	other := redisDups(t, addr, prefix, nil) // another node sees the Redis claim's reply
	if c, _ := other.Claim(ctx, "k2", time.Minute); c.State != DupDone || string(c.Reply) != "redis reply" {
		t.Fatalf("other node: %v %q", c.State, c.Reply)
	}
}

// TestPurchaseDuringARedisOutageIsApprovedAndItsRetransmissionCaught runs the outage through a node.
func TestPurchaseDuringARedisOutageIsApprovedAndItsRetransmissionCaught(t *testing.T) {
	addr, prefix := realRedis(t)
	px := startProxy(t, addr)
	px.cut()
	p := newParts(t)
	n := newNode(t, p, redisDups(t, px.l.Addr().String(), prefix, func(o *RedisDupOptions) { o.Timeout = 500 * time.Millisecond }))
	frame := n.posRequest("0200", "000000", "000601", "22", 1500, nil)
	first := dialChannel(t, n.posCh, "cup-pos").exchange(frame)
	if rc := decode(t, "cup-pos", first).String(39); rc != RCApproved {
		t.Fatalf("purchase during the outage answered %q", rc)
	}
	eventually(t, "the approval's delivery settled", func() bool { return n.intents.pending() == 0 })
	if again := dialChannel(t, n.posCh, "cup-pos").exchange(frame); !bytes.Equal(first, again) {
		t.Fatal("retransmission to the same node during the outage not answered with the first reply")
	}
	if got := p.bank.requests("0200"); got != 1 {
		t.Fatalf("the bank saw %d requests, want 1", got)
	}
}

func TestNewRedisDuplicatesRequiresASealer(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	if _, err := NewRedisDuplicates(rdb, RedisDupOptions{}); err == nil {
		t.Fatal("accepted a Redis store without a Sealer")
	}
}
