package nodestate

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/railswitch/railswitch/flow"
	"github.com/railswitch/railswitch/link"
	"github.com/railswitch/railswitch/saf"
	"github.com/railswitch/railswitch/terminal"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Types of node state.
const (
	TypeEmbedded = "embedded" // files of this node only (the default)
	TypeRedis    = "redis"    // shared by every node through Redis
)

// Config is the switch's `state:` section (docs/nodestate.md). Durations are written like 10s or 192h.
type Config struct {
	Type      string        `yaml:"type"`       // embedded (default) or redis
	Dir       string        `yaml:"dir"`        // embedded: directory of the files (default "state", under the data dir)
	Prefix    string        `yaml:"prefix"`     // redis: key prefix (default "railswitch")
	TxnTTL    time.Duration `yaml:"txn_ttl"`    // how long originals and batch totals are kept (default 192h)
	Lease     time.Duration `yaml:"lease"`      // redis: node lease (default 10s)
	Heartbeat time.Duration `yaml:"heartbeat"`  // redis: lease renewal and takeover period (default 2s)
	STANBlock int           `yaml:"stan_block"` // redis: STANs reserved per Redis call (default 1)
	MaxTxns   int           `yaml:"max_txns"`   // embedded: originals kept in memory, oldest forgotten first (default 1,000,000)
}

// Validate checks the values and fills in the defaults.
func (c *Config) Validate() error {
	var errs []error
	switch c.Type {
	case "":
		c.Type = TypeEmbedded
	case TypeEmbedded, TypeRedis:
	default:
		errs = append(errs, fmt.Errorf("state.type %q: use embedded or redis", c.Type))
	}
	if c.Dir == "" {
		c.Dir = "state"
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if _, err := newKeyspace(c.Prefix); err != nil {
		errs = append(errs, fmt.Errorf("state.prefix: %w", err))
	}
	if c.TxnTTL < 0 || c.Lease < 0 || c.Heartbeat < 0 || c.STANBlock < 0 || c.MaxTxns < 0 {
		errs = append(errs, errors.New("state: txn_ttl, lease, heartbeat, stan_block and max_txns cannot be negative"))
	}
	if c.TxnTTL == 0 {
		c.TxnTTL = DefaultTxnTTL
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.STANBlock == 0 {
		c.STANBlock = 1
	}
	if c.Lease < 2*c.Heartbeat {
		errs = append(errs, fmt.Errorf("state: lease %s must be at least twice the heartbeat %s", c.Lease, c.Heartbeat))
	}
	if c.STANBlock > 10000 {
		errs = append(errs, fmt.Errorf("state.stan_block %d: at most 10000", c.STANBlock))
	}
	return errors.Join(errs...)
}

// Deps is what Open needs from the switch besides the Config.
type Deps struct {
	Redis      redis.UniversalClient // required for type redis (with ContextTimeoutEnabled)
	DataDir    string                // base of a relative Config.Dir
	NodeID     string                // node.id: names the node's lease and queue
	NodeNumber int                   // node.number 0-99: goes into RRNs
	// NoFsync makes the embedded files skip fsync (journal.fsync: false: a crash may lose the last writes).
	NoFsync bool
	// SessionsFile is the embedded session file (empty: sessions in memory only).
	SessionsFile string
	Location     *time.Location   // midnight of the STAN day (default time.Local)
	Now          func() time.Time // default time.Now
	Log          *zap.Logger
	// OnLeaseLost is called once when the node loses its lease (type redis): stop the reversal queue and
	// restart the switch.
	OnLeaseLost func(error)
}

// State is the node state the switch wires into its terminal manager, flow, links and reversal queue.
type State struct {
	Sessions terminal.Sessions
	Batches  terminal.Batches
	Txns     flow.TxnStore
	Counter  link.Counter
	// Lease is the node's lease (type redis; nil when embedded). Run Lease.RunTakeover to drain the queues
	// of dead nodes.
	Lease *Lease

	cfg     Config
	deps    Deps
	closers []func() error
}

// Open builds the stores of cfg (validated here). For type redis it takes the node's lease, waiting up to
// ctx while an earlier life of the node still holds it.
func Open(ctx context.Context, cfg Config, deps Deps) (*State, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Log == nil {
		deps.Log = zap.NewNop()
	}
	st := &State{cfg: cfg, deps: deps}
	var err error
	switch cfg.Type {
	case TypeRedis:
		err = st.openRedis(ctx)
	default:
		err = st.openEmbedded()
	}
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	return st, nil
}

func (st *State) openRedis(ctx context.Context) error {
	cfg, deps, rdb := st.cfg, st.deps, st.deps.Redis
	if rdb == nil {
		return errors.New("state.type redis needs the redis section (no Redis client)")
	}
	var err error
	if st.Sessions, err = NewRedisSessions(rdb, cfg.Prefix); err != nil {
		return err
	}
	if st.Batches, err = NewRedisBatches(rdb, cfg.Prefix, cfg.TxnTTL); err != nil {
		return err
	}
	if st.Txns, err = NewRedisTxns(rdb, cfg.Prefix, cfg.TxnTTL); err != nil {
		return err
	}
	if st.Counter, err = NewRedisCounter(rdb, RedisCounterConfig{Prefix: cfg.Prefix, Node: deps.NodeNumber,
		Block: cfg.STANBlock, Location: deps.Location, Now: deps.Now, Log: deps.Log}); err != nil {
		return err
	}
	if st.Lease, err = AcquireLease(ctx, rdb, LeaseConfig{Prefix: cfg.Prefix, Node: deps.NodeID, TTL: cfg.Lease,
		Heartbeat: cfg.Heartbeat, OnLost: deps.OnLeaseLost, Log: deps.Log}); err != nil {
		return err
	}
	st.closers = append(st.closers, st.Lease.Close)
	return nil
}

func (st *State) dir() string {
	if filepath.IsAbs(st.cfg.Dir) || st.deps.DataDir == "" {
		return st.cfg.Dir
	}
	return filepath.Join(st.deps.DataDir, st.cfg.Dir)
}

func (st *State) openEmbedded() error {
	sessions, err := terminal.NewMemorySessions(st.deps.SessionsFile)
	if err != nil {
		return fmt.Errorf("nodestate: sessions: %w", err)
	}
	st.Sessions = sessions
	opts := FileOptions{Retention: st.cfg.TxnTTL, MaxEntries: st.cfg.MaxTxns, NoSync: st.deps.NoFsync, Now: st.deps.Now,
		Log: st.deps.Log}
	txns, err := OpenFileTxns(filepath.Join(st.dir(), "txns.log"), opts)
	if err != nil {
		return err
	}
	st.Txns = txns
	st.closers = append(st.closers, txns.Close)
	batches, err := OpenFileBatches(filepath.Join(st.dir(), "batches.log"), opts)
	if err != nil {
		return err
	}
	st.Batches = batches
	st.closers = append(st.closers, batches.Close)
	if st.Counter, err = link.NewLocalCounter(link.CounterConfig{Node: st.deps.NodeNumber, Location: st.deps.Location,
		Now: st.deps.Now, Log: st.deps.Log}); err != nil {
		return err
	}
	return nil
}

// SAFStore returns the store of one of the node's reversal entry sets ("reversals", "intents"): the file
// store in fileDir when embedded, the node's Redis set when redis. The saf.Queue (or the intents) owns it.
func (st *State) SAFStore(ctx context.Context, set, fileDir string) (saf.Store, error) {
	if st.Lease == nil {
		return saf.OpenFileStore(fileDir, saf.FileStoreOptions{Log: st.deps.Log})
	}
	return st.Lease.Store(ctx, set)
}

// Close releases the lease (type redis) or closes the files (embedded). Close the reversal queue first.
func (st *State) Close() error {
	var errs []error
	for i := len(st.closers) - 1; i >= 0; i-- {
		errs = append(errs, st.closers[i]())
	}
	st.closers = nil
	return errors.Join(errs...)
}
