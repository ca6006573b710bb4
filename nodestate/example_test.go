package nodestate_test

import (
	"context"
	"time"

	"github.com/railswitch/railswitch/nodestate"
	"github.com/railswitch/railswitch/saf"
	"github.com/redis/go-redis/v9"
)

// Wiring of the shared state on one node: the stores, the node's reversal queue on Redis, and the takeover
// of dead nodes' entries into this node's queue. (Compiled, not run: it needs Redis and a bank.)
func ExampleLease_RunTakeover() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	st, err := nodestate.Open(ctx, nodestate.Config{Type: nodestate.TypeRedis, Heartbeat: 2 * time.Second},
		nodestate.Deps{Redis: rdb, NodeID: "node-a", NodeNumber: 1,
			OnLeaseLost: func(error) { /* stop the queue and restart the switch */ }})
	if err != nil {
		return
	}
	defer st.Close()
	store, err := st.SAFStore(ctx, "reversals", "")
	if err != nil {
		return
	}
	var sealer saf.Sealer // saf.NewAESGCM(saf.KeyFromModule(...)): the same DEK on every node
	var sender saf.Sender // the switch's bank links
	q, err := saf.Open(ctx, saf.Config{Store: store, Sealer: sealer, Sender: sender, Node: "node-a"})
	if err != nil {
		store.Close()
		return
	}
	defer q.Close()
	go st.Lease.RunTakeover(ctx, func(ctx context.Context, node, set string, e *saf.Entry) error {
		msg, err := sealer.Open(e.Sealed)
		if err != nil {
			return err
		}
		defer clear(msg)
		return q.Enqueue(ctx, e.Acquirer, e.Link, e.TxnID, msg)
	}, nil)
}
