package flow

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// RCDuplicate answers a retransmission that arrives while its original is still being handled.
const RCDuplicate = "94"

// DupState is what a claim on a duplicate key found.
type DupState uint8

// Claim outcomes.
const (
	// DupNew: no request held the key; the caller now holds it and must Complete or Release it.
	DupNew DupState = iota
	// DupInFlight: the original holds the key and has not been answered yet (answer 94).
	DupInFlight
	// DupDone: the original was answered; Reply holds its reply frame as first written.
	DupDone
)

// DupClaim is the result of Duplicates.Claim.
type DupClaim struct {
	State DupState
	Reply []byte // DupDone: the reply frame (length header, TPDU, header, message, MAC), opened
	// Token identifies the caller's claim (DupNew) for Complete and Release, so that a claim that expired and
	// was taken again by a later request is never completed or released by the first.
	Token string
}

// Duplicates detects a terminal's retransmissions: the first request with a key claims it for a while (in
// flight), then stores its reply under it (done); a request with the same key gets the stored reply, or 94
// while the first is still in flight. Implementations are safe for concurrent use and store replies sealed:
// a reply may carry card data.
type Duplicates interface {
	// Claim claims key for ttl unless it is held: see DupState.
	Claim(ctx context.Context, key string, ttl time.Duration) (DupClaim, error)
	// Complete stores reply (the frame as written to the terminal) under a key the caller claimed, kept ttl.
	Complete(ctx context.Context, key string, c DupClaim, reply []byte, ttl time.Duration) error
	// Release gives a claimed key up without a reply: a retransmission is then handled as a new request.
	Release(ctx context.Context, key string, c DupClaim) error
}

// Sealer encrypts stored replies at rest; Open undoes Seal. saf.Sealer (AES-256-GCM under the queue's
// key) satisfies it.
type Sealer interface {
	Seal(plain []byte) ([]byte, error)
	Open(sealed []byte) ([]byte, error)
}

// DefaultDupWindow is how long a request's key is remembered by default: a terminal retransmits within its
// own response timeout (about a minute) a few times.
const DefaultDupWindow = 5 * time.Minute

// DupConfig is the duplicate check of a switch: the server's `duplicates:` section (docs/duplicates.md).
type DupConfig struct {
	// Store is "memory" (default: this node only) or "redis" (shared by the nodes; the switch's redis:
	// client).
	Store string `yaml:"store"`
	// Window is how long a key is held: in flight from the request, then done from its reply. Default 5m.
	Window time.Duration `yaml:"window"`
	// Keys are the key fields by terminal spec name, overriding DefaultDupKeys. A field is "channel", "mti",
	// a field number ("11") or a subfield ("60.2").
	Keys map[string][]string `yaml:"keys"`
	// MaxEntries bounds the node's memory store, and its fallback while Redis is down (default 1,000,000).
	MaxEntries int `yaml:"max_entries"`
	// Prefix starts the Redis keys (default "railswitch:dup:").
	Prefix string `yaml:"prefix"`
	// Key names the data-encryption key (in the key store) the stored replies are sealed under.
	Key string `yaml:"key"`
}

// NewDuplicates opens the store c names: a MemoryDuplicates, or a RedisDuplicates on rdb falling back to a
// MemoryDuplicates while Redis is down. sealer seals the replies (required for Redis; may be nil for memory,
// which then holds them in this process only).
func NewDuplicates(c DupConfig, rdb redis.Cmdable, sealer Sealer, log *zap.Logger) (Duplicates, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	local := NewMemoryDuplicates(c.MaxEntries, sealer, nil)
	if c.Store != "redis" {
		return local, nil
	}
	if isNilClient(rdb) {
		return nil, errors.New("duplicates.store: redis needs the redis: section")
	}
	return NewRedisDuplicates(rdb, RedisDupOptions{Prefix: c.Prefix, Sealer: sealer, Local: local, Log: log})
}

// DefaultDupKeys are the key fields of the built-in terminal specs. UnionPay POS (cup-pos and its railway
// variant rail-pos): terminal, merchant, batch (60.2) and trace number, which the terminal never repeats
// within a batch. Kiosks have no field 60 and wrap their trace number at 999999: the transmission date and
// time (7), which a retransmission repeats unchanged, takes the batch's place. Specs not named here use the
// "*" entry, as kiosks do.
var DefaultDupKeys = map[string][]string{
	"cup-pos":  {"channel", "41", "42", "60.2", "11", "mti"},
	"rail-pos": {"channel", "41", "42", "60.2", "11", "mti"},
	"kiosk":    {"channel", "41", "42", "7", "11", "mti"},
	"*":        {"channel", "41", "42", "7", "11", "mti"},
}

// Validate checks the key fields and the window.
func (c DupConfig) Validate() error {
	if c.Window < 0 {
		return fmt.Errorf("duplicates.window: %s is negative", c.Window)
	}
	if c.Store != "" && c.Store != "memory" && c.Store != "redis" {
		return fmt.Errorf("duplicates.store: %q: want memory or redis", c.Store)
	}
	if c.MaxEntries < 0 {
		return fmt.Errorf("duplicates.max_entries: %d is negative", c.MaxEntries)
	}
	for spec, fields := range c.Keys {
		if _, err := parseDupKey(fields); err != nil {
			return fmt.Errorf("duplicates.keys.%s: %w", spec, err)
		}
	}
	return nil
}

// window is the configured window or the default.
func (c DupConfig) window() time.Duration {
	if c.Window > 0 {
		return c.Window
	}
	return DefaultDupWindow
}

// fieldsFor returns the key fields of a terminal spec.
func (c DupConfig) fieldsFor(spec string) []string {
	if f, ok := c.Keys[spec]; ok {
		return f
	}
	if f, ok := DefaultDupKeys[spec]; ok {
		return f
	}
	if f, ok := c.Keys["*"]; ok {
		return f
	}
	return DefaultDupKeys["*"]
}

// dupPart is one element of a duplicate key.
type dupPart struct {
	kind       byte // 'c' channel, 'm' MTI, 'f' field, 's' subfield
	field, sub int
}

func parseDupKey(fields []string) ([]dupPart, error) {
	if len(fields) == 0 {
		return nil, fmt.Errorf("no key fields")
	}
	out := make([]dupPart, 0, len(fields))
	for _, f := range fields {
		switch f {
		case "channel":
			out = append(out, dupPart{kind: 'c'})
			continue
		case "mti":
			out = append(out, dupPart{kind: 'm'})
			continue
		}
		num, sub, hasSub := strings.Cut(f, ".")
		n, err := strconv.Atoi(num)
		if err != nil || n < 2 || n > 192 {
			return nil, fmt.Errorf("key field %q: want channel, mti, a field number or field.subfield", f)
		}
		if !hasSub {
			out = append(out, dupPart{kind: 'f', field: n})
			continue
		}
		s, err := strconv.Atoi(sub)
		if err != nil || s < 1 {
			return nil, fmt.Errorf("key field %q: bad subfield", f)
		}
		out = append(out, dupPart{kind: 's', field: n, sub: s})
	}
	return out, nil
}

// dupKey builds the key of req from parts: the values joined by 0x1F (a byte no key field carries), the
// terminal id first in braces when 41 is a part, so that a Redis Cluster keeps a terminal's keys together.
func dupKey(parts []dupPart, channel string, req *codec.Message) string {
	b := make([]byte, 0, 64)
	if tid, ok := req.Value(41); ok {
		b = append(b, '{')
		b = append(b, tid...)
		b = append(b, '}')
	}
	for _, p := range parts {
		b = append(b, 0x1F)
		switch p.kind {
		case 'c':
			b = append(b, channel...)
		case 'm':
			b = append(b, req.MTI()...)
		case 'f':
			v, _ := req.Value(p.field)
			b = append(b, v...)
		case 's':
			v, _ := req.Subfield(p.field, p.sub)
			b = append(b, v...)
		}
	}
	return string(b)
}

// DefaultDupEntries bounds a MemoryDuplicates made with max 0.
const DefaultDupEntries = 1_000_000

const dupShards = 64

// MemoryDuplicates is the embedded Duplicates of one node: sharded maps, bounded (the oldest keys go first
// when full) and expiring. Replies are sealed when a Sealer is given.
type MemoryDuplicates struct {
	seed     maphash.Seed
	shards   [dupShards]dupShard
	perShard int
	sealer   Sealer
	now      func() time.Time
	seq      atomic.Uint64
}

type dupShard struct {
	mu    sync.Mutex
	m     map[string]memDup
	order []dupRef // keys in the order they were claimed
	head  int      // order[:head] are gone
}

type memDup struct {
	token   uint64
	done    bool
	reply   []byte
	expires int64 // unix nanoseconds
}

type dupRef struct {
	key   string
	token uint64
}

// NewMemoryDuplicates returns an empty store holding at most max keys (0: DefaultDupEntries); sealer may be
// nil (replies then stay in clear, in this process's memory only); now may be nil (time.Now).
func NewMemoryDuplicates(max int, sealer Sealer, now func() time.Time) *MemoryDuplicates {
	if max <= 0 {
		max = DefaultDupEntries
	}
	if now == nil {
		now = time.Now
	}
	d := &MemoryDuplicates{seed: maphash.MakeSeed(), perShard: (max + dupShards - 1) / dupShards, sealer: sealer, now: now}
	for i := range d.shards {
		d.shards[i].m = map[string]memDup{}
	}
	return d
}

func (d *MemoryDuplicates) shard(key string) *dupShard {
	return &d.shards[maphash.String(d.seed, key)%dupShards]
}

// Claim implements Duplicates.
func (d *MemoryDuplicates) Claim(_ context.Context, key string, ttl time.Duration) (DupClaim, error) {
	now := d.now().UnixNano()
	sh := d.shard(key)
	sh.mu.Lock()
	if e, ok := sh.m[key]; ok && e.expires > now {
		if !e.done {
			sh.mu.Unlock()
			return DupClaim{State: DupInFlight}, nil
		}
		sealed := e.reply
		sh.mu.Unlock()
		reply, err := d.open(sealed)
		if err != nil {
			return DupClaim{}, err
		}
		return DupClaim{State: DupDone, Reply: reply}, nil
	}
	token := d.seq.Add(1)
	sh.m[key] = memDup{token: token, expires: now + int64(ttl)}
	sh.order = append(sh.order, dupRef{key: key, token: token})
	sh.trim(now, d.perShard)
	sh.mu.Unlock()
	return DupClaim{State: DupNew, Token: strconv.FormatUint(token, 36)}, nil
}

// trim forgets keys from the oldest on while the shard is over its bound or they have expired.
func (sh *dupShard) trim(now int64, max int) {
	for sh.head < len(sh.order) {
		ref := sh.order[sh.head]
		e, ok := sh.m[ref.key]
		current := ok && e.token == ref.token
		if current && len(sh.m) <= max && e.expires > now {
			break
		}
		if current {
			delete(sh.m, ref.key)
		}
		sh.order[sh.head] = dupRef{}
		sh.head++
	}
	if sh.head > 1024 && sh.head*2 > len(sh.order) {
		sh.order = append(sh.order[:0], sh.order[sh.head:]...)
		sh.head = 0
	}
}

// Complete implements Duplicates.
func (d *MemoryDuplicates) Complete(_ context.Context, key string, c DupClaim, reply []byte, ttl time.Duration) error {
	token, err := strconv.ParseUint(c.Token, 36, 64)
	if err != nil {
		return fmt.Errorf("duplicates: bad claim token %q", c.Token)
	}
	sealed, err := d.seal(reply)
	if err != nil {
		return err
	}
	sh := d.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.m[key]; ok && e.token == token {
		e.done, e.reply, e.expires = true, sealed, d.now().Add(ttl).UnixNano()
		sh.m[key] = e
	}
	return nil
}

// Release implements Duplicates.
func (d *MemoryDuplicates) Release(_ context.Context, key string, c DupClaim) error {
	token, err := strconv.ParseUint(c.Token, 36, 64)
	if err != nil {
		return fmt.Errorf("duplicates: bad claim token %q", c.Token)
	}
	sh := d.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.m[key]; ok && e.token == token {
		delete(sh.m, key)
	}
	return nil
}

// Len returns the number of keys held, expired ones not yet trimmed included.
func (d *MemoryDuplicates) Len() int {
	n := 0
	for i := range d.shards {
		sh := &d.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

func (d *MemoryDuplicates) seal(reply []byte) ([]byte, error) {
	if d.sealer == nil {
		return append([]byte(nil), reply...), nil
	}
	s, err := d.sealer.Seal(reply)
	if err != nil {
		return nil, fmt.Errorf("duplicates: seal: %w", err)
	}
	return s, nil
}

func (d *MemoryDuplicates) open(sealed []byte) ([]byte, error) {
	if d.sealer == nil {
		return append([]byte(nil), sealed...), nil
	}
	p, err := d.sealer.Open(sealed)
	if err != nil {
		return nil, fmt.Errorf("duplicates: open: %w", err)
	}
	return p, nil
}
