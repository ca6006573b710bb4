package link

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
)

// Endpoint is one address of an acquirer's host, with the number of connections to keep to it.
type Endpoint struct {
	Name    string
	Address string
	Conns   int         // default 1
	TLS     *tls.Config // nil: plain TCP
}

// Acquirer is a bank: its endpoints and the link settings they share. Link is a template; ID, Address and
// TLS are set per connection.
type Acquirer struct {
	Name      string
	Endpoints []Endpoint
	Link      Config
}

// Pool holds the links of every acquirer: Conns connections to each endpoint, named by LinkID.
type Pool struct {
	links []*Link
	byID  map[LinkID]*Link
	byAcq map[string][]*Link
}

// NewPool builds (without starting) the links of the acquirers.
func NewPool(acquirers []Acquirer) (*Pool, error) {
	p := &Pool{byID: map[LinkID]*Link{}, byAcq: map[string][]*Link{}}
	for _, a := range acquirers {
		if _, dup := p.byAcq[a.Name]; dup || a.Name == "" {
			return nil, fmt.Errorf("link: acquirer name %q empty or repeated", a.Name)
		}
		if len(a.Endpoints) == 0 {
			return nil, fmt.Errorf("link: acquirer %s has no endpoint", a.Name)
		}
		for _, e := range a.Endpoints {
			for i := range max(e.Conns, 1) {
				cfg := a.Link
				cfg.ID = LinkID{Acquirer: a.Name, Endpoint: e.Name, Conn: i}
				cfg.Address, cfg.TLS = e.Address, e.TLS
				if _, dup := p.byID[cfg.ID]; dup {
					return nil, fmt.Errorf("link: endpoint %s of acquirer %s repeated", e.Name, a.Name)
				}
				l, err := New(cfg)
				if err != nil {
					return nil, err
				}
				p.links = append(p.links, l)
				p.byID[cfg.ID] = l
				p.byAcq[a.Name] = append(p.byAcq[a.Name], l)
			}
		}
	}
	return p, nil
}

// Start starts every link.
func (p *Pool) Start() {
	for _, l := range p.links {
		l.Start()
	}
}

// Link returns the link named id, or nil.
func (p *Pool) Link(id LinkID) *Link { return p.byID[id] }

// Links returns the links of an acquirer, endpoint by endpoint in configuration order.
func (p *Pool) Links(acquirer string) []*Link { return p.byAcq[acquirer] }

// Status returns the status of every link, in configuration order.
func (p *Pool) Status() []Status {
	out := make([]Status, len(p.links))
	for i, l := range p.links {
		out[i] = l.Status()
	}
	return out
}

// Close closes every link at once (see Link.Close) and returns the first error.
func (p *Pool) Close(ctx context.Context) error {
	errs := make([]error, len(p.links))
	var wg sync.WaitGroup
	for i, l := range p.links {
		wg.Go(func() { errs[i] = l.Close(ctx) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
