package router

import (
	"errors"
	"sync/atomic"
	"time"
)

// Event is something a link reports about itself or about a request it carried.
type Event uint8

// The link events.
const (
	Up      Event = iota // the link is connected (and signed on): it can take requests
	Down                 // the link is lost
	Success              // a request got its response in time
	Timeout              // a request got no response before its deadline
	Failure              // a request failed on the link (connection reset, unusable response)
)

// LinkID names one connection: an acquirer, one of its endpoints, and a connection number from 0.
type LinkID struct {
	Acquirer string
	Endpoint string
	Conn     int
}

// Balancer errors.
var (
	// ErrNoEndpoint means no endpoint of the acquirer or of its fallbacks can take the request now.
	ErrNoEndpoint = errors.New("router: no endpoint of the acquirer or its fallbacks can take the request")
	// ErrAlreadySent means the request was written to a link: it must never go anywhere else.
	ErrAlreadySent = errors.New("router: the request was sent; it must not go elsewhere")
	// ErrLinkDown means the pinned link is not up.
	ErrLinkDown = errors.New("router: the pinned link is down")
	// ErrUnknownLink means a LinkID names no link of the balancer.
	ErrUnknownLink = errors.New("router: unknown link")
)

// Balancer spreads requests over the endpoints and connections of each acquirer, following link health and
// each endpoint's circuit breaker, and fails over to the next endpoint and then to the fallback acquirers
// for a request that was never written to a socket. It holds no sockets; the links report to it. It is safe
// for concurrent use, and a pick does not allocate.
type Balancer struct {
	pools map[string]*pool
}

type pool struct {
	name     string
	strategy Strategy
	eps      []*endpoint
	schedule []uint8 // Weighted: endpoint order over one cycle of the weights, interleaved
	next     atomic.Uint64
}

type endpoint struct {
	name, address string
	index         int
	links         []link
	inflight      atomic.Int64
	br            *breaker
}

type link struct {
	up       atomic.Bool
	inflight atomic.Int64
}

// NewBalancer makes a balancer for acquirers (Table.Acquirers). now gives the time for the breakers' cool-
// downs (time.Now if nil). Links start down: each reports Up when it connects. Endpoints of prev (the
// balancer of the table being replaced) that keep their acquirer, name, address, connection count and
// breaker settings keep their link state, in-flight counts and breaker; prev may be nil.
func NewBalancer(acquirers []*Acquirer, now func() time.Time, prev *Balancer) *Balancer {
	if now == nil {
		now = time.Now
	}
	b := &Balancer{pools: make(map[string]*pool, len(acquirers))}
	for _, a := range acquirers {
		p := &pool{name: a.Name, strategy: a.Strategy}
		for i, e := range a.Endpoints {
			ep := prev.endpoint(a, e)
			if ep == nil {
				ep = &endpoint{name: e.Name, address: e.Address, links: make([]link, max(e.Connections, 1)),
					br: newBreaker(a.Breaker, now)}
			}
			ep.index = i
			p.eps = append(p.eps, ep)
		}
		p.schedule = smoothWeights(a.Endpoints)
		b.pools[a.Name] = p
	}
	return b
}

// endpoint finds the state of an unchanged endpoint in a previous balancer.
func (b *Balancer) endpoint(a *Acquirer, e Endpoint) *endpoint {
	if b == nil || b.pools[a.Name] == nil {
		return nil
	}
	for _, ep := range b.pools[a.Name].eps {
		if ep.name == e.Name && ep.address == e.Address && len(ep.links) == max(e.Connections, 1) &&
			ep.br.cfg == a.Breaker.withDefaults() {
			return ep
		}
	}
	return nil
}

// smoothWeights gives the order in which weighted round-robin visits the endpoints over one cycle: each
// endpoint as often as its weight, spread out rather than in runs (the "smooth" method of nginx).
func smoothWeights(eps []Endpoint) []uint8 {
	total := 0
	for _, e := range eps {
		total += e.Weight
	}
	cur := make([]int, len(eps))
	out := make([]uint8, 0, total)
	for range total {
		best := 0
		for i, e := range eps {
			cur[i] += e.Weight
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		out = append(out, uint8(best))
	}
	return out
}

// Observe takes an event about a link: Up and Down set its health; Success, Timeout and Failure of
// requests sent outside an Attempt feed the endpoint's breaker.
func (b *Balancer) Observe(id LinkID, ev Event) error {
	ep, ln := b.find(id)
	if ln == nil {
		return ErrUnknownLink
	}
	switch ev {
	case Up, Down:
		ln.up.Store(ev == Up)
	default:
		ep.br.record(ev == Success, false)
	}
	return nil
}

func (b *Balancer) find(id LinkID) (*endpoint, *link) {
	p := b.pools[id.Acquirer]
	if p == nil {
		return nil, nil
	}
	for _, ep := range p.eps {
		if ep.name == id.Endpoint && id.Conn >= 0 && id.Conn < len(ep.links) {
			return ep, &ep.links[id.Conn]
		}
	}
	return nil, nil
}

// EndpointStatus is a snapshot of an endpoint, for the admin API and metrics.
type EndpointStatus struct {
	Acquirer, Endpoint string
	LinksUp            int
	InFlight           int64
	Breaker            BreakerState
}

// Status gives a snapshot of every endpoint of an acquirer.
func (b *Balancer) Status(acquirer string) []EndpointStatus {
	p := b.pools[acquirer]
	if p == nil {
		return nil
	}
	out := make([]EndpointStatus, len(p.eps))
	for i, ep := range p.eps {
		out[i] = EndpointStatus{Acquirer: acquirer, Endpoint: ep.name, InFlight: ep.inflight.Load(), Breaker: ep.br.State()}
		for j := range ep.links {
			if ep.links[j].up.Load() {
				out[i].LinksUp++
			}
		}
	}
	return out
}

// Choice is the link picked for a request.
type Choice struct {
	Link    LinkID
	Address string // the endpoint's address
	ep      *endpoint
	ln      *link
	probe   bool // a half-open breaker's probe
}

type attemptState uint8

const (
	picking attemptState = iota // nothing held; Next may pick
	holding                     // a link is picked; the caller must report NotSent or Sent
	sent                        // written to the link: pinned for good
	done                        // the outcome is reported
)

// Attempt carries one request from the pick to its outcome. It models the one rule that keeps money safe
// in failover: a request that was never written to a socket may go to another endpoint or acquirer
// (NotSent, then Next); once written (Sent), it can only end on that link (Done), so one purchase never
// reaches two acquirers. Use it from one goroutine; it is a value, and does not allocate.
type Attempt struct {
	b       *Balancer
	chain   []*Acquirer // the fallbacks, after primary
	primary *Acquirer
	step    int    // 0: primary; i: chain[i-1]
	tried   uint64 // endpoints of the current acquirer already tried
	pinned  bool   // only the link pin may be used
	pin     LinkID
	pinUsed bool
	choice  Choice
	state   attemptState
}

// Begin starts an attempt on an acquirer, then its fallbacks in order (Route.Acquirer, Route.Fallbacks).
func (b *Balancer) Begin(primary *Acquirer, fallbacks []*Acquirer) Attempt {
	return Attempt{b: b, primary: primary, chain: fallbacks}
}

// BeginPinned starts an attempt that may only use one link, for a reversal or an advice that must follow
// its original request. It ignores the breaker (a reversal must reach the bank that has the original) but
// not the link's health, and it never fails over.
func (b *Balancer) BeginPinned(id LinkID) Attempt {
	return Attempt{b: b, pinned: true, pin: id}
}

func (a *Attempt) acquirer() *Acquirer {
	if a.step == 0 {
		return a.primary
	}
	return a.chain[a.step-1]
}

// Next picks a link: the strategy's choice among the current acquirer's endpoints that have a link up, a
// breaker that lets the request through and were not tried yet by this attempt; when none is left, the next
// fallback acquirer. It gives ErrNoEndpoint when the chain is exhausted and ErrAlreadySent after Sent.
// Calling Next again without reporting the previous pick counts that pick as NotSent.
func (a *Attempt) Next() (Choice, error) {
	switch a.state {
	case holding:
		a.NotSent() // a pick that was not reported is treated as never sent
	case sent, done:
		return Choice{}, ErrAlreadySent
	}
	if a.pinned {
		return a.nextPinned()
	}
	for ; a.step <= len(a.chain); a.step, a.tried = a.step+1, 0 {
		acq := a.acquirer()
		if acq == nil || a.step > 0 && acq == a.primary { // a BIN-table rule's fallbacks may name the BIN's acquirer
			continue
		}
		p := a.b.pools[acq.Name]
		if p == nil {
			continue
		}
		if c, ok := p.pick(&a.tried); ok {
			a.choice, a.state = c, holding
			return c, nil
		}
	}
	return Choice{}, ErrNoEndpoint
}

func (a *Attempt) nextPinned() (Choice, error) {
	if a.pinUsed {
		return Choice{}, ErrLinkDown
	}
	ep, ln := a.b.find(a.pin)
	if ln == nil {
		return Choice{}, ErrUnknownLink
	}
	if !ln.up.Load() {
		return Choice{}, ErrLinkDown
	}
	a.pinUsed = true
	ep.inflight.Add(1)
	ln.inflight.Add(1)
	a.choice = Choice{Link: a.pin, Address: ep.address, ep: ep, ln: ln}
	a.state = holding
	return a.choice, nil
}

// NotSent reports that the picked link never got a byte of the request (queue full, link closed before the
// write): the request may try another endpoint with Next.
func (a *Attempt) NotSent() {
	if a.state != holding {
		return
	}
	c := &a.choice
	c.ln.inflight.Add(-1)
	c.ep.inflight.Add(-1)
	c.ep.br.unused(c.probe)
	a.tried |= 1 << c.ep.index
	a.state = picking
}

// Sent reports that the request was written (even in part) to the picked link: from now on it belongs to
// that link, and Next refuses to pick again.
func (a *Attempt) Sent() {
	if a.state == holding {
		a.state = sent
	}
}

// Done reports the outcome of a sent request (Success, Timeout or Failure) and releases its place.
func (a *Attempt) Done(ev Event) {
	if a.state != sent {
		return
	}
	c := &a.choice
	c.ln.inflight.Add(-1)
	c.ep.inflight.Add(-1)
	c.ep.br.record(ev == Success, c.probe)
	a.state = done
}

// pick chooses an endpoint not in tried by the pool's strategy, then its up link with the fewest requests
// in flight.
func (p *pool) pick(tried *uint64) (Choice, bool) {
	skip := *tried
	for {
		i := p.choose(skip)
		if i < 0 {
			return Choice{}, false
		}
		ep := p.eps[i]
		ok, probe := ep.br.acquire()
		if !ok { // another goroutine took the last probe
			skip |= 1 << i
			continue
		}
		ln, conn := ep.bestLink()
		if ln == nil { // the link went down since choose
			ep.br.unused(probe)
			skip |= 1 << i
			continue
		}
		ln.inflight.Add(1)
		ep.inflight.Add(1)
		return Choice{Link: LinkID{p.name, ep.name, conn}, Address: ep.address, ep: ep, ln: ln, probe: probe}, true
	}
}

func (ep *endpoint) usable() bool {
	for i := range ep.links {
		if ep.links[i].up.Load() {
			return ep.br.ready()
		}
	}
	return false
}

func (ep *endpoint) bestLink() (*link, int) {
	best := -1
	var least int64
	for i := range ep.links {
		l := &ep.links[i]
		if n := l.inflight.Load(); l.up.Load() && (best < 0 || n < least) {
			best, least = i, n
		}
	}
	if best < 0 {
		return nil, 0
	}
	return &ep.links[best], best
}

// choose gives the index of the endpoint the strategy picks among the usable ones not in skip, or -1.
func (p *pool) choose(skip uint64) int {
	n := len(p.eps)
	ok := func(i int) bool { return skip&(1<<i) == 0 && p.eps[i].usable() }
	switch p.strategy {
	case Weighted:
		start := p.next.Add(1)
		for k := range uint64(len(p.schedule)) {
			if i := int(p.schedule[(start+k)%uint64(len(p.schedule))]); ok(i) {
				return i
			}
		}
		for i := range n { // endpoints of weight 0 are standbys
			if ok(i) {
				return i
			}
		}
	case LeastInFlight:
		start := int(p.next.Add(1) % uint64(n)) // rotate ties
		best := -1
		var least int64
		for k := range n {
			i := (start + k) % n
			if v := p.eps[i].inflight.Load(); ok(i) && (best < 0 || v < least) {
				best, least = i, v
			}
		}
		return best
	default:
		start := p.next.Add(1)
		for k := range uint64(n) {
			if i := int((start + k) % uint64(n)); ok(i) {
				return i
			}
		}
	}
	return -1
}
