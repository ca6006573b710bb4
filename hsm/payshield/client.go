package payshield

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/railswitch/railswitch/hsm"
)

// Config configures a Client.
type Config struct {
	Addr         string                 // host:port of the HSM (payShield default port 1500)
	HeaderLen    int                    // length of the message header the HSM echoes, 1-32 (0 means 4)
	Conns        int                    // connections in the pool (default 2)
	MaxInFlight  int                    // outstanding commands per connection (default 16)
	Timeout      time.Duration          // per command, when the context has no earlier deadline (default 2s)
	DialTimeout  time.Duration          // per connection attempt (default 2s)
	KeyTypeCodes map[hsm.KeyType]string // overrides of DefaultKeyTypeCodes
}

// ErrClosed reports a call on a closed Client.
var ErrClosed = errors.New("payshield: client closed")

// Client is an hsm.Module backed by a payShield-compatible HSM over TCP. It keeps a pool of connections,
// sends several commands on each without waiting (pipelining), and matches each reply to its command by
// the message header, which is unique among a connection's outstanding commands. A command that times out
// closes its connection, since a stalled HSM connection would stall every command behind it; the next
// command on that pool slot dials again. It is safe for concurrent use.
type Client struct {
	cfg    Config
	codes  keyTypeTable
	slots  []*slot
	next   atomic.Uint32
	closed atomic.Bool
}

var _ hsm.Module = (*Client)(nil)

// slot is one pool position: the current connection and the limit on its outstanding commands.
type slot struct {
	cl       *Client
	inflight chan struct{}
	mu       sync.Mutex
	cur      *link
}

// link is one TCP connection and its outstanding commands by header.
type link struct {
	nc  net.Conn
	wmu sync.Mutex // serialises writes

	mu      sync.Mutex
	pending map[string]chan reply
	seq     uint64
	dead    error
}

type reply struct {
	msg message
	err error
}

// NewClient returns a client for the HSM at cfg.Addr. Connections are made on first use.
func NewClient(cfg Config) (*Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("payshield: no HSM address")
	}
	if cfg.HeaderLen == 0 {
		cfg.HeaderLen = DefaultHeaderLen
	}
	if cfg.HeaderLen < 1 || cfg.HeaderLen > 32 {
		return nil, fmt.Errorf("payshield: header length %d out of range 1-32", cfg.HeaderLen)
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 2
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 16
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	// Each outstanding command needs its own header value: 36 characters per header position.
	limit := 1
	for i := 0; i < cfg.HeaderLen && limit < cfg.MaxInFlight; i++ {
		limit *= 36
	}
	cfg.MaxInFlight = min(cfg.MaxInFlight, limit)
	codes, err := newKeyTypeTable(cfg.KeyTypeCodes)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, codes: codes}
	for range cfg.Conns {
		c.slots = append(c.slots, &slot{cl: c, inflight: make(chan struct{}, cfg.MaxInFlight)})
	}
	return c, nil
}

// Close closes every connection; outstanding commands fail.
func (c *Client) Close() error {
	c.closed.Store(true)
	for _, s := range c.slots {
		s.mu.Lock()
		if s.cur != nil {
			s.cur.kill(ErrClosed)
			s.cur = nil
		}
		s.mu.Unlock()
	}
	return nil
}

// do sends one command and returns the reply data after the error code. A non-zero error code gives an
// *hsm.RemoteError.
func (c *Client) do(ctx context.Context, cmd string, body []byte) ([]byte, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > c.cfg.Timeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
	}
	s, err := c.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("payshield: %s: waiting for a connection: %w", cmd, err)
	}
	defer func() { <-s.inflight }()

	l, err := s.link(ctx)
	if err != nil {
		return nil, fmt.Errorf("payshield: %s: %w", cmd, err)
	}
	header, ch, err := l.register(c.cfg.HeaderLen)
	if err != nil {
		return nil, fmt.Errorf("payshield: %s: %w", cmd, err)
	}
	frame, err := appendFrame(make([]byte, 0, 2+len(header)+2+len(body)), header, cmd, body)
	if err != nil {
		l.unregister(header)
		return nil, err
	}
	if err := l.write(ctx, frame); err != nil {
		l.kill(err)
		return nil, fmt.Errorf("payshield: %s: %w", cmd, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("payshield: %s: %w", cmd, r.err)
		}
		return checkReply(cmd, r.msg)
	case <-ctx.Done():
		l.unregister(header)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) { // the HSM stalls: start again on a new connection
			l.kill(fmt.Errorf("command %s timed out", cmd))
		}
		return nil, fmt.Errorf("payshield: %s: no reply: %w", cmd, ctx.Err())
	}
}

// acquire takes a command slot on a pool connection: the first with room, starting from the next in turn,
// else it waits for the one in turn.
func (c *Client) acquire(ctx context.Context) (*slot, error) {
	start := int(c.next.Add(1) % uint32(len(c.slots)))
	for i := range c.slots {
		s := c.slots[(start+i)%len(c.slots)]
		select {
		case s.inflight <- struct{}{}:
			return s, nil
		default:
		}
	}
	s := c.slots[start]
	select {
	case s.inflight <- struct{}{}:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// checkReply checks the response code and splits off the error code.
func checkReply(cmd string, m message) ([]byte, error) {
	if want := responseCode(cmd); m.code != want {
		return nil, fmt.Errorf("payshield: %s: reply code %q, want %s", cmd, m.code, want)
	}
	if len(m.body) < 2 {
		return nil, fmt.Errorf("payshield: %s: reply without error code", cmd)
	}
	if code := string(m.body[:2]); code != codeOK {
		return m.body[2:], &hsm.RemoteError{Command: cmd, Code: code, Err: errorOf(cmd, code)}
	}
	return m.body[2:], nil
}

// link returns the slot's live connection, dialling a new one when there is none.
func (s *slot) link(ctx context.Context) (*link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && s.cur.alive() {
		return s.cur, nil
	}
	if s.cl.closed.Load() {
		return nil, ErrClosed
	}
	d := net.Dialer{Timeout: s.cl.cfg.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", s.cl.cfg.Addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	l := &link{nc: nc, pending: map[string]chan reply{}}
	s.cur = l
	go l.readLoop(s.cl.cfg.HeaderLen)
	return l, nil
}

func (l *link) alive() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dead == nil
}

const headerAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

// register allocates a header not used by any outstanding command and the channel its reply goes to.
func (l *link) register(n int) (string, chan reply, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead != nil {
		return "", nil, l.dead
	}
	var h [32]byte
	for {
		l.seq++
		v := l.seq
		for i := n - 1; i >= 0; i-- {
			h[i] = headerAlphabet[v%36]
			v /= 36
		}
		if _, used := l.pending[string(h[:n])]; !used {
			break
		}
	}
	header := string(h[:n])
	ch := make(chan reply, 1)
	l.pending[header] = ch
	return header, ch, nil
}

func (l *link) unregister(header string) {
	l.mu.Lock()
	delete(l.pending, header)
	l.mu.Unlock()
}

func (l *link) write(ctx context.Context, frame []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	d, _ := ctx.Deadline()
	l.nc.SetWriteDeadline(d)
	_, err := l.nc.Write(frame)
	return err
}

// kill closes the connection and fails its outstanding commands with err.
func (l *link) kill(err error) {
	l.mu.Lock()
	if l.dead == nil {
		l.dead = err
		for h, ch := range l.pending {
			ch <- reply{err: fmt.Errorf("connection lost: %w", err)}
			delete(l.pending, h)
		}
	}
	l.mu.Unlock()
	l.nc.Close()
}

// readLoop hands each reply to the command that waits for its header; a reply nobody waits for (its
// command timed out) is dropped.
func (l *link) readLoop(headerLen int) {
	r := bufio.NewReader(l.nc)
	for {
		m, buf, err := readFrame(r, headerLen, nil)
		if err != nil {
			l.kill(err)
			return
		}
		m.body = buf[headerLen+2:] // buf is fresh for every frame, so the reply may keep it
		l.mu.Lock()
		ch, ok := l.pending[m.header]
		delete(l.pending, m.header)
		l.mu.Unlock()
		if ok {
			ch <- reply{msg: m}
		}
	}
}

// keyCode returns the key type code sent for k.
func (c *Client) keyCode(t hsm.KeyType) (string, error) {
	if code, ok := c.codes.code[t]; ok {
		return code, nil
	}
	return "", fmt.Errorf("%w: %v", hsm.ErrUnknownKeyType, t)
}

// TranslatePIN implements hsm.Module with CA (from a TPK), CC (from a ZPK) or G0 (from a DUKPT BDK).
func (c *Client) TranslatePIN(ctx context.Context, req hsm.PINTranslation) (hsm.PINResult, error) {
	srcFmt, err := formatCode(req.SourceFormat)
	if err != nil {
		return hsm.PINResult{}, err
	}
	dstFmt, err := formatCode(req.DestFormat)
	if err != nil {
		return hsm.PINResult{}, err
	}
	account, err := accountField(req.PAN, req.SourceFormat == hsm.ISO4 || req.DestFormat == hsm.ISO4)
	if err != nil {
		return hsm.PINResult{}, err
	}
	var cmd string
	body := make([]byte, 0, 256)
	switch {
	case req.KSN != nil:
		cmd = "G0"
		body = append(body, req.Source.Cryptogram...)
		body = append(body, req.Dest.Cryptogram...)
		body = append(body, ksnDescriptor(len(req.KSN))...)
		body = appendHex(body, req.KSN)
		body = appendHex(body, req.Block)
	default:
		cmd = "CA"
		if req.Source.Type == hsm.KeyZPK {
			cmd = "CC"
		}
		body = append(body, req.Source.Cryptogram...)
		body = append(body, req.Dest.Cryptogram...)
		body = append(body, "12"...) // maximum PIN length
		body = appendHex(body, req.Block)
	}
	body = append(append(append(body, srcFmt...), dstFmt...), account...)
	data, err := c.do(ctx, cmd, body)
	if err != nil {
		return hsm.PINResult{}, err
	}
	return parsePINReply(data, req.DestFormat)
}

// ksnDescriptor is the 3H KSN descriptor of G0 (BDK ID, sub-key and device ID lengths); the simulator takes
// the KSN length from the BDK instead.
func ksnDescriptor(ksnLen int) string {
	if ksnLen == hsm.AESKSNLen {
		return "A06"
	}
	return "A05"
}

// parsePINReply reads the CB/CD/G1 data: PIN length 2N, PIN block, format code 2N.
func parsePINReply(data []byte, want hsm.PINBlockFormat) (hsm.PINResult, error) {
	p := parser{b: data}
	n := p.dec(2)
	block := p.hex(2 * want.Size())
	f := parseFormat(&p)
	if err := p.done(); err != nil {
		return hsm.PINResult{}, fmt.Errorf("payshield: PIN translation reply: %w", err)
	}
	return hsm.PINResult{Block: block, Format: f, PINLength: n}, nil
}

// macParams are the M6/M8 fields of an algorithm: MAC algorithm, padding method and MAC size flag.
func macParams(alg hsm.MACAlgorithm, keyLen int) (algo, pad byte, err error) {
	switch alg {
	case hsm.MACCupECB:
		return '1', '0', nil // over the 16 hex characters of the XOR fold, see cupFold
	case hsm.MACX99, hsm.MACISO9797Alg1:
		return '1', '1', nil
	case hsm.MACX919, hsm.MACISO9797Alg3:
		return '3', '1', nil
	case hsm.MACPBOC:
		if keyLen == 8 {
			return '1', '2', nil
		}
		return '3', '2', nil
	case hsm.MACAESCMAC:
		return '6', '0', nil
	}
	return 0, 0, fmt.Errorf("%w: MAC algorithm %q", hsm.ErrUnsupported, alg)
}

// macSizeFlag gives the MAC size flag for a MAC of n bytes: 0 = 8H, 1 = 16H, 2 = 32H (simulator, AES-CMAC).
func macSizeFlag(n int) (byte, error) {
	switch n {
	case 4:
		return '0', nil
	case 8:
		return '1', nil
	case 16:
		return '2', nil
	}
	return 0, fmt.Errorf("%w: a MAC of %d bytes (M6/M8 carry 4, 8 or 16)", hsm.ErrUnsupported, n)
}

// cupFold is the host's part of the UnionPay POS MAC: the XOR of the zero-padded 8-byte blocks, as 16
// uppercase hex characters. The HSM finishes it with ISO 9797-1 algorithm 1 (no padding) and the first 4
// bytes of the result, as 8 hex characters, are field 64.
func cupFold(data []byte) []byte {
	var r [8]byte
	for i := 0; i < len(data); i++ {
		r[i%8] ^= data[i]
	}
	return appendHex(make([]byte, 0, 16), r[:])
}

// macBody builds the M6/M8 fields up to and including the message.
func (c *Client) macBody(key hsm.Key, alg hsm.MACAlgorithm, size byte, data []byte) ([]byte, error) {
	algo, pad, err := macParams(alg, key.Length)
	if err != nil {
		return nil, err
	}
	code, err := c.keyCode(key.Type)
	if err != nil {
		return nil, err
	}
	if alg == hsm.MACCupECB {
		data = cupFold(data)
	}
	body := make([]byte, 0, 16+len(key.Cryptogram)+len(data)+32)
	body = append(body, '0', '0', size, algo, pad) // mode 0: only block; input format 0: binary
	body = append(body, code...)
	body = append(body, key.Cryptogram...)
	body = appendHexLen(body, len(data))
	return append(body, data...), nil
}

// GenerateMAC implements hsm.Module with M6.
func (c *Client) GenerateMAC(ctx context.Context, key hsm.Key, alg hsm.MACAlgorithm, data []byte) ([]byte, error) {
	size, n := byte('1'), 8
	switch alg {
	case hsm.MACCupECB:
		size = '0'
	case hsm.MACAESCMAC:
		size, n = '2', 16
	}
	body, err := c.macBody(key, alg, size, data)
	if err != nil {
		return nil, err
	}
	reply, err := c.do(ctx, "M6", body)
	if err != nil {
		return nil, err
	}
	if alg == hsm.MACCupECB { // 8 hex characters: field 64 as text
		if len(reply) != 8 {
			return nil, fmt.Errorf("payshield: M6: MAC of %d characters, want 8", len(reply))
		}
		return append([]byte(nil), reply...), nil
	}
	p := parser{b: reply}
	mac := p.hex(2 * n)
	if err := p.done(); err != nil {
		return nil, fmt.Errorf("payshield: M6 reply: %w", err)
	}
	return mac, nil
}

// VerifyMAC implements hsm.Module with M8.
func (c *Client) VerifyMAC(ctx context.Context, key hsm.Key, alg hsm.MACAlgorithm, data, mac []byte) error {
	var size byte
	var field []byte
	if alg == hsm.MACCupECB {
		if len(mac) != 8 {
			return hsm.ErrMACVerify
		}
		size, field = '0', mac
	} else {
		var err error
		if size, err = macSizeFlag(len(mac)); err != nil {
			return err
		}
		field = appendHex(nil, mac)
	}
	body, err := c.macBody(key, alg, size, data)
	if err != nil {
		return err
	}
	_, err = c.do(ctx, "M8", append(body, field...))
	var re *hsm.RemoteError
	if errors.As(err, &re) && re.Code == codeVerifyFailure {
		return hsm.ErrMACVerify
	}
	return err
}

// Encrypt implements hsm.Module with M0.
func (c *Client) Encrypt(ctx context.Context, req hsm.DataRequest) ([]byte, error) {
	return c.crypt(ctx, "M0", req)
}

// Decrypt implements hsm.Module with M2.
func (c *Client) Decrypt(ctx context.Context, req hsm.DataRequest) ([]byte, error) {
	return c.crypt(ctx, "M2", req)
}

func (c *Client) crypt(ctx context.Context, cmd string, req hsm.DataRequest) ([]byte, error) {
	if req.Mode == hsm.DataTrack {
		// The same block as hsm.EncryptTrackTDK: the 8 bytes before the last byte, under the TDK in ECB.
		if req.Key.Type != hsm.KeyTDK {
			return nil, &hsm.UsageError{Key: req.Key.Name, Type: req.Key.Type, Usage: hsm.UsageData}
		}
		if len(req.Data) < 9 {
			return nil, hsm.ErrTrackLength
		}
		n := len(req.Data)
		blk, err := c.crypt(ctx, cmd, hsm.DataRequest{Key: req.Key, Mode: hsm.DataECB, Data: req.Data[n-9 : n-1]})
		if err != nil {
			return nil, err
		}
		out := append([]byte(nil), req.Data...)
		copy(out[n-9:n-1], blk)
		return out, nil
	}
	var mode string
	switch req.Mode {
	case hsm.DataECB:
		mode = "00"
	case hsm.DataCBC:
		mode = "01"
	default:
		return nil, fmt.Errorf("%w: data mode %v", hsm.ErrUnsupported, req.Mode)
	}
	code, err := c.keyCode(req.Key.Type)
	if err != nil {
		return nil, err
	}
	body := make([]byte, 0, 16+len(req.Key.Cryptogram)+2*len(req.IV)+len(req.Data))
	body = append(body, mode...)
	body = append(body, '0', '0') // input and output format: binary
	body = append(body, code...)
	body = append(body, req.Key.Cryptogram...)
	if req.Mode == hsm.DataCBC {
		body = appendHex(body, req.IV)
	}
	body = appendHexLen(body, len(req.Data))
	body = append(body, req.Data...)
	reply, err := c.do(ctx, cmd, body)
	if err != nil {
		return nil, err
	}
	p := parser{b: reply}
	if req.Mode == hsm.DataCBC {
		p.hex(2 * len(req.IV)) // the chaining value to continue with; not needed for whole messages
	}
	out := p.take(p.hexLen())
	if err := p.done(); err != nil {
		return nil, fmt.Errorf("payshield: %s reply: %w", cmd, err)
	}
	return append([]byte(nil), out...), nil
}

// GenerateKey implements hsm.Module with A0 (mode 1 exports under the ZMK or TMK).
func (c *Client) GenerateKey(ctx context.Context, req hsm.GenerateKeyRequest) (hsm.GeneratedKey, error) {
	if err := req.Spec.Validate(); err != nil {
		return hsm.GeneratedKey{}, err
	}
	code, err := c.keyCode(req.Spec.Type)
	if err != nil {
		return hsm.GeneratedKey{}, err
	}
	body := make([]byte, 0, 256)
	mode := byte('0')
	if req.Under != nil {
		mode = '1'
	}
	body = append(body, mode)
	body = append(body, code...)
	body = append(body, lmkScheme(req.Spec)...)
	if req.Under != nil {
		flag := byte('0')
		switch req.Under.Type {
		case hsm.KeyTMK:
			flag = '1'
		case hsm.KeyZMK:
		default:
			return hsm.GeneratedKey{}, &hsm.UsageError{Key: req.Under.Name, Type: req.Under.Type, Usage: hsm.UsageWrap}
		}
		body = append(body, ';', flag)
		body = append(body, req.Under.Cryptogram...)
		body = append(body, exportScheme(req.Spec)...)
	}
	reply, err := c.do(ctx, "A0", body)
	if err != nil {
		return hsm.GeneratedKey{}, err
	}
	p := parser{b: reply}
	g := hsm.GeneratedKey{Key: newKey(req.Name, req.Spec, p.key())}
	if req.Under != nil {
		if len(p.b) > 0 && !isHexDigit(p.b[0]) {
			p.take(1) // X or Y scheme letter
		}
		g.Under = p.hex(2 * req.Spec.Length)
	}
	g.Key.KCV = p.str(6)
	if err := p.done(); err != nil {
		return hsm.GeneratedKey{}, fmt.Errorf("payshield: A0 reply: %w", err)
	}
	return g, nil
}

func newKey(name string, s hsm.Spec, cryptogram string) hsm.Key {
	return hsm.Key{Name: name, Type: s.Type, Algorithm: s.Algorithm, Length: s.Length, Cryptogram: cryptogram}
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f'
}

// ImportKey implements hsm.Module with A6, then compares the returned check value with the expected one.
func (c *Client) ImportKey(ctx context.Context, req hsm.ImportKeyRequest) (hsm.Key, error) {
	if req.KCV == "" {
		return hsm.Key{}, fmt.Errorf("%w: the expected check value is required", hsm.ErrKCV)
	}
	if err := req.Spec.Validate(); err != nil {
		return hsm.Key{}, err
	}
	if len(req.Encrypted) != req.Spec.Length {
		return hsm.Key{}, fmt.Errorf("%w: encrypted key of %d bytes for a %d-byte key", hsm.ErrKeyLength, len(req.Encrypted), req.Spec.Length)
	}
	code, err := c.keyCode(req.Spec.Type)
	if err != nil {
		return hsm.Key{}, err
	}
	body := make([]byte, 0, 256)
	body = append(body, code...)
	body = append(body, req.Under.Cryptogram...)
	body = append(body, exportField(exportScheme(req.Spec), req.Encrypted)...)
	body = append(body, lmkScheme(req.Spec)...)
	reply, err := c.do(ctx, "A6", body)
	if err != nil {
		return hsm.Key{}, err
	}
	p := parser{b: reply}
	k := newKey(req.Name, req.Spec, p.key())
	k.KCV = p.str(6)
	if err := p.done(); err != nil {
		return hsm.Key{}, fmt.Errorf("payshield: A6 reply: %w", err)
	}
	if want := strings.ToUpper(req.KCV); len(want) < 4 || !strings.HasPrefix(k.KCV, want) {
		return hsm.Key{}, fmt.Errorf("%w: key %q has check value %s, expected %s", hsm.ErrKCV, req.Name, k.KCV, want)
	}
	return k, nil
}

// ImportComponents is not offered over the host protocol: clear components are entered at the HSM's own
// console. It returns hsm.ErrUnsupported.
func (c *Client) ImportComponents(context.Context, hsm.ComponentsRequest) (hsm.Key, error) {
	return hsm.Key{}, fmt.Errorf("%w: clear key components are entered at the HSM console, not over the host protocol", hsm.ErrUnsupported)
}

// KeyCheckValue implements hsm.Module with BU.
func (c *Client) KeyCheckValue(ctx context.Context, key hsm.Key) (string, error) {
	kcv, err := c.checkValue(ctx, key)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%X", kcv[:3]), nil
}

// checkValue returns the 8-byte check value BU gives.
func (c *Client) checkValue(ctx context.Context, key hsm.Key) ([]byte, error) {
	code, err := c.keyCode(key.Type)
	if err != nil {
		return nil, err
	}
	flag := byte('1')
	switch key.Length {
	case 8:
		flag = '0'
	case 24:
		flag = '2'
	}
	body := append([]byte(code[1:]), flag)
	reply, err := c.do(ctx, "BU", append(body, key.Cryptogram...))
	if err != nil {
		return nil, err
	}
	p := parser{b: reply}
	kcv := p.hex(16)
	if err := p.done(); err != nil {
		return nil, fmt.Errorf("payshield: BU reply: %w", err)
	}
	return kcv, nil
}

// CUPSignOnKeys implements hsm.Module: A0 exports each new key under the TMK, BU gives the 4-byte check
// values field 62 carries. The commands go out together.
func (c *Client) CUPSignOnKeys(ctx context.Context, req hsm.CUPSignOnRequest) (hsm.CUPSignOn, error) {
	if req.TMK.Type != hsm.KeyTMK {
		return hsm.CUPSignOn{}, &hsm.UsageError{Key: req.TMK.Name, Type: req.TMK.Type, Usage: hsm.UsageWrap}
	}
	type want struct {
		suffix string
		typ    hsm.KeyType
		n      int
	}
	var wants []want
	switch req.NetCode {
	case hsm.CUPSingleDES:
		wants = []want{{"pik", hsm.KeyTPK, 8}, {"mak", hsm.KeyTAK, 8}}
	case hsm.CUPDoubleLength:
		wants = []want{{"pik", hsm.KeyTPK, 16}, {"mak", hsm.KeyTAK, 8}}
	case hsm.CUPWithTDK:
		wants = []want{{"pik", hsm.KeyTPK, 16}, {"mak", hsm.KeyTAK, 8}, {"tdk", hsm.KeyTDK, 16}}
	default:
		return hsm.CUPSignOn{}, fmt.Errorf("%w: sign-on network code %q (want 001, 003 or 004)", hsm.ErrUnsupported, req.NetCode)
	}
	type made struct {
		g   hsm.GeneratedKey
		cv  []byte
		err error
	}
	results := make([]made, len(wants))
	var wg sync.WaitGroup
	for i, w := range wants {
		wg.Go(func() {
			r := &results[i]
			spec := hsm.Spec{Type: w.typ, Algorithm: hsm.AlgTDES, Length: w.n}
			r.g, r.err = c.GenerateKey(ctx, hsm.GenerateKeyRequest{Name: req.Prefix + "/" + w.suffix, Spec: spec, Under: &req.TMK})
			if r.err == nil {
				r.cv, r.err = c.checkValue(ctx, r.g.Key)
			}
		})
	}
	wg.Wait()
	for _, r := range results {
		if r.err != nil {
			return hsm.CUPSignOn{}, r.err
		}
	}
	out := hsm.CUPSignOn{PIK: results[0].g.Key, MAK: results[1].g.Key}
	set := hsm.CUPKeySet{PIK: results[0].g.Under, PIKCV: results[0].cv[:4], MAK: results[1].g.Under, MAKCV: results[1].cv[:4]}
	if len(results) == 3 {
		out.TDK = &results[2].g.Key
		set.TDK, set.TDKCV = results[2].g.Under, results[2].cv[:4]
	}
	var err error
	if out.Field62, err = set.Field62(req.NetCode); err != nil {
		return hsm.CUPSignOn{}, err
	}
	return out, nil
}

// Info implements hsm.Module with NC.
func (c *Client) Info(ctx context.Context) (hsm.Info, error) {
	reply, err := c.do(ctx, "NC", nil)
	if err != nil {
		return hsm.Info{}, err
	}
	p := parser{b: reply}
	info := hsm.Info{LMKCheck: p.str(16), Firmware: p.str(9)}
	if err := p.done(); err != nil {
		return hsm.Info{}, fmt.Errorf("payshield: NC reply: %w", err)
	}
	return info, nil
}

// Echo sends data with B2 and checks that the HSM returns it: a health check.
func (c *Client) Echo(ctx context.Context, data []byte) error {
	reply, err := c.do(ctx, "B2", append(appendHexLen(nil, len(data)), data...))
	if err != nil {
		return err
	}
	if string(reply) != string(data) {
		return errors.New("payshield: B2 echo returned other data")
	}
	return nil
}
