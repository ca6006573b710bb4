package link

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestPoolKeepsConnectionsPerEndpointAndClosesThemAll(t *testing.T) {
	banks := []*fakeBank{newFakeBank(t).start(), newFakeBank(t).start()}
	tmpl := testConfig(t, banks[0])
	p, err := NewPool([]Acquirer{{
		Name: "bank1",
		Endpoints: []Endpoint{
			{Name: "east", Address: banks[0].addr(), Conns: 2},
			{Name: "west", Address: banks[1].addr(), Conns: 2},
		},
		Link: tmpl,
	}})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	closed := false
	defer func() {
		if !closed {
			p.Close(context.Background())
		}
	}()
	links := p.Links("bank1")
	if len(links) != 4 {
		t.Fatalf("%d links, want 4", len(links))
	}
	for _, l := range links {
		waitState(t, l, StateReady)
	}
	var ids []string
	for _, st := range p.Status() {
		ids = append(ids, st.ID.String())
		if st.State != StateReady {
			t.Errorf("%s: %s", st.ID, st.State)
		}
	}
	if want := []string{"bank1/east/0", "bank1/east/1", "bank1/west/0", "bank1/west/1"}; !slices.Equal(ids, want) {
		t.Errorf("status ids %v, want %v", ids, want)
	}
	for i, id := range []LinkID{{"bank1", "east", 1}, {"bank1", "west", 0}} {
		resp, err := p.Link(id).Send(context.Background(), purchase(t, banks[0].spec, fmt.Sprintf("%06d", 500+i), "TERM0001"), soon())
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		resp.Release()
	}
	if p.Link(LinkID{"bank1", "north", 0}) != nil || p.Links("bank2") != nil {
		t.Error("unknown link or acquirer found")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	closed = true
	for i, b := range banks {
		got := b.received()
		if n := count(got, "0800/001"); n != 2 {
			t.Errorf("bank %d: %d sign-ons, want 2", i, n)
		}
		if n := count(got, "0800/002"); n != 2 {
			t.Errorf("bank %d: %d sign-offs, want 2", i, n)
		}
	}
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

func TestNewPoolRefusesBadAcquirers(t *testing.T) {
	b := newFakeBank(t)
	tmpl := testConfig(t, b)
	ep := []Endpoint{{Name: "a", Address: b.addr()}}
	for _, tc := range []struct {
		name string
		acqs []Acquirer
	}{
		{"repeated acquirer", []Acquirer{{Name: "x", Endpoints: ep, Link: tmpl}, {Name: "x", Endpoints: ep, Link: tmpl}}},
		{"no name", []Acquirer{{Endpoints: ep, Link: tmpl}}},
		{"no endpoint", []Acquirer{{Name: "x", Link: tmpl}}},
		{"repeated endpoint", []Acquirer{{Name: "x", Endpoints: append(ep, ep[0]), Link: tmpl}}},
	} {
		if _, err := NewPool(tc.acqs); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}
