package link

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/railswitch/railswitch/codec"
	"go.uber.org/zap"
)

// LinkID names one connection: an acquirer, one of its endpoints, and a connection number from 0. It has the
// fields of router.LinkID, so router.LinkID(id) converts it.
type LinkID struct {
	Acquirer string
	Endpoint string
	Conn     int
}

// String formats the id as acquirer/endpoint/conn.
func (id LinkID) String() string { return fmt.Sprintf("%s/%s/%d", id.Acquirer, id.Endpoint, id.Conn) }

// Event is something a link reports about itself or about a request it carried. The values follow
// router.Event, so router.Event(ev) converts one.
type Event uint8

// The link events.
const (
	Up      Event = iota // signed on: the link takes requests
	Down                 // the link left the ready state (connection lost, echo misses, closed)
	Success              // a request got its response before its deadline
	Timeout              // a request got no response before its deadline
	Failure              // a request failed on the link: connection lost while it waited
)

var eventNames = [...]string{"up", "down", "success", "timeout", "failure"}

// String names the event.
func (e Event) String() string {
	if int(e) < len(eventNames) {
		return eventNames[e]
	}
	return "event(?)"
}

// Config configures one Link. Zero values take the defaults given on each field.
type Config struct {
	ID      LinkID
	Address string      // host:port of the bank endpoint
	Spec    *codec.Spec // the acquirer's host spec; its framing is the link's
	TLS     *tls.Config // nil: plain TCP; else the TLS client config (ServerName, RootCAs, certificates)
	Counter Counter     // STANs and RRNs of the link's own network messages; share one per process

	SignOnCode    string         // field 70 of the sign-on; default "001"
	SignOffCode   string         // field 70 of the sign-off; default "002"
	EchoCode      string         // field 70 of the echo test; default "301"
	KeyChangeCode string         // field 70 of a bank-initiated key change; default "161"
	NetworkFields map[int]string // extra constant fields on every 0800 the link sends (e.g. 32, 33)
	KeyFields     []int          // fields that match a response to its request; default 11, 41
	NetTimeout    time.Duration  // response deadline of sign-on, echo and sign-off; default 5s
	EchoInterval  time.Duration  // time between echo tests; default 30s; negative disables echo
	EchoMisses    int            // consecutive failed echoes after which the link is redialled; default 3
	DialTimeout   time.Duration  // TCP connect plus TLS handshake; default 5s
	WriteTimeout  time.Duration  // a write blocked this long kills the connection; default 5s
	Backoff       Backoff        // redial delays
	QueueSize     int            // frames waiting for the writer; default 1024
	MaxInFlight   int            // requests awaiting a response; default 4096
	SweepInterval time.Duration  // how often deadlines are checked; default 10ms
	Log           *zap.Logger    // nil logs nothing

	// Injectable for tests.
	Now  func() time.Time                                                     // deadlines and field 7; default time.Now
	Rand func() float64                                                       // jitter in [0,1); default math/rand/v2
	Wait func(context.Context, time.Duration) error                           // backoff wait; default a timer
	Dial func(ctx context.Context, network, address string) (net.Conn, error) // default net.Dialer

	// OnEvent receives link and request events (router health). It runs on the link's goroutines: it must
	// be quick and must not call Drain or Enable.
	OnEvent func(LinkID, Event)
	// OnUnmatched receives a response with no pending request (late, after its deadline, or unknown). It
	// owns the response (Release it once when done). It runs on the reader goroutine: hand the work off.
	// nil releases it; it is logged either way.
	OnUnmatched func(LinkID, *Response)
	// OnKeyChange handles a bank-initiated 0800 key change (field 70 = KeyChangeCode): it reads the key
	// fields of req, may set fields of resp (the 0810 being built), and returns the response code (39).
	// nil answers 0810 with 39 = 96. It runs off the reader goroutine; ctx ends with the connection.
	OnKeyChange func(ctx context.Context, req, resp *codec.Message) string
}

// Backoff gives capped exponential redial delays with jitter: attempt n waits min(Max, Base*2^n), less a
// random part of up to Jitter of it.
type Backoff struct {
	Base   time.Duration // default 100ms
	Max    time.Duration // default 30s
	Jitter float64       // 0..1; default 0.5
}

// Delay returns the wait before redial attempt n (from 0), with r in [0,1) drawing the jitter.
func (b Backoff) Delay(n int, r float64) time.Duration {
	d := b.Base
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return d - time.Duration(float64(d)*b.Jitter*r)
}

func (c *Config) setDefaults() error {
	if c.Spec == nil {
		return errors.New("link: config without spec")
	}
	if c.Address == "" {
		return fmt.Errorf("link %s: config without address", c.ID)
	}
	if c.Counter == nil {
		return fmt.Errorf("link %s: config without counter", c.ID)
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.SignOnCode, "001")
	def(&c.SignOffCode, "002")
	def(&c.EchoCode, "301")
	def(&c.KeyChangeCode, "161")
	if len(c.KeyFields) == 0 {
		c.KeyFields = []int{11, 41}
	}
	if _, err := newKeyer(c.KeyFields); err != nil {
		return fmt.Errorf("link %s: %w", c.ID, err)
	}
	dur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	dur(&c.NetTimeout, 5*time.Second)
	dur(&c.EchoInterval, 30*time.Second)
	dur(&c.DialTimeout, 5*time.Second)
	dur(&c.WriteTimeout, 5*time.Second)
	dur(&c.SweepInterval, 10*time.Millisecond)
	dur(&c.Backoff.Base, 100*time.Millisecond)
	dur(&c.Backoff.Max, 30*time.Second)
	if c.Backoff.Jitter == 0 {
		c.Backoff.Jitter = 0.5
	}
	if c.Backoff.Jitter < 0 || c.Backoff.Jitter > 1 {
		return fmt.Errorf("link %s: backoff jitter %v outside 0..1", c.ID, c.Backoff.Jitter)
	}
	if c.EchoMisses <= 0 {
		c.EchoMisses = 3
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 1024
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 4096
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	if c.Wait == nil {
		c.Wait = sleep
	}
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
