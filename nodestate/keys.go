package nodestate

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultPrefix is the key prefix when none is configured.
const DefaultPrefix = "railswitch"

// Keys are "<prefix>:{<tag>}:<rest>". The hash tag groups the keys one operation touches (a terminal's keys,
// an acquirer's counter, a node's queue) in one Redis Cluster slot while spreading terminals, acquirers and
// nodes over the cluster. Names inside keys are escaped (escape) so a terminal id or acquirer name can
// neither end a hash tag nor run into the next part of the key.
type keyspace struct{ prefix string }

func newKeyspace(prefix string) (keyspace, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		return keyspace{}, fmt.Errorf("nodestate: key prefix %q may not contain { or }", prefix)
	}
	return keyspace{prefix: prefix}, nil
}

// escape percent-encodes the characters that have a meaning in a key: % { } and :.
func escape(s string) string {
	if !strings.ContainsAny(s, "%{}:") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%', '{', '}', ':':
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func (k keyspace) session(tid string) string { return k.prefix + ":{t:" + escape(tid) + "}:session" }
func (k keyspace) batch(tid, batch string) string {
	return k.prefix + ":{t:" + escape(tid) + "}:batch:" + escape(batch)
}
func (k keyspace) txn(tid, batch, trace string) string {
	return k.prefix + ":{t:" + escape(tid) + "}:txn:" + escape(batch) + ":" + escape(trace)
}
func (k keyspace) rrn(tid, rrn string) string {
	return k.prefix + ":{t:" + escape(tid) + "}:rrn:" + escape(rrn)
}
func (k keyspace) stan(acquirer string, day int) string {
	return fmt.Sprintf("%s:{stan:%s}:%08d", k.prefix, escape(acquirer), day)
}

// nodes is the set of node names that ever held a lease (the candidates of a takeover).
func (k keyspace) nodes() string { return k.prefix + ":{saf}:nodes" }

// nodeKeys are the keys of one node's reversal queue, all in the node's slot.
type nodeKeys struct {
	lease, claim, sets string
	base               string
}

func (k keyspace) node(node string) nodeKeys {
	base := k.prefix + ":{saf:" + escape(node) + "}:"
	return nodeKeys{lease: base + "lease", claim: base + "claim", sets: base + "sets", base: base}
}

// meta holds the entries' state (JSON without the sealed message) by id; msg their sealed messages.
func (n nodeKeys) meta(set string) string { return n.base + "set:" + escape(set) + ":meta" }
func (n nodeKeys) msg(set string) string  { return n.base + "set:" + escape(set) + ":msg" }

// checkName refuses the empty name.
func checkName(what, v string) error {
	if v == "" {
		return errors.New("nodestate: empty " + what)
	}
	return nil
}
