package bank

import (
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/railswitch/railswitch/codec"
	"go.uber.org/zap"
)

// Config configures a Server.
type Config struct {
	Spec   *codec.Spec // a host spec: iso87-ascii, iso87-binary, iso87-ebcdic or one of the bank's own
	Rules  *Rules      // nil approves everything with 00
	Faults Faults
	Keys   Keys
	// Rand draws the faults; nil seeds one from the clock. KeyRand gives new key material; nil is
	// crypto/rand.
	Rand    Rand
	KeyRand io.Reader
	Log     *zap.Logger // nil logs nothing
}

// Response codes the server gives besides the ledger's.
const (
	CodeFormatError = "30" // the request does not decode
	CodeSystemError = "96" // a key change without a ZMK
	CodeMACError    = "A0" // the request's MAC does not verify
)

// echoFields are copied from every request to its response.
var echoFields = [...]int{2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 90}

// Server is the bank host simulator. Serve it on one or more listeners; Close stops it.
type Server struct {
	spec    *codec.Spec
	framing codec.Framing
	ledger  *Ledger
	keys    *keyState
	faults  atomic.Pointer[Faults]
	rnd     *lockedRand
	log     *zap.Logger
	metrics *metrics

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]*connWriter
	wg        sync.WaitGroup
	stan      atomic.Uint32     // of the bank's own 0800s
	pending   map[string]newKey // key changes the bank sent, by STAN, until the switch answers
}

// New builds a server from cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Spec == nil {
		return nil, errors.New("bank: no spec")
	}
	if err := cfg.Faults.Validate(); err != nil {
		return nil, err
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x62616e6b))
	}
	if cfg.KeyRand == nil {
		cfg.KeyRand = crand.Reader
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	keys, err := newKeyState(cfg.Keys, cfg.Spec, cfg.KeyRand)
	if err != nil {
		return nil, err
	}
	s := &Server{
		spec: cfg.Spec, framing: cfg.Spec.Framing(), ledger: NewLedger(cfg.Rules), keys: keys,
		rnd: &lockedRand{r: cfg.Rand}, log: cfg.Log, metrics: newMetrics(),
		listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]*connWriter{},
		pending: map[string]newKey{},
	}
	f := cfg.Faults
	s.faults.Store(&f)
	return s, nil
}

// Ledger returns the server's balances and transactions.
func (s *Server) Ledger() *Ledger { return s.ledger }

// Faults returns the faults in force.
func (s *Server) Faults() Faults { return *s.faults.Load() }

// SetFaults replaces the faults in force; connections see them from their next request.
func (s *Server) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	s.faults.Store(&f)
	if f.Stall { // wake the readers blocked in Read, so they stop before the next request
		s.mu.Lock()
		for c := range s.conns {
			c.SetReadDeadline(time.Now())
		}
		s.mu.Unlock()
	}
	return nil
}

// Serve accepts connections on l until l or the server is closed.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			return err
		}
		w := s.track(c)
		if w == nil {
			c.Close()
			return nil
		}
		s.wg.Add(1)
		go s.serveConn(c, w)
	}
}

// Close stops accepting, closes every connection and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track registers a new connection and returns its writer, or nil when the server is closed.
func (s *Server) track(c net.Conn) *connWriter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	w := &connWriter{c: c}
	s.conns[c] = w
	return w
}

// connWriter serializes the replies of one connection: those written at once are batched and flushed when
// the read buffer is drained, delayed ones are written by their timers.
type connWriter struct {
	mu  sync.Mutex
	c   net.Conn
	buf []byte
}

func (w *connWriter) queue(frame []byte) {
	w.mu.Lock()
	w.buf = append(w.buf, frame...)
	w.mu.Unlock()
}

func (w *connWriter) flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.c.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

func (w *connWriter) later(d time.Duration, frame []byte) {
	time.AfterFunc(d, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.c.Write(frame) // a closed connection loses the reply, as a real link would
	})
}

// serveConn reads frames from one connection and answers each.
func (s *Server) serveConn(c net.Conn, w *connWriter) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	log := s.log.With(zap.String("peer", c.RemoteAddr().String()))
	log.Info("connection opened")
	defer log.Info("connection closed")
	s.metrics.conns.Inc()
	defer s.metrics.conns.Dec()

	req, resp := codec.NewMessage(s.spec), codec.NewMessage(s.spec)
	var scratch []byte         // the frame being answered
	buf := make([]byte, 4<<10) // grows for longer frames
	var r, n, count int
	for {
		for s.faults.Load().Stall {
			if s.isClosed() {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		got, rerr := c.Read(buf[n:])
		n += got
		for {
			body, used, err := s.framing.Split(buf[r:n])
			if err == codec.ErrNeedMore {
				break
			}
			if err != nil {
				log.Warn("bad frame, closing", zap.Error(err))
				return
			}
			frame := buf[r : r+used]
			r += used
			if s.framing.IsKeepAlive(body) {
				w.queue(frame)
				continue
			}
			count++
			f := s.faults.Load()
			if f.DisconnectAfter > 0 && count >= f.DisconnectAfter {
				s.metrics.faults.inc("disconnect")
				log.Info("disconnect fault", zap.Int("after", count))
				return
			}
			scratch = s.answer(w, req, resp, body, f, scratch[:0])
		}
		if err := w.flush(); err != nil {
			return
		}
		switch {
		case r == n:
			r, n = 0, 0
		case n == len(buf) && r == 0:
			buf = append(buf, make([]byte, len(buf))...)
		case n == len(buf):
			n = copy(buf, buf[r:n])
			r = 0
		}
		if ne, ok := rerr.(net.Error); ok && ne.Timeout() && !s.isClosed() {
			c.SetReadDeadline(time.Time{}) // woken by a stall: the loop's top waits it out
			continue
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) && !s.isClosed() {
				log.Info("read", zap.Error(rerr))
			}
			return
		}
	}
}

// answer processes one request and sends its reply as the faults say. It packs into scratch and returns
// it for reuse.
func (s *Server) answer(w *connWriter, req, resp *codec.Message, body []byte, f *Faults, scratch []byte) []byte {
	act := f.decide(s.rnd)
	out, ok := s.process(req, resp, body, act.wrongMAC, scratch)
	if !ok {
		return scratch
	}
	switch {
	case act.drop:
		s.metrics.faults.inc("no_reply")
		return out
	case act.garbage:
		s.metrics.faults.inc("garbage")
		out = appendRawFrame(s.framing, out[:0], s.garbageBody())
	}
	if act.duplicate {
		s.metrics.faults.inc("duplicate")
		out = append(out, out...)
	}
	if act.late {
		s.metrics.faults.inc("late")
	}
	if act.delay > 0 {
		w.later(act.delay, append([]byte(nil), out...)) // scratch is reused before the timer fires
		return out
	}
	w.queue(out)
	return out
}

// process decodes a request, applies it and appends the framed response to dst. It reports false when
// there is nothing to answer (undecodable MTI, or a message that is itself a response).
func (s *Server) process(req, resp *codec.Message, body []byte, wrongMAC bool, dst []byte) ([]byte, bool) {
	req.Reset()
	uerr := req.UnpackFrame(s.framing, body)
	mti := req.MTI()
	if mti == "0810" && uerr == nil {
		s.keyChangeAnswered(req)
		return nil, false
	}
	if mti == "" || (mti[2]-'0')%2 == 1 {
		s.metrics.requests.inc("bad")
		s.log.Info("unanswerable message", zap.Error(uerr))
		return nil, false
	}
	s.metrics.requests.inc(mti)
	resp.Reset()
	respMTI := [4]byte{mti[0], mti[1], mti[2] + 1, mti[3]}
	resp.SetMTI(string(respMTI[:]))
	if s.framing.TPDU {
		resp.SetTPDU(req.TPDU())
		resp.SwapTPDU()
	}
	resp.SetHeader(req.Header())
	for _, n := range echoFields {
		if req.Has(n) {
			resp.CopyField(n, req)
		}
	}
	macIn, macOK := false, true
	var res Result
	switch {
	case uerr != nil:
		s.log.Info("format error", zap.String("mti", mti), zap.Error(uerr))
		res.Code = CodeFormatError
	default:
		if macIn, macOK = s.keys.verifyMAC(req); !macOK {
			res.Code = CodeMACError
			break
		}
		res = s.apply(mti, req, resp)
	}
	resp.SetString(39, res.Code)
	if res.AuthCode != "" {
		resp.SetString(38, res.AuthCode)
	}
	if macIn && macOK {
		if wrongMAC {
			s.metrics.faults.inc("wrong_mac")
		}
		if err := s.keys.signMAC(resp, wrongMAC); err != nil {
			s.log.Warn("MAC", zap.Error(err))
		}
	}
	out, err := resp.AppendFrame(s.framing, dst)
	if err != nil {
		s.log.Warn("cannot pack response", zap.String("mti", mti), zap.Error(err))
		return nil, false
	}
	s.metrics.responses.inc(res.Code)
	return out, true
}

// apply carries out a decoded request and fills the response fields that depend on it.
func (s *Server) apply(mti string, req, resp *codec.Message) Result {
	switch mti[:2] {
	case "08":
		return s.network(req, resp)
	case "04":
		return s.ledger.Reverse(Request{Orig: origKey(req)})
	case "01", "02":
	default:
		return Result{Code: CodeInvalidTxn}
	}
	proc := req.String(3)
	if len(proc) < 2 {
		return Result{Code: CodeFormatError}
	}
	amount, _ := req.Amount(4)
	pan := cardNumber(req)
	lr := Request{Key: txnKey(req), PAN: pan, Amount: amount}
	if block, ok := req.Value(52); ok {
		lr.VerifyPIN = s.keys.pinVerifier(block, pan)
	}
	switch proc[0] {
	case '0', '1':
		return s.ledger.Debit(lr)
	case '2':
		lr.Orig = origKey(req)
		return s.ledger.Credit(lr)
	case '3':
		res := s.ledger.Inquire(lr)
		if res.HasBalance {
			resp.SetString(54, balanceField(req.String(49), res.Balance))
		}
		return res
	}
	return Result{Code: CodeInvalidTxn}
}

// network answers 0800 network management by field 70.
func (s *Server) network(req, resp *codec.Message) Result {
	code := req.String(70)
	resp.CopyField(70, req)
	switch code {
	case "001", "002", "301":
		return Result{Code: CodeApproved}
	case "161":
		keyType := KeyTypePIN
		if v := req.String(53); len(v) >= 2 {
			keyType = v[:2]
			resp.CopyField(53, req)
		}
		nk, err := s.keys.makeKey(keyType)
		if err == nil {
			err = s.keys.install(nk)
		}
		if err != nil {
			s.log.Info("key change refused", zap.Error(err))
			return Result{Code: CodeSystemError}
		}
		resp.SetString(48, nk.field48)
		return Result{Code: CodeApproved}
	}
	return Result{Code: CodeInvalidTxn}
}

// ChangeKey starts a key change from the bank's side: a new ZPK (keyType 01) or ZAK (02) goes to every
// open connection in an 0800 with 70 = 161, 53 = the key type and 48 = the key under the ZMK with its check
// value. The bank puts the key in force when an 0810 with the same STAN and 39 = 00 comes back. It returns
// the STAN and how many connections it went to.
func (s *Server) ChangeKey(keyType string) (string, int, error) {
	nk, err := s.keys.makeKey(keyType)
	if err != nil {
		return "", 0, err
	}
	n := s.stan.Add(1)%999999 + 1
	stan := string([]byte{byte('0' + n/100000), byte('0' + n/10000%10), byte('0' + n/1000%10),
		byte('0' + n/100%10), byte('0' + n/10%10), byte('0' + n%10)})
	m := codec.NewMessage(s.spec)
	m.SetMTI("0800")
	for _, f := range []struct {
		n int
		v string
	}{{7, time.Now().UTC().Format("0102150405")}, {11, stan}, {48, nk.field48}, {53, keyType + "00000000000000"}, {70, "161"}} {
		if err := m.SetString(f.n, f.v); err != nil {
			return "", 0, err
		}
	}
	frame, err := m.AppendFrame(s.framing, nil)
	if err != nil {
		return "", 0, err
	}
	s.mu.Lock()
	writers := make([]*connWriter, 0, len(s.conns))
	for _, w := range s.conns {
		writers = append(writers, w)
	}
	if len(writers) > 0 {
		s.pending[stan] = nk
	}
	s.mu.Unlock()
	if len(writers) == 0 {
		return "", 0, errors.New("no connection to send the key change on")
	}
	for _, w := range writers { // outside the lock: a peer that does not read must not stop the server
		w.queue(frame)
		w.flush()
	}
	return stan, len(writers), nil
}

// keyChangeAnswered handles the switch's 0810 to a key change the bank sent: 39 = 00 puts the key in force.
func (s *Server) keyChangeAnswered(m *codec.Message) {
	s.mu.Lock()
	nk, ok := s.pending[m.String(11)]
	delete(s.pending, m.String(11))
	s.mu.Unlock()
	if !ok {
		return
	}
	if code := m.String(39); code != CodeApproved {
		s.log.Info("key change refused by the peer", zap.String("code", code))
		return
	}
	if err := s.keys.install(nk); err != nil {
		s.log.Warn("key change", zap.Error(err))
	}
}

// txnKey identifies a transaction: terminal (41), STAN (11), transmission time (7) and acquirer (32, 11
// digits), the same parts as field 90 of a later void or reversal.
func txnKey(m *codec.Message) string {
	return m.String(41) + "|" + m.String(11) + "|" + m.String(7) + "|" + pad11(m.String(32))
}

// origKey is the key of the transaction that field 90 names, with the request's terminal.
func origKey(m *codec.Message) string {
	if !m.Has(90) {
		return ""
	}
	stan, _ := m.Subfield(90, 2)
	when, _ := m.Subfield(90, 3)
	acq, _ := m.Subfield(90, 4)
	return m.String(41) + "|" + string(stan) + "|" + string(when) + "|" + pad11(string(acq))
}

func pad11(s string) string {
	if len(s) >= 11 {
		return s
	}
	return strings.Repeat("0", 11-len(s)) + s
}

// cardNumber is field 2, or the account number of track 2 (field 35).
func cardNumber(m *codec.Message) string {
	if m.Has(2) {
		return m.String(2)
	}
	t := m.String(35)
	if i := strings.IndexAny(t, "=D"); i >= 0 {
		return t[:i]
	}
	return t
}

// balanceField is field 54 for an available balance: account type 00, amount type 02 (available), the
// currency, C or D and 12 digits.
func balanceField(currency string, balance int64) string {
	if len(currency) != 3 {
		currency = "156"
	}
	sign := byte('C')
	if balance < 0 {
		sign, balance = 'D', -balance
	}
	return fmt.Sprintf("0002%s%c%012d", currency, sign, balance)
}

// garbageBody is random bytes whose first is not a digit in any encoding, so no MTI decodes.
func (s *Server) garbageBody() []byte {
	body := make([]byte, 24)
	s.rnd.fill(body)
	body[0] = 0xFF
	return body
}

// appendRawFrame writes body behind the framing's length header.
func appendRawFrame(f codec.Framing, dst, body []byte) []byte {
	n := len(body)
	switch f.Length {
	case codec.LenBinary2:
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	case codec.LenASCII4:
		dst = fmt.Appendf(dst, "%04d", n)
	case codec.LenBCD2:
		dst = append(dst, byte(n/1000)<<4|byte(n/100%10), byte(n/10%10)<<4|byte(n%10))
	}
	return append(dst, body...)
}
