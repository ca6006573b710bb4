package flow

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/convert"
	"github.com/railswitch/railswitch/hsm"
)

// Acquirer is what the flow needs to know of one acquiring bank beyond its routes and links.
type Acquirer struct {
	Name string
	Spec *codec.Spec // the bank link's spec
	// Requests and Responses are the conversion maps from each terminal spec (by name) to this acquirer's spec
	// and back.
	Requests  map[string]*convert.Converter
	Responses map[string]*convert.Converter
	MAC       hsm.MACAlgorithm // MAC algorithm of the bank link (x9.19 by default)
	MACField  int              // 64 or 128; 0: 64 for messages with one bitmap, 128 when a secondary bitmap is present
	MACBytes  int              // MAC bytes carried in the field (8 by default; the rest zero-filled)
	PINFormat hsm.PINBlockFormat
	Timeout   time.Duration // how long to wait for the bank's answer
	// ReversalMTI is 0400 or 0420.
	ReversalMTI string
	// InstitutionID is field 32 of requests to the bank (the acquiring institution code).
	InstitutionID string
	// ForwarderID is field 33 (forwarding institution), the railway platform's code.
	ForwarderID string

	// The zone keys change under traffic (a key exchange with the bank), so they are read and swapped
	// atomically; each holds the key in force and the one it replaced.
	zpk, zak atomic.Pointer[zoneKey]
}

// zoneKey is a zone key in force and the key it replaced (nil at first).
type zoneKey struct{ cur, prev *hsm.Key }

// ZPK returns the zone PIN key PIN blocks are translated to; nil: the bank takes no PIN blocks.
func (a *Acquirer) ZPK() *hsm.Key { return a.zpk.Load().current() }

// ZAK returns the zone MAC key of the bank link; nil: no MAC.
func (a *Acquirer) ZAK() *hsm.Key { return a.zak.Load().current() }

// PreviousZAK returns the ZAK that the current one replaced, or nil: a response to a request sent before a
// key change may still carry a MAC under it.
func (a *Acquirer) PreviousZAK() *hsm.Key {
	if z := a.zak.Load(); z != nil {
		return z.prev
	}
	return nil
}

// SetZPK puts k in force as the zone PIN key; requests built from now on use it.
func (a *Acquirer) SetZPK(k *hsm.Key) { swapKey(&a.zpk, k) }

// SetZAK puts k in force as the zone MAC key, keeping the one it replaces as PreviousZAK.
func (a *Acquirer) SetZAK(k *hsm.Key) { swapKey(&a.zak, k) }

func swapKey(p *atomic.Pointer[zoneKey], k *hsm.Key) {
	for {
		old := p.Load()
		if p.CompareAndSwap(old, &zoneKey{cur: k, prev: old.current()}) {
			return
		}
	}
}

func (z *zoneKey) current() *hsm.Key {
	if z == nil {
		return nil
	}
	return z.cur
}

// Reversals queues a reversal until the acquirer acknowledges it (store-and-forward). msg is the reversal in
// the acquirer's spec, packed; link pins it to the link of the original when not empty.
type Reversals interface {
	Enqueue(ctx context.Context, acquirer, link, txnID string, msg []byte) error
}

// Intents make a request's reversal durable before the request leaves for a bank, until it has an outcome:
// a node that stops abruptly in between reverses it at its next start. Begin returns the intent's id.
type Intents interface {
	Begin(ctx context.Context, acquirer, link, txnID string, reversal []byte) (string, error)
	End(ctx context.Context, acquirer, id string) error
}

// macField is the field that carries m's MAC on this acquirer's link.
func (a *Acquirer) macField(m *codec.Message) int {
	if a.MACField != 0 {
		return a.MACField
	}
	return macFieldOf(m)
}
