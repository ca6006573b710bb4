package flow

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/railswitch/railswitch/channel"
	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/journal"
	"github.com/railswitch/railswitch/limits"
	"github.com/railswitch/railswitch/link"
	"github.com/railswitch/railswitch/router"
	"github.com/railswitch/railswitch/terminal"
	"go.uber.org/zap"
)

// Response codes the flow answers with itself.
const (
	RCApproved       = "00"
	RCInvalidTxn     = "12" // invalid or unmatched related transaction
	RCNoOriginal     = "25" // original transaction not found
	RCFormat         = "30" // message format error
	RCNotPermitted   = "58" // transaction not permitted to the terminal
	RCIssuerDown     = "91" // acquirer or issuer unavailable
	RCMalfunction    = "96" // system malfunction
	RCUnknownTerm    = "97" // terminal not registered
	RCMACFailed      = "A0" // MAC verification failed: sign on again
	DefaultTimeoutRC = "98" // no answer from the acquirer in time
)

// Journal is where finished authorizations go before the terminal gets its reply.
type Journal interface {
	Append(r *journal.Record) (uint64, error)
}

// Config wires a flow for one channel.
type Config struct {
	Channel   string
	Spec      *codec.Spec   // the channel's terminal spec
	Framing   codec.Framing // the channel's framing
	Manager   *terminal.Manager
	HSM       hsm.Module
	Router    *router.Router
	Balancer  func() *router.Balancer // the current balancer (replaced on route reloads)
	Links     *link.Pool
	Limits    *limits.Limiter // nil: no limits
	Acquirers map[string]*Acquirer
	Counter   link.Counter // STAN and RRN per acquirer
	Journal   Journal
	Reversals Reversals
	Intents   Intents // nil: requests leave without an intent record
	Txns      TxnStore
	// Duplicates recognises a terminal's retransmissions (nil: no check); DupConfig gives its window and the
	// key fields of this channel's spec.
	Duplicates Duplicates
	DupConfig  DupConfig
	Metrics    *Metrics // Prometheus series; nil: recorded but not registered
	// TimeoutCode is sent to a terminal whose request got no answer in time (default 98).
	TimeoutCode string
	// NodeID goes into transaction ids; Posting marks the tier that posts to the ledger.
	NodeID  string
	Posting bool
	Now     func() time.Time
	Log     *zap.Logger
}

// Flow handles the frames of one channel. It implements channel.Handler.
type Flow struct {
	cfg   Config
	msgs  sync.Map // *codec.Spec -> *sync.Pool of its messages: the terminal's and each acquirer's spec
	seq   atomic.Uint64
	stats Stats
	met   *channelMetrics
	// inflight holds the requests at a bank by terminal/batch/trace: a channel closed when it is answered.
	inflight sync.Map
	// dupParts and dupWindow are the duplicate key of this channel's spec and how long a key is held.
	dupParts  []dupPart
	dupWindow time.Duration
}

// Stats count what the flow answered.
type Stats struct {
	Requests, Approved, Declined, Timeouts, Malformed, MACFailures, Unknown atomic.Uint64
}

// New returns the flow of a channel.
func New(cfg Config) *Flow {
	if cfg.TimeoutCode == "" {
		cfg.TimeoutCode = DefaultTimeoutRC
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	f := &Flow{cfg: cfg, met: cfg.Metrics.forFlow(cfg.Channel, cfg.Acquirers)}
	if cfg.Duplicates != nil {
		spec := ""
		if cfg.Spec != nil {
			spec = cfg.Spec.Name()
		}
		parts, err := parseDupKey(cfg.DupConfig.fieldsFor(spec))
		if err != nil { // DupConfig.Validate refuses this at configuration time
			cfg.Log.Error("bad duplicate key fields; using the defaults", zap.String("channel", cfg.Channel), zap.Error(err))
			parts, _ = parseDupKey(DefaultDupKeys["*"])
		}
		f.dupParts, f.dupWindow = parts, cfg.DupConfig.window()
	}
	return f
}

// Stats returns the flow's counters.
func (f *Flow) Stats() *Stats { return &f.stats }

// message returns an empty message of spec s, reused when one is free.
func (f *Flow) message(s *codec.Spec) *codec.Message {
	if m, ok := f.pool(s).Get().(*codec.Message); ok {
		m.Reset()
		return m
	}
	return codec.NewMessage(s)
}

// release gives m back for reuse; the caller no longer uses it.
func (f *Flow) release(m *codec.Message) { f.pool(m.Spec()).Put(m) }

// pool returns the pool of messages of spec s. One pool per spec: with a single pool for all, a request
// that takes a message of another spec drops it and allocates.
func (f *Flow) pool(s *codec.Spec) *sync.Pool {
	if p, ok := f.msgs.Load(s); ok {
		return p.(*sync.Pool)
	}
	p, _ := f.msgs.LoadOrStore(s, new(sync.Pool))
	return p.(*sync.Pool)
}

// Closed implements channel.Handler.
func (f *Flow) Closed(*channel.Session, string) {}

// Frame implements channel.Handler: one terminal request, start to finish.
func (f *Flow) Frame(s *channel.Session, body []byte) {
	defer s.Done()
	f.stats.Requests.Add(1)
	defer f.met.end(f.met.begin()) // begin runs now: latency and in-flight span the whole request
	req, rsp := f.message(f.cfg.Spec), f.message(f.cfg.Spec)
	defer f.release(req)
	defer f.release(rsp)
	ctx := context.Background()
	received := f.cfg.Now()

	if err := req.UnpackFrame(f.cfg.Framing, body); err != nil {
		f.stats.Malformed.Add(1)
		if req.MTI() == "" || !req.Has(41) || terminal.NewReply(req, rsp) != nil {
			s.Close("undecodable message: " + err.Error())
			return
		}
		f.cfg.Log.Info("malformed message answered with 30", zap.String("channel", f.cfg.Channel), zap.Error(err))
		f.send(ctx, s, rsp, RCFormat, nil)
		return
	}
	if err := terminal.NewReply(req, rsp); err != nil {
		s.Close("message has no reply MTI: " + err.Error())
		return
	}
	t, ok := f.cfg.Manager.Registry.Lookup(req.String(41))
	if !ok || (t.Channel != "" && t.Channel != f.cfg.Channel) {
		f.stats.Unknown.Add(1)
		f.send(ctx, s, rsp, RCUnknownTerm, nil)
		return
	}
	if t.Disabled || req.String(42) != t.Merchant {
		f.send(ctx, s, rsp, RCNotPermitted, nil)
		return
	}
	if terminal.IsManagement(req) {
		rc := f.cfg.Manager.Handle(ctx, t, req, rsp)
		f.send(ctx, s, rsp, rc, nil)
		return
	}
	sess, ok, err := f.cfg.Manager.Session(ctx, t)
	if err != nil {
		f.cfg.Log.Error("terminal session unavailable", zap.String("terminal", t.ID), zap.Error(err))
		f.send(ctx, s, rsp, RCMalfunction, nil)
		return
	}
	if !ok || !sess.SignedOn {
		_ = rsp.SetCUPProcessingRequirement(3) // sign on again
		f.send(ctx, s, rsp, RCMACFailed, nil)
		return
	}
	if rc := f.verifyMAC(ctx, t, sess.MAK, req); rc != "" {
		if rc == RCMACFailed {
			f.stats.MACFailures.Add(1)
		} else {
			f.cfg.Log.Error("security module unavailable: terminal MAC not checked", zap.String("terminal", t.ID))
		}
		f.send(ctx, s, rsp, rc, nil)
		return
	}
	claim, dkey, handled := f.checkDuplicate(ctx, s, t, req, rsp)
	if handled {
		return
	}
	rc, res := f.financial(ctx, t, &sess, req, rsp, received)
	frame, err := f.pack(ctx, rsp, rc, &termMAC{key: sess.MAK, profile: t.MACAlgorithm()})
	if err != nil {
		// Typically the security module cannot MAC the approval: it is reversed, and the terminal gets 96,
		// which needs no MAC, rather than a closed connection.
		f.cfg.Log.Error("cannot MAC or pack the reply; answering 96", zap.String("channel", f.cfg.Channel), zap.Error(err))
		if res.d != nil {
			f.undelivered(ctx, res.d, err)
		}
		f.settleDuplicate(ctx, dkey, claim, nil)
		rsp.Unset(38)
		if frame, err := f.pack(ctx, rsp, RCMalfunction, nil); err == nil {
			_ = s.Reply(frame)
			f.met.reply(RCMalfunction)
			return
		}
		s.Close("cannot pack reply")
		return
	}
	if res.d == nil {
		if res.left { // a reply to a request that reached a bank (or its queue) is final for a retransmission
			f.settleDuplicate(ctx, dkey, claim, frame)
		} else {
			f.settleDuplicate(ctx, dkey, claim, nil)
		}
		_ = s.Reply(frame)
	} else if err := s.Deliver(frame); err != nil {
		// The approval never reached the terminal's socket: it is reversed, and a retransmission is handled
		// as a new request.
		f.undelivered(ctx, res.d, err)
		f.settleDuplicate(ctx, dkey, claim, nil)
	} else {
		f.settleDuplicate(ctx, dkey, claim, frame)
		f.delivered(ctx, res.d)
	}
	f.met.reply(rc)
}

// checkDuplicate claims the request's duplicate key. A retransmission of a request already answered gets
// that reply again, byte for byte (its MAC was computed for the terminal at first send); one of a request
// still being handled gets 94. handled reports that the request was answered here.
func (f *Flow) checkDuplicate(ctx context.Context, s *channel.Session, t *terminal.Terminal, req, rsp *codec.Message) (DupClaim, string, bool) {
	if f.cfg.Duplicates == nil {
		return DupClaim{}, "", false
	}
	key := dupKey(f.dupParts, f.cfg.Channel, req)
	c, err := f.cfg.Duplicates.Claim(ctx, key, f.dupWindow)
	if err != nil {
		// Never refuse a request for the check's sake: it goes on unchecked.
		f.cfg.Log.Error("duplicate check failed; request handled unchecked", zap.String("terminal", t.ID), zap.Error(err))
		return DupClaim{}, "", false
	}
	switch c.State {
	case DupDone:
		f.met.duplicate(dupReplayed)
		f.cfg.Log.Info("retransmission answered with the stored reply", zap.String("terminal", t.ID),
			zap.String("mti", req.MTI()), zap.String("trace", req.String(11)))
		// The MAC does not cover the TPDU: the copy goes back by the addresses of the retransmission, as
		// the reply to it would (byte-identical when the terminal resends the same bytes).
		if lh := lenHeader(f.cfg.Framing); f.cfg.Framing.TPDU && len(c.Reply) >= lh+5 {
			if tp := rsp.TPDU(); len(tp) == 5 {
				copy(c.Reply[lh:lh+5], tp)
			}
		}
		_ = s.Reply(c.Reply)
		return c, "", true
	case DupInFlight:
		f.met.duplicate(dupInFlight)
		f.cfg.Log.Info("retransmission of a request in flight answered 94", zap.String("terminal", t.ID),
			zap.String("mti", req.MTI()), zap.String("trace", req.String(11)))
		f.send(ctx, s, rsp, RCDuplicate, nil)
		return c, "", true
	}
	return c, key, false
}

// settleDuplicate completes the claim on key with the reply frame as written, or releases it when frame is
// nil: the request never left the switch (refused by limits, no link, ...) or its approval was not
// delivered, so a retransmission is decided afresh.
func (f *Flow) settleDuplicate(ctx context.Context, key string, c DupClaim, frame []byte) {
	if key == "" {
		return
	}
	var err error
	if frame != nil {
		err = f.cfg.Duplicates.Complete(ctx, key, c, frame, f.dupWindow)
	} else {
		err = f.cfg.Duplicates.Release(ctx, key, c)
	}
	if err != nil {
		// The claim expires with the window; until then a retransmission gets 94.
		f.cfg.Log.Warn("cannot settle a duplicate claim", zap.String("channel", f.cfg.Channel), zap.Error(err))
	}
}

// termMAC is the key and profile (terminal.MACCupECB or terminal.MACX919) of a terminal's MACs.
type termMAC struct {
	key     hsm.Key
	profile string
}

// verifyMAC checks the MAC of a terminal message by the terminal's profile: the UnionPay ECB MAC in 64 over
// MTI to field 63, or the X9.19 MAC in 64 (128 with a secondary bitmap) over the message before it.
// It returns "" when the MAC verifies, A0 when it is missing or wrong, and 96 when the security module could
// not be asked (a networked HSM that is down must not look like a terminal with wrong keys).
func (f *Flow) verifyMAC(ctx context.Context, t *terminal.Terminal, mak hsm.Key, req *codec.Message) string {
	alg, n := hsm.MACCupECB, 64
	if t.MACAlgorithm() == terminal.MACX919 {
		alg, n = hsm.MACX919, macFieldOf(req)
	}
	mab, ok := req.BytesBefore(n)
	if !ok {
		return RCMACFailed
	}
	mac, _ := req.Value(n)
	switch err := f.cfg.HSM.VerifyMAC(ctx, mak, alg, mab, mac); {
	case err == nil:
		return ""
	case errors.Is(err, hsm.ErrMACVerify):
		return RCMACFailed
	default:
		return RCMalfunction
	}
}

// macFieldOf is the ISO 8583:1987 MAC field of m: 64, or 128 when m has a secondary bitmap.
func macFieldOf(m *codec.Message) int {
	for _, n := range m.Fields() {
		if n > 64 && n != 128 {
			return 128
		}
	}
	return 64
}

// send sets the response code and replies; approvals carry a MAC under the terminal's MAK.
func (f *Flow) send(ctx context.Context, s *channel.Session, rsp *codec.Message, rc string, mac *termMAC) {
	frame, err := f.pack(ctx, rsp, rc, mac)
	if err != nil {
		f.cfg.Log.Error("cannot pack reply", zap.String("channel", f.cfg.Channel), zap.Error(err))
		s.Close("cannot pack reply")
		return
	}
	_ = s.Reply(frame)
	f.met.reply(rc)
}

// pack sets the response code and packs the reply frame; approvals carry a MAC under the terminal's MAK.
func (f *Flow) pack(ctx context.Context, rsp *codec.Message, rc string, mac *termMAC) ([]byte, error) {
	_ = rsp.SetString(39, rc)
	if rc == RCApproved {
		f.stats.Approved.Add(1)
	} else {
		f.stats.Declined.Add(1)
	}
	var frame []byte
	var err error
	switch {
	case mac != nil && rc == RCApproved && mac.profile == terminal.MACX919:
		if err = signMessage(ctx, f.cfg.HSM, mac.key, hsm.MACX919, macFieldOf(rsp), 8, rsp); err == nil {
			frame, err = rsp.AppendFrame(f.cfg.Framing, nil)
		}
	case mac != nil && rc == RCApproved:
		frame, err = f.frameWithMAC(ctx, rsp, mac.key)
	default:
		rsp.Unset(64)
		rsp.Unset(128)
		frame, err = rsp.AppendFrame(f.cfg.Framing, nil)
	}
	return frame, err
}

// frameWithMAC packs the reply with a UnionPay MAC in field 64 (8 ASCII characters, the message's last bytes).
func (f *Flow) frameWithMAC(ctx context.Context, rsp *codec.Message, mak hsm.Key) ([]byte, error) {
	if err := rsp.SetString(64, "00000000"); err != nil {
		return nil, err
	}
	frame, err := rsp.AppendFrame(f.cfg.Framing, nil)
	if err != nil {
		return nil, err
	}
	pre := f.cfg.Framing.HeaderLen + lenHeader(f.cfg.Framing)
	if f.cfg.Framing.TPDU {
		pre += 5
	}
	mac, err := f.cfg.HSM.GenerateMAC(ctx, mak, hsm.MACCupECB, frame[pre:len(frame)-8])
	if err != nil {
		return nil, err
	}
	copy(frame[len(frame)-8:], mac)
	return frame, nil
}

func lenHeader(fr codec.Framing) int {
	switch fr.Length {
	case codec.LenBinary2, codec.LenBCD2:
		return 2
	case codec.LenASCII4:
		return 4
	}
	return 0
}

// txnID makes a transaction id unique across nodes: node, time and a sequence.
func (f *Flow) txnID(now time.Time) string {
	return f.cfg.NodeID + "-" + strconv.FormatInt(now.UnixMilli(), 36) + "-" + strconv.FormatUint(f.seq.Add(1), 36)
}

// errNoMap means an acquirer has no conversion map for the terminal's spec.
var errNoMap = errors.New("no conversion map")

// result is what the request path tells Frame besides the response code.
type result struct {
	// left: the request was written to a bank or queued for one (an advice), so its reply is final for a
	// retransmission; a request that never left has its duplicate claim released.
	left bool
	// d: an approval whose outcome is settled only once its reply is delivered; nil otherwise.
	d *delivery
}

// delivery is an approval awaiting the write of its reply: its intent stays recorded until then, so a node
// that stops in between reverses it at its next start (DESIGN invariant 2).
type delivery struct {
	acq      *Acquirer
	link     string
	intent   string
	out      *codec.Message // the request as sent to the acquirer; released once settled
	txnID    string
	tid      string
	batch    string
	trace    string
	txn      Txn  // as remembered for voids, refunds and reversals
	original *Txn // of a void: taken out of the totals, put back when the void is reversed
	void     bool
	cleanup  func() // ends the request's in-flight entry (terminal reversals wait on it)
}

// delivered ends the intent of an approval whose reply was handed to the terminal's socket.
func (f *Flow) delivered(ctx context.Context, d *delivery) {
	f.endIntent(ctx, d.acq, d.intent)
	f.settled(d)
}

// undelivered reverses an approval whose reply could not be written (the terminal hung up, the session
// closed): the reversal is queued, the transaction is remembered as reversed (a terminal reversal of it is
// acknowledged here, not sent again) and taken out of the batch totals; the journal keeps the approval it
// already holds, and a reversal record (SwitchReversalRecord) nets it out in the ledger. Then the intent
// ends: its outcome, the queued reversal, is durable.
func (f *Flow) undelivered(ctx context.Context, d *delivery, cause error) {
	f.met.undeliveredReply()
	f.cfg.Log.Warn("approval not delivered to the terminal: reversal queued", zap.String("terminal", d.tid),
		zap.String("txn", d.txnID), zap.String("acquirer", d.acq.Name), zap.Error(cause))
	f.reverse(ctx, d.acq, d.link, d.out, ReasonUndelivered, d.txnID)
	if f.cfg.Journal != nil {
		rec := SwitchReversalRecord(d.out, d.acq.Name, d.txnID, ReasonUndelivered, f.cfg.Posting, f.cfg.Now())
		rec.Channel = f.cfg.Channel
		if t, ok := f.cfg.Manager.Registry.Lookup(d.tid); ok {
			rec.Terminal, rec.Merchant, rec.Bureau, rec.Station = t.ID, t.Merchant, t.Bureau, t.Station
		}
		if _, err := f.cfg.Journal.Append(rec); err != nil {
			// The reversal is queued all the same; the ledger keeps the approval until an operator posts it.
			f.cfg.Log.Error("cannot journal the reversal of an undelivered approval", zap.String("txn", d.txnID), zap.Error(err))
		}
	}
	if d.txn.Counted {
		_ = f.cfg.Manager.Batches.Add(ctx, d.tid, d.batch, d.txn.Debit, -d.txn.Amount, -1)
	}
	if d.void && d.original != nil && d.original.Counted {
		_ = f.cfg.Manager.Batches.Add(ctx, d.tid, d.batch, d.original.Debit, d.original.Amount, 1)
	}
	t := d.txn
	t.Counted, t.Reversed = false, true
	_ = f.cfg.Txns.Put(ctx, d.tid, d.batch, d.trace, t)
	f.endIntent(ctx, d.acq, d.intent)
	f.settled(d)
}

func (f *Flow) settled(d *delivery) {
	f.release(d.out)
	if d.cleanup != nil {
		d.cleanup()
	}
}

// ReasonUndelivered is field 39 of the reversal of an approval whose reply could not be delivered to the
// terminal ("06", the UnionPay reason for any other error after an approval).
const ReasonUndelivered = "06"

func (f *Flow) financial(ctx context.Context, t *terminal.Terminal, sess *terminal.Session, req, rsp *codec.Message, received time.Time) (rc string, res result) {
	card := &env{f: f, sess: sess, req: req} // the card number and clear track, worked out once per request
	pan, err := card.cardNumber(ctx)
	if err != nil {
		f.cfg.Log.Info("cannot read the card number", zap.String("terminal", t.ID), zap.Error(err))
		return RCFormat, res
	}
	route, err := f.cfg.Router.Lookup(router.Key{Channel: f.cfg.Channel, MTI: req.MTI(), Proc: req.String(3), PAN: pan})
	if err != nil {
		return RCFormat, res
	}
	advice := QueuedAdvice(req)
	var attempt router.Attempt
	var original *Txn
	var acquirer string // the acquirer the limits charge
	var pinned string   // the original's link (an advice follows it)
	switch route.Kind {
	case router.KindDecline:
		return route.ResponseCode, res
	case router.KindAcquirer:
		if !advice {
			attempt = f.cfg.Balancer().Begin(route.Acquirer, route.Fallbacks)
		}
		acquirer = route.Acquirer.Name
	case router.KindOriginal:
		orig, ok, err := f.original(ctx, t, req)
		if err != nil {
			return RCMalfunction, res
		}
		if req.MTI()[:2] == "04" && (!ok || orig.Reversed) {
			// Nothing was approved, or it was reversed already (its reply never reached the terminal), so
			// there is nothing to undo: acknowledge without asking a bank (BASE24 behaviour; a terminal would
			// otherwise repeat the reversal forever).
			f.cfg.Log.Info("reversal with nothing to reverse acknowledged", zap.String("terminal", t.ID),
				zap.String("trace", req.String(11)), zap.Bool("original_found", ok))
			return RCApproved, res
		}
		if !ok {
			return RCNoOriginal, res
		}
		original = &orig
		id, err := parseLinkID(orig.Link)
		if err != nil {
			return RCMalfunction, res
		}
		if !advice {
			attempt = f.cfg.Balancer().BeginPinned(id)
		}
		acquirer, pinned = id.Acquirer, orig.Link
	default:
		return RCNotPermitted, res
	}
	// Limits come after routing so that acquirer limits know the acquirer. A failover to a fallback acquirer
	// (exchange) stays charged to the first choice: the fallback's own limit is not consulted (docs/limits.md).
	if f.cfg.Limits != nil {
		d := f.cfg.Limits.Acquire(ctx, limits.Request{Terminal: t.ID, Merchant: t.Merchant, Channel: f.cfg.Channel,
			Acquirer: acquirer})
		if !d.Allowed {
			f.cfg.Log.Info("limit refused", zap.String("terminal", t.ID), zap.String("acquirer", acquirer),
				zap.Stringer("decision", d))
			return d.Code, res
		}
		defer d.Permit.Release()
	}
	if req.MTI()[:2] != "04" {
		// A reversal of this request that arrives while it is still at the bank, or while its approval is
		// being delivered, waits for the outcome (see original), so that an approval arriving after the
		// terminal gave up is still reversed.
		batch, _ := req.Subfield(60, 2)
		key, done := t.ID+"/"+string(batch)+"/"+req.String(11), make(chan struct{})
		if _, dup := f.inflight.LoadOrStore(key, done); !dup {
			cleanup := func() { f.inflight.Delete(key); close(done) }
			defer func() {
				if res.d != nil {
					res.d.cleanup = cleanup // once the reply's delivery is settled
				} else {
					cleanup()
				}
			}()
		}
	}
	if advice {
		return f.advise(ctx, t, card, req, rsp, acquirer, pinned, original, received)
	}
	return f.exchange(ctx, t, card, req, rsp, &attempt, original, received)
}

// QueuedAdvice reports whether req is an advice the switch answers itself and sends to the acquirer through
// the store-and-forward queue: a UnionPay 0220 of message type (60.1) 24 pre-authorization completion advice,
// 30 offline sale, 32 or 34 settlement adjustment or tip, 36 offline chip purchase upload. A refund (0220
// with 60.1 25) needs the acquirer's approval and goes online like a request.
func QueuedAdvice(req *codec.Message) bool {
	if req.MTI() != "0220" {
		return false
	}
	typ, _ := req.Subfield(60, 1)
	switch string(typ) {
	case "24", "30", "32", "34", "36":
		return true
	}
	return false
}

// original finds the transaction a request refers to. For a reversal: the one with its own trace number in
// its batch (60.2, 11), once that request is no longer at the bank. For a void, refund or completion: the one
// named in 61 (61.1 batch, 61.2 trace) or, without 61 (kiosks), the one whose reply carried the RRN in 37. A
// kiosk's 90 names its own trace and time, not what the switch sent, so it is not used.
func (f *Flow) original(ctx context.Context, t *terminal.Terminal, req *codec.Message) (Txn, bool, error) {
	if req.MTI()[:2] == "04" {
		batch, _ := req.Subfield(60, 2)
		if done, busy := f.inflight.Load(t.ID + "/" + string(batch) + "/" + req.String(11)); busy {
			<-done.(chan struct{}) // bounded by the acquirer's timeout and the reply's delivery
		}
		return f.cfg.Txns.Get(ctx, t.ID, string(batch), req.String(11))
	}
	if !req.Has(61) && req.Has(37) {
		return f.cfg.Txns.GetByRRN(ctx, t.ID, req.String(37))
	}
	batch, ok1 := req.Subfield(61, 1)
	trace, ok2 := req.Subfield(61, 2)
	if !ok1 || !ok2 {
		return Txn{}, false, nil
	}
	return f.cfg.Txns.Get(ctx, t.ID, string(batch), string(trace))
}

// advise answers an advice at once and queues it for the acquirer (store-and-forward: first sent as 0220,
// repeats as 0221). In order: the intent (the advice's reversal) is recorded, the advice is queued durably,
// the approval is journaled, and the reply is delivered; only then does the intent end. A stop in between
// leaves the intent, and the next start queues the advice's reversal behind the advice.
func (f *Flow) advise(ctx context.Context, t *terminal.Terminal, card *env, req, rsp *codec.Message, acquirer,
	linkID string, original *Txn, received time.Time) (string, result) {
	acq := f.cfg.Acquirers[acquirer]
	if acq == nil {
		return RCIssuerDown, result{}
	}
	if f.cfg.Reversals == nil {
		f.cfg.Log.Error("no store-and-forward queue: advice refused", zap.String("terminal", t.ID))
		return RCIssuerDown, result{}
	}
	out := f.message(acq.Spec)
	e := card.forAcquirer(acq, f.cfg.Now(), original)
	fail := func(what string, err error) (string, result) {
		f.release(out)
		f.cfg.Log.Error(what, zap.String("acquirer", acq.Name), zap.String("txn", e.txnID), zap.Error(err))
		return RCMalfunction, result{}
	}
	if err := f.buildRequest(ctx, e, acq, req, out); err != nil {
		return fail("cannot build the acquirer's advice", err)
	}
	packed, err := out.Pack(nil)
	if err != nil {
		return fail("cannot pack the acquirer's advice", err)
	}
	intent, err := f.beginIntent(ctx, acq, linkID, out, e.txnID)
	if err != nil {
		return fail("cannot record the intent; advice not queued", err)
	}
	if err := f.cfg.Reversals.Enqueue(ctx, acq.Name, linkID, e.txnID, packed); err != nil {
		f.endIntent(ctx, acq, intent)
		return fail("cannot queue the advice", err)
	}
	// From here the acquirer gets the advice: a failure below reverses it.
	rsp.Unset(38)
	if _, ok := rsp.Spec().Field(37); ok {
		_ = rsp.SetString(37, out.String(37))
	}
	txn := f.originalOf(req, acq, linkID, out, "", e)
	batch, _ := req.Subfield(60, 2)
	if err := f.cfg.Txns.Put(ctx, t.ID, string(batch), req.String(11), txn); err != nil {
		f.cfg.Log.Error("cannot store the advice's original; reversing", zap.String("txn", e.txnID), zap.Error(err))
		f.reverse(ctx, acq, linkID, out, "06", e.txnID)
		f.endIntent(ctx, acq, intent)
		f.release(out)
		return RCMalfunction, result{left: true}
	}
	if rc := f.record(ctx, t, req, acq, linkID, out, rsp, RCApproved, e, original, received, f.cfg.Now()); rc != RCApproved {
		f.endIntent(ctx, acq, intent)
		f.release(out)
		return rc, result{left: true}
	}
	return RCApproved, result{left: true, d: f.remember(ctx, t, req, acq, linkID, out, txn, original, intent)}
}

// exchange converts and sends the request, failing over only while it was never written, and builds the
// terminal's reply from the acquirer's.
func (f *Flow) exchange(ctx context.Context, t *terminal.Terminal, card *env, req, rsp *codec.Message,
	attempt *router.Attempt, original *Txn, received time.Time) (string, result) {
	for {
		choice, err := attempt.Next()
		if err != nil {
			return RCIssuerDown, result{}
		}
		acq := f.cfg.Acquirers[choice.Link.Acquirer]
		ln := f.cfg.Links.Link(link.LinkID(choice.Link))
		if acq == nil || ln == nil {
			attempt.NotSent()
			continue
		}
		linkID := formatLinkID(choice.Link)
		out := f.message(acq.Spec)
		env := card.forAcquirer(acq, f.cfg.Now(), original)
		err = f.buildRequest(ctx, env, acq, req, out)
		if err != nil {
			attempt.NotSent()
			f.release(out)
			f.cfg.Log.Error("cannot build the acquirer's request", zap.String("acquirer", acq.Name), zap.Error(err))
			return RCMalfunction, result{}
		}
		intent, err := f.beginIntent(ctx, acq, linkID, out, env.txnID)
		if err != nil {
			attempt.NotSent()
			f.release(out)
			f.cfg.Log.Error("cannot record the intent; request not sent", zap.String("txn", env.txnID), zap.Error(err))
			return RCMalfunction, result{}
		}
		deadline := f.cfg.Now().Add(acq.Timeout)
		bank := f.met.bank(acq.Name)
		resp, err := ln.Send(ctx, out, deadline)
		if err != nil {
			if !link.Written(err) {
				f.endIntent(ctx, acq, intent)
				attempt.NotSent()
				f.release(out)
				continue
			}
			attempt.Sent()
			attempt.Done(router.Timeout)
			f.stats.Timeouts.Add(1)
			bank.timedOut()
			f.reverse(ctx, acq, linkID, out, DefaultTimeoutRC, env.txnID)
			f.endIntent(ctx, acq, intent)
			f.release(out)
			return f.cfg.TimeoutCode, result{left: true}
		}
		attempt.Sent()
		attempt.Done(router.Success)
		bank.answered(resp.Message)
		rc, d := f.finish(ctx, t, req, rsp, acq, linkID, out, resp.Message, env, original, received, intent)
		resp.Release()
		if d != nil {
			// An approval: its intent ends once the terminal's socket has the reply (Frame), so a stop
			// before that reverses it at the next start.
			return rc, result{left: true, d: d}
		}
		f.endIntent(ctx, acq, intent) // the outcome is journaled, or its reversal queued
		f.release(out)
		return rc, result{left: true}
	}
}

// beginIntent records the reversal of out durably before it is sent (no-op without Intents).
func (f *Flow) beginIntent(ctx context.Context, acq *Acquirer, linkID string, out *codec.Message, txnID string) (string, error) {
	if f.cfg.Intents == nil {
		return "", nil
	}
	rev := f.message(acq.Spec)
	defer f.release(rev)
	if err := BuildReversal(out, rev, acq.ReversalMTI, DefaultTimeoutRC); err != nil {
		return "", err
	}
	packed, err := rev.Pack(nil)
	if err != nil {
		return "", err
	}
	return f.cfg.Intents.Begin(ctx, acq.Name, linkID, txnID, packed)
}

// endIntent forgets the intent of a request whose outcome is handled: answered (and journaled), reversal
// queued, or never sent.
func (f *Flow) endIntent(ctx context.Context, acq *Acquirer, intent string) {
	if intent == "" {
		return
	}
	if err := f.cfg.Intents.End(ctx, acq.Name, intent); err != nil {
		// Left behind, the intent reverses this request at the next start.
		f.cfg.Log.Error("cannot remove an intent", zap.String("acquirer", acq.Name), zap.Error(err))
	}
}

// buildRequest converts the terminal's request for the acquirer and adds the link's MAC.
func (f *Flow) buildRequest(ctx context.Context, e *env, acq *Acquirer, req, out *codec.Message) error {
	conv := acq.Requests[f.cfg.Spec.Name()]
	if conv == nil {
		return fmt.Errorf("%w from %s to acquirer %s", errNoMap, f.cfg.Spec.Name(), acq.Name)
	}
	e.txnID = f.txnID(e.now)
	if err := conv.Convert(ctx, e, req, out); err != nil {
		return err
	}
	return SignForAcquirer(ctx, f.cfg.HSM, acq, out)
}

// SignForAcquirer sets the acquirer link's MAC field (when the acquirer has a ZAK) over the packed message
// before it.
func SignForAcquirer(ctx context.Context, module hsm.Module, acq *Acquirer, out *codec.Message) error {
	zak := acq.ZAK()
	if zak == nil {
		return nil
	}
	return signMessage(ctx, module, *zak, acq.MAC, acq.macField(out), acq.MACBytes, out)
}

// signMessage sets MAC field n of m (the message's last field) to the MAC of the packed message before it:
// macBytes bytes of the MAC, the rest of the field zero-filled.
func signMessage(ctx context.Context, module hsm.Module, key hsm.Key, alg hsm.MACAlgorithm, n, macBytes int, m *codec.Message) error {
	def, _ := m.Spec().Field(n)
	if err := m.Set(n, make([]byte, def.Size)); err != nil {
		return err
	}
	packed, err := m.Pack(nil)
	if err != nil {
		return err
	}
	wire := def.Size
	if def.Encoding == codec.EncHex {
		wire *= 2
	}
	mac, err := module.GenerateMAC(ctx, key, alg, packed[:len(packed)-wire])
	if err != nil {
		return err
	}
	field := make([]byte, def.Size)
	copy(field, mac[:min(macBytes, len(mac), def.Size)])
	return m.Set(n, field)
}

// verifyBank checks the MAC of an acquirer's response under the ZAK in force or, failing that, the one it
// replaced: a response to a request sent before a key change may have been MACed before the bank switched.
func (f *Flow) verifyBank(ctx context.Context, acq *Acquirer, resp *codec.Message) bool {
	zak := acq.ZAK()
	if zak == nil {
		return true
	}
	macField := acq.macField(resp)
	mab, ok := resp.BytesBefore(macField)
	if !ok {
		return false
	}
	mac, _ := resp.Value(macField)
	mac = mac[:min(acq.MACBytes, len(mac))]
	if f.cfg.HSM.VerifyMAC(ctx, *zak, acq.MAC, mab, mac) == nil {
		return true
	}
	prev := acq.PreviousZAK()
	return prev != nil && f.cfg.HSM.VerifyMAC(ctx, *prev, acq.MAC, mab, mac) == nil
}

// finish turns the acquirer's response into the terminal's reply, journals it and remembers approvals. An
// approval of a request other than a reversal comes back with its delivery, which owns out from then on.
func (f *Flow) finish(ctx context.Context, t *terminal.Terminal, req, rsp *codec.Message, acq *Acquirer,
	linkID string, out, resp *codec.Message, e *env, original *Txn, received time.Time, intent string) (string, *delivery) {
	answered := f.cfg.Now()
	if !f.verifyBank(ctx, acq, resp) {
		f.cfg.Log.Warn("acquirer response MAC failed", zap.String("acquirer", acq.Name))
		f.met.bankMACFailed(acq.Name)
		if resp.String(39) == RCApproved {
			f.reverse(ctx, acq, linkID, out, RCMACFailed, e.txnID)
		}
		return RCMalfunction, nil
	}
	back := acq.Responses[f.cfg.Spec.Name()]
	tmp := f.message(f.cfg.Spec)
	defer f.release(tmp)
	if back == nil {
		return RCMalfunction, nil
	}
	if err := back.Convert(ctx, e, resp, tmp); err != nil {
		f.cfg.Log.Error("cannot convert the acquirer's response", zap.String("acquirer", acq.Name), zap.Error(err))
		if resp.String(39) == RCApproved {
			f.reverse(ctx, acq, linkID, out, "06", e.txnID)
		}
		return RCMalfunction, nil
	}
	for _, n := range tmp.Fields() {
		if n != 39 && n != 64 {
			_ = rsp.CopyField(n, tmp)
		}
	}
	rc := tmp.String(39)
	if rc == "" {
		rc = RCMalfunction
	}
	var txn Txn
	if rc == RCApproved {
		// The original is stored before the approval is journaled: an approval whose void or reversal could not
		// find it would be undone at the terminal but never at the bank.
		txn = f.originalOf(req, acq, linkID, out, tmp.String(38), e)
		batch, _ := req.Subfield(60, 2)
		if err := f.cfg.Txns.Put(ctx, t.ID, string(batch), req.String(11), txn); err != nil {
			f.cfg.Log.Error("cannot store the original; reversing", zap.String("txn", e.txnID), zap.Error(err))
			f.reverse(ctx, acq, linkID, out, "06", e.txnID)
			return RCMalfunction, nil
		}
	}
	if rc = f.record(ctx, t, req, acq, linkID, out, tmp, rc, e, original, received, answered); rc != RCApproved {
		return rc, nil
	}
	d := f.remember(ctx, t, req, acq, linkID, out, txn, original, intent)
	if req.MTI()[:2] == "04" {
		// A terminal's reversal: its reply is not awaited. A lost one makes the terminal repeat the reversal,
		// which the acquirer acknowledges again.
		return rc, nil
	}
	return rc, d
}

// record journals the outcome of a request (reply holds the terminal's 38; out is the request as sent). An
// approval the journal cannot hold is reversed and answered 96 (invariant 1).
func (f *Flow) record(ctx context.Context, t *terminal.Terminal, req *codec.Message, acq *Acquirer, linkID string,
	out, reply *codec.Message, rc string, e *env, original *Txn, received, answered time.Time) string {
	if f.cfg.Journal == nil {
		return rc
	}
	amount, _ := req.Amount(4)
	rec := &journal.Record{TxnID: e.txnID, Kind: recordKind(req), Posting: f.cfg.Posting, Bureau: t.Bureau,
		Station: t.Station, Channel: f.cfg.Channel, Terminal: t.ID, Merchant: t.Merchant, Acquirer: acq.Name,
		MTI: req.MTI(), ProcessingCode: req.String(3), Amount: amount, Currency: req.String(49), ResponseCode: rc,
		AuthCode: reply.String(38), RRN: out.String(37), TerminalSTAN: req.String(11), AcquirerSTAN: out.String(11),
		PAN: journal.MaskPAN(e.pan), TerminalLocalTime: req.String(13) + req.String(12), ReceivedAt: received,
		AnsweredAt: answered}
	if original != nil {
		rec.OriginalTxnID = original.ID
	}
	if _, err := f.cfg.Journal.Append(rec); err != nil {
		// Invariant 1: no approval the journal does not hold. Undo it at the bank and decline.
		f.cfg.Log.Error("journal append failed; reversing", zap.String("txn", e.txnID), zap.Error(err))
		if rc == RCApproved {
			f.reverse(ctx, acq, linkID, out, "06", e.txnID)
		}
		return RCMalfunction
	}
	return rc
}

// originalOf is what the switch keeps of an approval for its later voids, refunds and reversals.
func (f *Flow) originalOf(req *codec.Message, acq *Acquirer, linkID string, out *codec.Message, authCode string, e *env) Txn {
	amount, _ := req.Amount(4)
	debit, counts := batchEffect(req)
	return Txn{ID: e.txnID, Acquirer: acq.Name, Link: linkID, Amount: amount, RRN: out.String(37),
		AuthCode: authCode, AcqSTAN: out.String(11), OriginalData: originalData(out), Counted: counts, Debit: debit}
}

// remember counts a journaled approval (whose original txn is stored) in the batch totals; it returns the
// approval's delivery (which owns out). A batch total that cannot be updated is logged: settlement then comes
// out unbalanced and the terminal's batch upload settles it.
func (f *Flow) remember(ctx context.Context, t *terminal.Terminal, req *codec.Message, acq *Acquirer, linkID string,
	out *codec.Message, txn Txn, original *Txn, intent string) *delivery {
	batch, _ := req.Subfield(60, 2)
	kind := recordKind(req)
	if kind == journal.KindVoid || kind == journal.KindReversal {
		f.undoTotals(ctx, t, req, original)
	}
	if txn.Counted {
		if err := f.cfg.Manager.Batches.Add(ctx, t.ID, string(batch), txn.Debit, txn.Amount, 1); err != nil {
			f.cfg.Log.Warn("batch totals not updated", zap.String("terminal", t.ID), zap.Error(err))
		}
	}
	return &delivery{acq: acq, link: linkID, intent: intent, out: out, txnID: txn.ID, tid: t.ID,
		batch: string(batch), trace: req.String(11), txn: txn, original: original, void: kind == journal.KindVoid}
}

// recordKind tells the journal what a request does, from its MTI, processing code and 60.1; without 60
// (kiosks), a 0200 with processing code 20 is a refund.
func recordKind(req *codec.Message) journal.Kind {
	typ, ok := req.Subfield(60, 1)
	if !ok && req.MTI() == "0200" && strings.HasPrefix(req.String(3), "20") {
		return journal.KindRefund
	}
	switch string(typ) {
	case "23", "11", "21":
		return journal.KindVoid
	case "25":
		return journal.KindRefund
	case "20", "24":
		return journal.KindCompletion
	case "10", "60":
		return journal.KindPreauthorization
	}
	switch req.MTI()[:2] {
	case "04":
		return journal.KindReversal
	case "01":
		return journal.KindPreauthorization
	}
	return journal.KindAuthorization
}

// batchEffect says whether an approval counts in the settlement totals, as a debit (purchases, completions)
// or a credit (refunds). Voids and reversals take their original out of the totals instead (undoTotals).
func batchEffect(req *codec.Message) (debit, counts bool) {
	switch recordKind(req) {
	case journal.KindAuthorization, journal.KindCompletion:
		return true, req.String(3)[:2] != "31" // balance inquiries move no money
	case journal.KindRefund:
		return false, true
	}
	return false, false
}

// undoTotals takes the original of an approved void or reversal out of the batch totals, if it counted.
func (f *Flow) undoTotals(ctx context.Context, t *terminal.Terminal, req *codec.Message, original *Txn) {
	if original == nil || !original.Counted {
		return
	}
	batch, _ := req.Subfield(60, 2)
	_ = f.cfg.Manager.Batches.Add(ctx, t.ID, string(batch), original.Debit, -original.Amount, -1)
}

// reverse queues a reversal of out (the request as sent to the acquirer) with the given reason.
func (f *Flow) reverse(ctx context.Context, acq *Acquirer, linkID string, out *codec.Message, reason, txnID string) {
	if f.cfg.Reversals == nil {
		f.cfg.Log.Error("no reversal queue: reversal lost", zap.String("acquirer", acq.Name), zap.String("txn", txnID))
		return
	}
	rev := f.message(acq.Spec)
	defer f.release(rev)
	if err := BuildReversal(out, rev, acq.ReversalMTI, reason); err != nil {
		f.cfg.Log.Error("cannot build reversal", zap.String("txn", txnID), zap.Error(err))
		return
	}
	packed, err := rev.Pack(nil)
	if err == nil {
		err = f.cfg.Reversals.Enqueue(ctx, acq.Name, linkID, txnID, packed)
	}
	if err != nil {
		f.cfg.Log.Error("cannot queue reversal", zap.String("txn", txnID), zap.Error(err))
	}
}

// ReverseLateApproval queues the reversal of an approval that came back from the acquirer after its request
// was given up: the response carries the request's identifying fields, and field 90 names the request.
func ReverseLateApproval(ctx context.Context, q Reversals, acq *Acquirer, linkID string, resp *codec.Message) error {
	if q == nil {
		return errors.New("no reversal queue")
	}
	rev := codec.NewMessage(acq.Spec)
	if err := BuildReversal(resp, rev, acq.ReversalMTI, DefaultTimeoutRC); err != nil {
		return err
	}
	if _, ok := rev.Spec().Field(90); ok {
		mti := []byte(resp.MTI())
		mti[2]-- // the request's MTI: 0210 answers 0200
		ode := string(mti) + originalData(resp)[4:]
		if err := rev.SetString(90, ode); err != nil {
			return err
		}
	}
	packed, err := rev.Pack(nil)
	if err != nil {
		return err
	}
	return q.Enqueue(ctx, acq.Name, linkID, "", packed)
}

// BuildReversal makes the reversal of a request as sent to an acquirer: MTI 0400 or 0420, the reason in 39,
// the original data elements in 90 when the spec has it, and no PIN block, tracks or security fields.
func BuildReversal(orig, rev *codec.Message, mti, reason string) error {
	if mti == "" {
		mti = "0400"
	}
	rev.Reset()
	if err := rev.SetMTI(mti); err != nil {
		return err
	}
	for _, n := range orig.Fields() {
		switch n {
		case 26, 35, 36, 38, 39, 45, 52, 53, 55, 64, 128:
			continue
		}
		if err := rev.CopyField(n, orig); err != nil {
			return err
		}
	}
	if _, ok := rev.Spec().Field(90); ok {
		if err := rev.SetString(90, originalData(orig)); err != nil {
			return err
		}
	}
	return rev.SetString(39, reason)
}

// originalData is field 90 naming out, the request as sent to the acquirer.
func originalData(out *codec.Message) string {
	return out.MTI() + pad(out.String(11), 6) + pad(out.String(7), 10) + pad(out.String(32), 11) + pad(out.String(33), 11)
}

func pad(s string, n int) string {
	for len(s) < n {
		s = "0" + s
	}
	return s[len(s)-n:]
}

func panOf(m *codec.Message) string {
	if v, ok := m.Value(2); ok {
		return string(v)
	}
	if v, ok := m.Value(35); ok {
		for i, c := range v {
			if c == '=' || c == 'D' {
				return string(v[:i])
			}
		}
	}
	return ""
}

func formatLinkID(id router.LinkID) string {
	return id.Acquirer + "/" + id.Endpoint + "/" + strconv.Itoa(id.Conn)
}

func parseLinkID(s string) (router.LinkID, error) {
	var id router.LinkID
	a, rest, ok1 := cut(s)
	e, c, ok2 := cut(rest)
	n, err := strconv.Atoi(c)
	if !ok1 || !ok2 || err != nil {
		return id, fmt.Errorf("bad link id %q", s)
	}
	return router.LinkID{Acquirer: a, Endpoint: e, Conn: n}, nil
}

func cut(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
