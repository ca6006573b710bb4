package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/railswitch/railswitch/admin"
	"github.com/railswitch/railswitch/channel"
	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/convert"
	"github.com/railswitch/railswitch/flow"
	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/hsm/payshield"
	"github.com/railswitch/railswitch/journal"
	"github.com/railswitch/railswitch/ledger"
	"github.com/railswitch/railswitch/limits"
	"github.com/railswitch/railswitch/link"
	"github.com/railswitch/railswitch/nodestate"
	"github.com/railswitch/railswitch/router"
	"github.com/railswitch/railswitch/saf"
	"github.com/railswitch/railswitch/specs"
	"github.com/railswitch/railswitch/terminal"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Switch is one running switch node.
type Switch struct {
	cfg         *Config
	log         *zap.Logger
	reg         *prometheus.Registry
	module      hsm.Module // the software module, or a networked HSM's client
	keys        *hsm.KeyStore
	registry    *terminal.Registry
	manager     *terminal.Manager
	router      *router.Router
	balancer    atomic.Pointer[router.Balancer]
	limiter     *limits.Limiter
	redis       *redis.Client // of the cluster-wide limits; nil without a redis: section
	pool        *link.Pool
	acquirers   map[string]*flow.Acquirer
	journal     *journal.Journal
	shippers    []*journal.Shipper
	sinkClosers []io.Closer    // sinks with connections, closed after their shippers stopped
	shipping    sync.WaitGroup // running shippers
	reversals   flow.Reversals
	queue       *saf.Queue
	intents     *intents        // nil without journal fsync: then a crash loses more than intents could save
	dups        flow.Duplicates // retransmission check; nil without a duplicates: section
	channels    []*channel.Channel
	flows       []*flow.Flow
	counter     link.Counter
	state       *nodestate.State
	sealer      saf.Sealer  // seals reversal entries at rest
	leaseLost   atomic.Bool // the shared state's node lease was lost
	takenOver   *prometheus.CounterVec
	metrics     *flow.Metrics
	drained     sync.Map // link id string -> true: taken out of balancing by an operator
	admin       *http.Server
	adminAddr   string
	cancel      context.CancelFunc
}

// Options are what a Switch takes besides its configuration.
type Options struct {
	Log *zap.Logger
	// LMK overrides the LMK from the environment or file (the demo makes a fresh one).
	LMK *hsm.LMK
	// Reversals is the store-and-forward queue; nil builds none (reversals are then logged as lost).
	Reversals flow.Reversals
}

// New builds a switch from its configuration without opening any socket.
func New(cfg *Config, opts Options) (*Switch, error) {
	s := &Switch{cfg: cfg, log: opts.Log, reg: prometheus.NewRegistry(), acquirers: map[string]*flow.Acquirer{},
		reversals: opts.Reversals}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	if err := s.registerMetrics(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	lmk := opts.LMK
	if lmk == nil {
		var err error
		if lmk, err = loadLMK(cfg); err != nil {
			return nil, err
		}
	}
	keys, err := hsm.OpenKeyStore(cfg.Path(cfg.Keys.Store))
	if err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	if err := keys.CheckLMK(lmk.CheckValue()); err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	s.keys = keys
	if s.module, err = newModule(cfg.HSM, lmk); err != nil {
		return nil, err
	}
	if s.redis = redisClient(cfg.Redis); s.redis == nil && cfg.State.Type == nodestate.TypeRedis {
		return nil, errors.New("state.type redis needs the redis section")
	}
	if err := s.buildState(); err != nil {
		s.closeRedis()
		return nil, err
	}
	if err := s.buildTerminals(); err != nil {
		return nil, err
	}
	if err := s.buildRoutes(); err != nil {
		return nil, err
	}
	if err := s.buildAcquirers(); err != nil {
		return nil, err
	}
	if cfg.Limits != "" {
		lc, err := limits.LoadFile(cfg.Path(cfg.Limits))
		if err != nil {
			return nil, err
		}
		lo := limits.Options{Registerer: s.reg, Logger: s.log, NodeID: cfg.Node.ID}
		if s.redis != nil {
			lo.Redis = s.redis // only when set: a nil *redis.Client in the interface would not be nil
		}
		if s.limiter, err = limits.New(lc, lo); err != nil {
			s.closeRedis()
			return nil, err
		}
	}
	if err := s.buildJournal(); err != nil {
		return nil, err
	}
	if s.reversals == nil {
		if err := s.buildReversals(); err != nil {
			return nil, err
		}
	}
	if err := s.buildDuplicates(); err != nil {
		return nil, err
	}
	return s, s.buildChannels()
}

// closeRedis closes the Redis client after a failed New.
func (s *Switch) closeRedis() {
	if s.redis != nil {
		_ = s.redis.Close()
	}
}

// newModule returns the configured security module.
func newModule(c HSMConfig, lmk *hsm.LMK) (hsm.Module, error) {
	if c.Type != "payshield" {
		return hsm.NewSoftware(lmk, nil), nil
	}
	cl, err := payshield.NewClient(payshield.Config{Addr: c.Address, HeaderLen: c.HeaderLen, Conns: c.Conns,
		MaxInFlight: c.MaxInFlight, Timeout: time.Duration(c.Timeout)})
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	return cl, nil
}

// buildReversals opens the store-and-forward queue; it drains through the bank links.
func (s *Switch) buildReversals() error {
	ctx := context.Background()
	dek, err := s.keys.Get(s.cfg.Reversals.KeyName)
	if err != nil {
		return fmt.Errorf("reversals.key: %w", err)
	}
	key, err := saf.KeyFromModule(ctx, s.module, dek)
	if err != nil {
		return err
	}
	sealer, err := saf.NewAESGCM(key)
	clear(key)
	if err != nil {
		return err
	}
	s.sealer = sealer
	store, err := s.safStore(ctx, "reversals", s.cfg.Path(s.cfg.Reversals.Dir))
	if err != nil {
		return err
	}
	rc := s.cfg.Reversals
	policy := saf.Policy{AckCodes: rc.AckCodes, AdviceAckCodes: rc.AdviceAckCodes, MaxAttempts: rc.MaxAttempts, MinBackoff: time.Duration(rc.MinBackoff),
		MaxBackoff: time.Duration(rc.MaxBackoff), MaxAge: time.Duration(rc.MaxAge)}
	q, err := saf.Open(ctx, saf.Config{Store: store, Sealer: sealer, Sender: saf.SenderFunc(s.sendStored),
		Node: s.cfg.Node.ID, Registerer: s.reg, Log: s.log,
		Spec:   func(acq string) *codec.Spec { return s.acquirers[acq].Spec },
		Policy: func(string) saf.Policy { return policy },
		OnAlarm: func(a saf.Alarm) {
			s.log.Warn("reversal older than its maximum age", zap.String("acquirer", a.Acquirer), zap.String("entry", a.ID))
		}})
	if err != nil {
		return err
	}
	s.queue, s.reversals = q, q
	if s.cfg.Journal.Fsync == nil || *s.cfg.Journal.Fsync {
		// Intents live with the node's shared state (a survivor takes a dead node's over), else in a local
		// log whose Begins are group-committed and whose Ends need no fsync of their own.
		var istore saf.Store
		var err error
		if s.state.Lease != nil {
			istore, err = s.safStore(ctx, "intents", "")
		} else {
			istore, err = openIntentLog(filepath.Join(s.cfg.Path(s.cfg.Reversals.Dir), "intents"), s.log)
		}
		if err != nil {
			return err
		}
		s.intents = newIntents(istore, sealer, q, s.cfg.Node.ID, s.log)
		s.reversals = s.intents // reversals the queue's store refuses are held and retried
	}
	return nil
}

// buildDuplicates opens the retransmission check's store (docs/duplicates.md); stored replies are sealed under
// a key derived from the DEK that duplicates.key names.
func (s *Switch) buildDuplicates() error {
	dc := s.cfg.Duplicates
	if dc == nil {
		return nil
	}
	var sealer flow.Sealer
	if dc.Key != "" {
		dek, err := s.keys.Get(dc.Key)
		if err != nil {
			return fmt.Errorf("duplicates.key: %w", err)
		}
		key, err := saf.KeyFromModule(context.Background(), s.module, dek)
		if err != nil {
			return err
		}
		g, err := saf.NewAESGCM(key)
		clear(key)
		if err != nil {
			return err
		}
		sealer = g
	}
	var rdb redis.Cmdable
	if dc.Store == "redis" && s.redis != nil {
		rdb = s.redis
	}
	var err error
	s.dups, err = flow.NewDuplicates(*dc, rdb, sealer, s.log)
	return err
}

// sendStored sends one queued reversal or advice to its acquirer, on its pinned link when that link is up,
// else on any signed-on link of the acquirer, and returns the bank's response code.
func (s *Switch) sendStored(ctx context.Context, acquirer, linkID string, msg []byte) (string, error) {
	acq := s.acquirers[acquirer]
	if acq == nil {
		return "", fmt.Errorf("no acquirer %s", acquirer)
	}
	m := codec.NewMessage(acq.Spec)
	if err := m.Unpack(msg); err != nil {
		return "", err
	}
	if err := flow.SignForAcquirer(ctx, s.module, acq, m); err != nil {
		return "", err
	}
	var ln *link.Link
	for _, l := range s.pool.Links(acquirer) {
		if l.State() != link.StateReady {
			continue
		}
		if ln == nil || l.ID().String() == linkID {
			ln = l
		}
	}
	if ln == nil {
		return "", fmt.Errorf("acquirer %s has no signed-on link", acquirer)
	}
	resp, err := ln.Send(ctx, m, time.Now().Add(acq.Timeout))
	if err != nil {
		return "", err
	}
	defer resp.Release()
	return resp.String(39), nil
}

// lateResponse reverses an approval that arrived after its request was given up (the terminal got the
// timeout code and a reversal is already queued for the timeout; this covers an approval the link could not
// match at all, such as one after a restart).
func (s *Switch) lateResponse(id link.LinkID, resp *link.Response) {
	defer resp.Release()
	acq := s.acquirers[id.Acquirer]
	if acq == nil || resp.String(39) != flow.RCApproved || resp.MTI()[2] != '1' {
		return
	}
	if err := flow.ReverseLateApproval(context.Background(), s.reversals, acq, id.String(), resp.Message); err != nil {
		s.log.Error("cannot queue the reversal of a late approval", zap.String("link", id.String()), zap.Error(err))
	}
}

func loadLMK(cfg *Config) (*hsm.LMK, error) {
	if v := os.Getenv("SWITCH_LMK"); v != "" {
		return hsm.ParseLMK(v)
	}
	p := os.Getenv("SWITCH_LMK_FILE")
	if p == "" {
		p = cfg.Path(cfg.Keys.LMKFile)
	}
	if p == "" {
		return nil, errors.New("no LMK: set SWITCH_LMK or SWITCH_LMK_FILE, or keys.lmk_file")
	}
	return hsm.LoadLMKFile(p)
}

func (s *Switch) buildTerminals() error {
	list, err := terminal.LoadFile(s.cfg.Path(s.cfg.Terminals))
	if err != nil {
		return err
	}
	if s.registry, err = terminal.NewRegistry(list); err != nil {
		return fmt.Errorf("%s: %w", s.cfg.Terminals, err)
	}
	s.manager = &terminal.Manager{Registry: s.registry, Sessions: s.state.Sessions, Batches: s.state.Batches,
		HSM: s.module, Keys: s.keys.Get, Log: s.log}
	return nil
}

func (s *Switch) buildRoutes() error {
	t, err := router.Load(s.cfg.Path(s.cfg.Routes))
	if err != nil {
		return err
	}
	s.router = router.NewRouter(t)
	s.balancer.Store(router.NewBalancer(t.Acquirers(), nil, nil))
	return nil
}

// ReloadRoutes reads the routes file again and swaps the table and balancer atomically; traffic in flight
// keeps the table it started with.
func (s *Switch) ReloadRoutes() (any, error) {
	t, err := router.Load(s.cfg.Path(s.cfg.Routes))
	if err != nil {
		return nil, err
	}
	for _, a := range t.Acquirers() {
		if s.acquirers[a.Name] == nil {
			return nil, fmt.Errorf("routes name acquirer %s, which the configuration does not set up (restart needed)", a.Name)
		}
	}
	s.balancer.Store(router.NewBalancer(t.Acquirers(), nil, s.balancer.Load()))
	s.router.Swap(t)
	if s.limiter != nil && s.cfg.Limits != "" {
		lc, err := limits.LoadFile(s.cfg.Path(s.cfg.Limits))
		if err != nil {
			return nil, err
		}
		if err := s.limiter.Reload(lc); err != nil {
			return nil, err
		}
	}
	s.log.Info("routes reloaded", zap.Uint64("version", t.Version()), zap.String("checksum", t.ShortChecksum()))
	return map[string]any{"version": t.Version(), "checksum": t.ShortChecksum()}, nil
}

func (s *Switch) buildAcquirers() error {
	convs := map[string]convert.Map{}
	for _, c := range s.cfg.Conversions {
		m := convert.Map{Name: c.Name, From: c.From, To: c.To, MTI: c.MTI, Codes: c.Codes, Fields: map[int]convert.Rule{}}
		for n, f := range c.Fields {
			m.Fields[n] = convert.Rule{From: f.From, Const: f.Const, Generate: f.Generate, PIN: f.PIN, Track: f.Track}
		}
		convs[c.Name] = m
	}
	compile := func(name string) (*convert.Converter, error) {
		m := convs[name]
		from, err := specs.Get(m.From)
		if err != nil {
			return nil, err
		}
		to, err := specs.Get(m.To)
		if err != nil {
			return nil, err
		}
		return convert.Compile(m, from, to)
	}
	table := s.router.Table()
	counter := s.state.Counter
	var pools []link.Acquirer
	keys := &keyChanger{s: s}
	for _, ra := range table.Acquirers() {
		ac, ok := s.cfg.Acquirers[ra.Name]
		if !ok {
			return fmt.Errorf("routes: acquirer %s has no entry under acquirers: in the configuration", ra.Name)
		}
		spec, err := specs.Get(ac.Spec)
		if err != nil {
			return fmt.Errorf("acquirers.%s: %w", ra.Name, err)
		}
		fa := &flow.Acquirer{Name: ra.Name, Spec: spec, Requests: map[string]*convert.Converter{},
			Responses: map[string]*convert.Converter{}, MAC: hsm.MACAlgorithm(or(ac.MAC, string(hsm.MACX919))),
			MACField: ac.MACField, MACBytes: 8, Timeout: time.Duration(ac.Timeout), ReversalMTI: or(ac.ReversalMTI, "0420"),
			InstitutionID: ac.InstitutionID, ForwarderID: ac.ForwarderID}
		if fa.Timeout == 0 {
			fa.Timeout = 10 * time.Second
		}
		if ac.PINFormat != "" {
			if fa.PINFormat, err = hsm.ParsePINBlockFormat(ac.PINFormat); err != nil {
				return fmt.Errorf("acquirers.%s.pin_format: %w", ra.Name, err)
			}
		}
		for termSpec, ref := range ac.Maps {
			if fa.Requests[termSpec], err = compile(ref.Request); err != nil {
				return err
			}
			if fa.Responses[termSpec], err = compile(ref.Response); err != nil {
				return err
			}
		}
		if err := s.zoneKeys(ra.Name, ac, fa); err != nil {
			return err
		}
		s.acquirers[ra.Name] = fa
		la := link.Acquirer{Name: ra.Name, Link: link.Config{Spec: spec, Counter: counter, SignOnCode: ac.SignOnCode,
			EchoInterval: time.Duration(ac.EchoInterval), Log: s.log, NetworkFields: networkFields(ac),
			OnUnmatched: s.lateResponse, OnKeyChange: keys.hook(ra.Name),
			OnEvent: func(id link.LinkID, ev link.Event) {
				if _, drained := s.drained.Load(id.String()); drained && ev == link.Up {
					return
				}
				_ = s.balancer.Load().Observe(router.LinkID(id), router.Event(ev))
			}}}
		var tlsCfg *tls.Config
		if ac.TLS != nil {
			if tlsCfg, err = s.linkTLS(ac.TLS); err != nil {
				return fmt.Errorf("acquirers.%s.tls: %w", ra.Name, err)
			}
		}
		for _, ep := range ra.Endpoints {
			e := link.Endpoint{Name: ep.Name, Address: ep.Address, Conns: ep.Connections}
			if tlsCfg != nil {
				e.TLS = tlsCfg.Clone()
				if e.TLS.ServerName == "" {
					e.TLS.ServerName, _, _ = net.SplitHostPort(ep.Address)
				}
			}
			la.Endpoints = append(la.Endpoints, e)
		}
		pools = append(pools, la)
	}
	s.counter = counter
	var err error
	s.pool, err = link.NewPool(pools)
	return err
}

// linkTLS builds the TLS client configuration of an acquirer's links.
func (s *Switch) linkTLS(c *TLSConfig) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(s.cfg.Path(c.CAFile))
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", c.CAFile)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("cert_file and key_file go together")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.Path(c.CertFile), s.cfg.Path(c.KeyFile))
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func networkFields(ac AcquirerConfig) map[int]string {
	if ac.InstitutionID == "" {
		return nil
	}
	return map[int]string{32: ac.InstitutionID}
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Defaults of journal.max_unshipped_bytes and journal.hard_limit_bytes when sinks are configured: the alarm
// at 256 MiB unshipped (about 250,000 postings), refusal of new authorizations at 16 GiB (about 16 million,
// a day and a half of the platform's traffic).
const (
	DefaultJournalAlarm     = 256 << 20
	DefaultJournalHardLimit = 16 << 30
)

func (s *Switch) buildJournal() error {
	fsync := true
	if s.cfg.Journal.Fsync != nil {
		fsync = *s.cfg.Journal.Fsync
	}
	// A sink that is down makes the journal grow: by default up to a bound, with an alarm well before it.
	alarmAt, limit := s.cfg.Journal.MaxUnshippedBytes, s.cfg.Journal.HardLimitBytes
	if len(s.cfg.Sinks) > 0 {
		if limit == 0 {
			limit = DefaultJournalHardLimit
		}
		if alarmAt == 0 {
			alarmAt = min(DefaultJournalAlarm, limit)
		}
	}
	j, err := journal.Open(journal.Options{Dir: s.cfg.Path(s.cfg.Journal.Dir), Fsync: fsync,
		SegmentBytes: s.cfg.Journal.SegmentBytes, RetentionDays: s.cfg.Journal.RetentionDays,
		MaxUnshippedBytes: alarmAt, HardLimitBytes: limit,
		Logger: s.log, Registerer: s.reg,
		OnAlarm: func(a journal.Alarm) {
			s.log.Warn("journal unshipped-bytes alarm", zap.Bool("active", a.Active), zap.Int64("unshipped", a.UnshippedBytes))
		}})
	if err != nil {
		return err
	}
	s.journal = j
	horizon := s.cfg.retryHorizon()
	for _, sc := range s.cfg.Sinks {
		if sc.Type == ledger.TypeFile {
			sc.Path = s.cfg.Path(sc.Path)
			if sc.Fsync == nil {
				sc.Fsync = &fsync
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		sink, err := ledger.Open(ctx, sc, horizon, s.log)
		cancel()
		if err != nil {
			return fmt.Errorf("sink %s: %w", or(sc.Name, sc.Type), err)
		}
		opts := sc.Shipper
		if opts.RetryHorizon == 0 {
			opts.RetryHorizon = horizon
		}
		opts.Registerer, opts.Logger = s.reg, s.log
		sh, err := journal.NewShipper(j, sink, opts)
		if err != nil {
			return err
		}
		s.shippers = append(s.shippers, sh)
		if c, ok := sink.(io.Closer); ok {
			s.sinkClosers = append(s.sinkClosers, c)
		}
	}
	return nil
}

func (s *Switch) buildChannels() error {
	for _, cc := range s.cfg.Channels {
		spec, err := specs.Get(cc.Spec)
		if err != nil {
			return fmt.Errorf("channel %s: %w", cc.Name, err)
		}
		var allow []netip.Prefix
		for _, a := range cc.Allow {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return fmt.Errorf("channel %s: allow %q: %w", cc.Name, a, err)
			}
			allow = append(allow, p)
		}
		var tlsCfg *tls.Config
		if cc.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(s.cfg.Path(cc.TLSCert), s.cfg.Path(cc.TLSKey))
			if err != nil {
				return fmt.Errorf("channel %s: %w", cc.Name, err)
			}
			tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
		idle := time.Duration(cc.IdleTimeout)
		if idle == 0 {
			idle = 10 * time.Minute
		}
		fc := flow.Config{Channel: cc.Name, Spec: spec, Framing: spec.Framing(), Manager: s.manager,
			HSM: s.module, Router: s.router, Balancer: s.balancer.Load, Links: s.pool, Limits: s.limiter,
			Acquirers: s.acquirers, Counter: s.counter, Journal: s.journal, Reversals: s.reversals,
			Txns: s.state.Txns, NodeID: s.cfg.Node.ID, Posting: s.cfg.Node.Posting, Log: s.log,
			Metrics: s.metrics}
		if s.intents != nil {
			fc.Intents = s.intents
		}
		if s.dups != nil {
			fc.Duplicates, fc.DupConfig = s.dups, *s.cfg.Duplicates
		}
		fl := flow.New(fc)
		ch := channel.New(channel.Config{Name: cc.Name, Addr: cc.Listen, Framing: spec.Framing(), Allow: allow,
			MaxConns: cc.MaxConns, IdleTimeout: idle, MaxInFlight: cc.MaxInFlight, TLS: tlsCfg}, fl, s.log)
		s.channels = append(s.channels, ch)
		s.flows = append(s.flows, fl)
	}
	return nil
}

// Start opens the bank links, the channels, the shippers and the admin server. The shippers, the takeover of
// dead nodes' entries and the retries of held reversals run until ctx ends or Stop: pass a context without a
// deadline.
func (s *Switch) Start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(ctx)
	s.pool.Start()
	if s.intents != nil {
		// Straight into the queue: an intent is forgotten only once its reversal is stored.
		if err := s.intents.recoverIntents(ctx, s.queue, s.log, s.reversedBySwitch); err != nil {
			return fmt.Errorf("intents: %w", err)
		}
		go s.intents.retry(ctx, time.Second)
	}
	if s.state.Lease != nil && s.queue != nil {
		go s.state.Lease.RunTakeover(ctx, s.takeOver, func(err error) {
			s.log.Warn("takeover of dead nodes' reversal entries failed; retrying", zap.Error(err))
		})
	}
	for _, sh := range s.shippers {
		s.shipping.Add(1)
		go func() { defer s.shipping.Done(); _ = sh.Run(ctx) }()
	}
	for _, ch := range s.channels {
		if err := ch.Start(); err != nil {
			return err
		}
	}
	addr := or(s.cfg.Admin.Listen, "127.0.0.1:8080")
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	s.adminAddr = l.Addr().String()
	token := ""
	if s.cfg.Admin.TokenEnv != "" {
		token = os.Getenv(s.cfg.Admin.TokenEnv)
	}
	s.admin = &http.Server{Handler: admin.Handler(backend{s}, s.reg, token), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.admin.Serve(l) }()
	return nil
}

// Channels returns the channels with their listening addresses.
func (s *Switch) Channels() []*channel.Channel { return s.channels }

// AdminAddr is where the admin server listens.
func (s *Switch) AdminAddr() string { return s.adminAddr }

// Flows returns the flows of the channels, in the order of the configuration.
func (s *Switch) Flows() []*flow.Flow { return s.flows }

// Stop shuts down gracefully: stop accepting and close the channels, let in-flight work finish within ctx,
// sign off and close the bank links, flush the journal.
func (s *Switch) Stop(ctx context.Context) error {
	var errs []error
	for _, ch := range s.channels {
		errs = append(errs, ch.Stop(ctx))
	}
	if s.admin != nil {
		errs = append(errs, s.admin.Shutdown(ctx))
	}
	errs = append(errs, s.pool.Close(ctx))
	if s.queue != nil {
		errs = append(errs, s.queue.Close())
	}
	if s.intents != nil {
		errs = append(errs, s.intents.store.Close())
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.shipping.Wait()
	for _, c := range s.sinkClosers {
		errs = append(errs, c.Close())
	}
	if s.limiter != nil {
		s.limiter.Close()
	}
	errs = append(errs, s.state.Close()) // after the queue and intents: releases the lease
	if s.redis != nil {
		errs = append(errs, s.redis.Close())
	}
	errs = append(errs, s.journal.Close())
	if c, ok := s.module.(interface{ Close() error }); ok {
		errs = append(errs, c.Close()) // a networked HSM's connections
	}
	return errors.Join(errs...)
}

// Ready reports whether every acquirer has a signed-on link.
func (s *Switch) Ready() (bool, []string) {
	var missing []string
	for name := range s.acquirers {
		up := false
		for _, l := range s.pool.Links(name) {
			up = up || l.State() == link.StateReady
		}
		if !up {
			missing = append(missing, name+": no signed-on link")
		}
	}
	if s.leaseLost.Load() {
		missing = append(missing, "node lease lost: another node may own this node's reversal queue")
	}
	return len(missing) == 0, missing
}

// SetLinkEnabled drains a link (no new requests are routed to it; those in flight finish) or enables it
// again. id is acquirer/endpoint/conn.
func (s *Switch) SetLinkEnabled(id string, on bool) error {
	var found *link.Link
	for _, st := range s.pool.Status() {
		if st.ID.String() == id {
			found = s.pool.Link(st.ID)
		}
	}
	if found == nil {
		return fmt.Errorf("no link %s", id)
	}
	rid := router.LinkID(found.ID())
	if !on {
		s.drained.Store(id, true)
		return s.balancer.Load().Observe(rid, router.Down)
	}
	s.drained.Delete(id)
	if found.State() == link.StateReady {
		return s.balancer.Load().Observe(rid, router.Up)
	}
	return nil
}

// backend adapts the switch to the admin server.
type backend struct{ s *Switch }

func (b backend) Ready() (bool, []string)                 { return b.s.Ready() }
func (b backend) Links() any                              { return b.s.pool.Status() }
func (b backend) SetLinkEnabled(id string, on bool) error { return b.s.SetLinkEnabled(id, on) }
func (b backend) ReloadRoutes() (any, error)              { return b.s.ReloadRoutes() }
func (b backend) ExplainRoute(pan, mti, proc, ch string) (any, error) {
	return b.s.router.Table().Explain(router.Key{PAN: pan, MTI: or(mti, "0200"), Proc: or(proc, "000000"), Channel: ch})
}
func (b backend) Terminal(id string) (any, bool) {
	t, ok := b.s.registry.Lookup(id)
	if !ok {
		return nil, false
	}
	sess, _, _ := b.s.manager.Sessions.Get(context.Background(), id)
	return map[string]any{"id": t.ID, "merchant": t.Merchant, "channel": t.Channel, "signed_on": sess.SignedOn,
		"batch": sess.Batch, "signed_on_at": sess.SignedOnAt}, true
}
func (b backend) Reversals() any {
	if b.s.queue == nil {
		return map[string]any{}
	}
	return map[string]any{"pending": b.s.queue.Pending(), "dead_letters": b.s.queue.DeadLetters(), "stats": b.s.queue.Stats()}
}
