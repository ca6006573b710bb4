package loadtest

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/railswitch/railswitch/codec"
)

// Kind is a transaction type of the mix.
type Kind uint8

// The transaction kinds.
const (
	Purchase Kind = iota // 0200, processing code 000000
	Balance              // 0100, processing code 310000
	Void                 // 0200, processing code 200000, field 90 naming an approved purchase of the terminal
	numKinds
)

var kindNames = [numKinds]string{"purchase", "balance", "void"}

// String names the value.
func (k Kind) String() string { return kindNames[k] }

// Mix is the weight of each kind; a request's kind is drawn in proportion to the weights.
type Mix [numKinds]int

// DefaultMix is purchases only.
var DefaultMix = Mix{Purchase: 1}

// ParseMix reads "purchase=80,balance=10,void=10".
func ParseMix(s string) (Mix, error) {
	var m Mix
	for _, part := range strings.Split(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(w)
		if !ok || err != nil || n < 0 {
			return m, fmt.Errorf("mix %q: want kind=weight, e.g. purchase=80,balance=10,void=10", part)
		}
		k := kindByName(name)
		if k == numKinds {
			return m, fmt.Errorf("mix: unknown kind %q (want %s)", name, strings.Join(kindNames[:], ", "))
		}
		m[k] = n
	}
	if m.total() == 0 {
		return m, fmt.Errorf("mix %q: weights sum to 0", s)
	}
	return m, nil
}

func kindByName(s string) Kind {
	for k, n := range kindNames {
		if n == s {
			return Kind(k)
		}
	}
	return numKinds
}

func (m Mix) total() int {
	t := 0
	for _, w := range m {
		t += w
	}
	return t
}

// pick returns the kind that x (any number) falls on, spreading consecutive x over the weights.
func (m Mix) pick(x uint64) Kind {
	v := int(x % uint64(m.total()))
	for k, w := range m {
		if v < w {
			return Kind(k)
		}
		v -= w
	}
	return Purchase
}

// Builder makes the requests of one virtual terminal and learns from their replies. Builders are pluggable:
// HostBuilder drives a host spec (a bank simulator, the no-switch ceiling); TerminalBuilder a terminal spec,
// signing on first (Session) and MACing each request (Sealer).
type Builder interface {
	// Build fills m, which is empty, with the terminal's next request of kind k at time now, and returns
	// the kind it built (a builder may fall back, e.g. to a purchase when there is nothing to void). A reply
	// matches the request when it echoes its fields 11 and 41 and its MTI is the request's plus 10.
	Build(m *codec.Message, k Kind, now time.Time) (Kind, error)
	// Answered gives the reply to the request built last; resp is nil when none came in time. An error
	// means the reply fails the terminal's checks (it counts as invalid, not as answered).
	Answered(req, resp *codec.Message) error
}

// NewBuilder makes the builder of terminal number i (from 0).
type NewBuilder func(spec *codec.Spec, i int) (Builder, error)

// HostBuilder builds host-spec (iso87-*) requests: 0200 purchases, 0100 balance inquiries and 0200 voids of
// the terminal's own approved purchases. Each terminal has its own card number, terminal id and STAN.
type HostBuilder struct {
	pan, tid, mid []byte
	stan          int
	open          []original // approved purchases not yet voided, newest last
	last          original   // the purchase built last, until it is answered
}

// original is what a void needs of a purchase.
type original struct {
	stan   [6]byte
	when   [10]byte
	amount int64
}

// acquirer is field 32 of every request (8 digits: field 90 carries it with 3 leading zeros).
const acquirer = "00000001"

// NewHostBuilder is the NewBuilder of host specs. Card numbers are panPrefix, the terminal number and a
// Luhn check digit, 16 digits in all.
func NewHostBuilder(panPrefix string) NewBuilder {
	return func(_ *codec.Spec, i int) (Builder, error) {
		if len(panPrefix) < 1 || len(panPrefix) > 9 || strings.Trim(panPrefix, "0123456789") != "" {
			return nil, fmt.Errorf("card prefix %q: want 1 to 9 digits", panPrefix)
		}
		body := panPrefix + fmt.Sprintf("%0*d", 15-len(panPrefix), i)
		return &HostBuilder{
			pan: []byte(body + luhn(body)),
			tid: fmt.Appendf(nil, "LT%06d", i%1000000),
			mid: fmt.Appendf(nil, "LOADTEST%07d", i%10000000),
		}, nil
	}
}

// Build implements Builder. It formats without fmt: it runs for every request of the load test.
func (b *HostBuilder) Build(m *codec.Message, k Kind, now time.Time) (Kind, error) {
	b.stan = b.stan%999999 + 1
	var stan [6]byte
	putDigits(stan[:], b.stan)
	var when [10]byte // MMDDhhmmss
	now = now.UTC()
	_, mo, d := now.Date()
	h, mi, sec := now.Clock()
	putDigits(when[0:2], int(mo))
	putDigits(when[2:4], d)
	putDigits(when[4:6], h)
	putDigits(when[6:8], mi)
	putDigits(when[8:10], sec)
	var rrn [12]byte
	copy(rrn[:6], when[4:])
	copy(rrn[6:], stan[:])
	if k == Void && len(b.open) == 0 {
		k = Purchase // nothing to void yet
	}
	mti, proc := "0200", "000000"
	switch k {
	case Balance:
		mti, proc = "0100", "310000"
	case Void:
		proc = "200000"
	}
	amount := 100 + int64(b.stan*7919%99900)
	if err := m.SetMTI(mti); err != nil {
		return k, err
	}
	for _, f := range [...]struct {
		n int
		v []byte
	}{{2, b.pan}, {3, []byte(proc)}, {7, when[:]}, {11, stan[:]}, {12, when[4:]}, {13, when[:4]},
		{22, []byte("021")}, {25, []byte("00")}, {32, []byte(acquirer)}, {37, rrn[:]}, {41, b.tid}, {42, b.mid},
		{49, []byte("156")}} {
		if err := m.Set(f.n, f.v); err != nil {
			return k, err
		}
	}
	switch k {
	case Purchase:
		b.last = original{stan: stan, when: when, amount: amount}
	case Void:
		o := b.open[len(b.open)-1]
		b.open = b.open[:len(b.open)-1]
		amount = o.amount
		var f90 [42]byte // original MTI, STAN, transmission time, acquirer (11), forwarder (11)
		copy(f90[:], "0200")
		copy(f90[4:], o.stan[:])
		copy(f90[10:], o.when[:])
		copy(f90[20:], "000"+acquirer+"00000000000")
		if err := m.Set(90, f90[:]); err != nil {
			return k, err
		}
	}
	if k != Balance {
		return k, m.SetAmount(4, amount)
	}
	return k, nil
}

// Answered implements Builder: an approved purchase becomes voidable.
func (b *HostBuilder) Answered(req, resp *codec.Message) error {
	if resp == nil {
		return nil
	}
	proc, _ := req.Value(3)
	code, _ := resp.Value(39)
	if string(proc) != "000000" || string(code) != "00" {
		return nil
	}
	const keep = 16
	if len(b.open) == keep {
		b.open = append(b.open[:0], b.open[1:]...)
	}
	b.open = append(b.open, b.last)
	return nil
}

// putDigits writes v as len(dst) decimal digits, zero-padded on the left.
func putDigits(dst []byte, v int) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
}

// luhn returns the check digit that makes digits+check pass the Luhn test.
func luhn(digits string) string {
	sum := 0
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if (len(digits)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return strconv.Itoa((10 - sum%10) % 10)
}
