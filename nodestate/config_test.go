package nodestate

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/railswitch/railswitch/flow"
	"github.com/railswitch/railswitch/link"
	"go.yaml.in/yaml/v3"
)

func TestConfigFromYAML(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    Config
		wantErr string
	}{
		{"defaults", `{}`, Config{Type: TypeEmbedded, Dir: "state", Prefix: DefaultPrefix, TxnTTL: DefaultTxnTTL,
			Lease: DefaultLease, Heartbeat: DefaultHeartbeat, STANBlock: 1}, ""},
		{"redis", "type: redis\nprefix: rs1\ntxn_ttl: 72h\nlease: 6s\nheartbeat: 1s\nstan_block: 20\n",
			Config{Type: TypeRedis, Dir: "state", Prefix: "rs1", TxnTTL: 72 * time.Hour, Lease: 6 * time.Second,
				Heartbeat: time.Second, STANBlock: 20}, ""},
		{"unknown type", "type: postgres\n", Config{}, "state.type"},
		{"brace in prefix", "prefix: a{b}\n", Config{}, "state.prefix"},
		{"lease too short for the heartbeat", "lease: 3s\nheartbeat: 2s\n", Config{}, "at least twice"},
		{"negative ttl", "txn_ttl: -1h\n", Config{}, "negative"},
		{"block too large", "stan_block: 20000\n", Config{}, "stan_block"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			if err := yaml.Unmarshal([]byte(tc.yaml), &c); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one about %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || c != tc.want {
				t.Fatalf("got %+v %v, want %+v", c, err, tc.want)
			}
		})
	}
}

func TestOpenEmbeddedKeepsOriginalsAndBatchesAcrossARestart(t *testing.T) {
	dir := t.TempDir()
	deps := Deps{DataDir: dir, NodeID: "n1", NodeNumber: 3, SessionsFile: filepath.Join(dir, "sessions.json")}
	ctx := context.Background()
	st, err := Open(ctx, Config{}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Counter.(*link.LocalCounter); !ok || st.Lease != nil {
		t.Fatalf("embedded state: counter %T lease %v", st.Counter, st.Lease)
	}
	if err := st.Txns.Put(ctx, "T1", "000001", "000009", txnOf(9)); err != nil {
		t.Fatal(err)
	}
	if err := st.Batches.Add(ctx, "T1", "000001", true, 500, 1); err != nil {
		t.Fatal(err)
	}
	if err := st.Sessions.Put(ctx, testSession("T1", true, "000001")); err != nil {
		t.Fatal(err)
	}
	q, err := st.SAFStore(ctx, "reversals", filepath.Join(dir, "saf"))
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = Open(ctx, Config{}, deps)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got, ok, err := st.Txns.Get(ctx, "T1", "000001", "000009"); !ok || err != nil || got != txnOf(9) {
		t.Fatalf("original after restart: %+v %v %v (a void after a restart needs it)", got, ok, err)
	}
	if tot, _ := st.Batches.Totals(ctx, "T1", "000001"); tot.DebitAmount != 500 || tot.DebitCount != 1 {
		t.Fatalf("batch after restart: %+v", tot)
	}
	if s, ok, _ := st.Sessions.Get(ctx, "T1"); !ok || !s.SignedOn {
		t.Fatal("session lost")
	}
	if _, _, err := st.Counter.Next(ctx, "bankA"); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRedisSharesStateAndHoldsTheLease(t *testing.T) {
	rdb, prefix := realRedis(t)
	ctx := ctxT(t)
	cfg := Config{Type: TypeRedis, Prefix: prefix, Lease: testTTL, Heartbeat: testHeartbeat}
	a, err := Open(ctx, cfg, Deps{Redis: rdb, NodeID: "n1", NodeNumber: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, cfg, Deps{Redis: newClient(t, redisAddr()), NodeID: "n2", NodeNumber: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.Txns.Put(ctx, "T1", "1", "2", flow.Txn{ID: "x", RRN: "r"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.Txns.GetByRRN(ctx, "T1", "r"); !ok || err != nil {
		t.Fatalf("node b does not see node a's original: %v", err)
	}
	s1, _, _ := a.Counter.Next(ctx, "bankA")
	s2, r2, _ := b.Counter.Next(ctx, "bankA")
	if s1 == s2 || r2[3:5] != "02" {
		t.Fatalf("STANs %s %s, RRN %s", s1, s2, r2)
	}
	store, err := a.SAFStore(ctx, "reversals", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, testEntry("n1", 1, "bankA")); err != nil {
		t.Fatal(err)
	}
	store.Close()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if rdb.Exists(ctx, a.Lease.keys.lease).Val() != 0 {
		t.Fatal("Close kept the lease")
	}
	if _, err := Open(ctx, Config{Type: TypeRedis}, Deps{NodeID: "n3"}); err == nil {
		t.Fatal("redis state without a client accepted")
	}
}
