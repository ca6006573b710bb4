package payshield

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/railswitch/railswitch/hsm"
)

// Server serves the software module over the payShield host protocol: an HSM simulator for tests,
// testers and the simulators. Keys travel as the software module's LMK cryptograms ("R" form). Each
// connection's commands are answered in order, with the header of each request echoed in its reply.
type Server struct {
	Module       *hsm.Software
	HeaderLen    int                    // 1-32; 0 means DefaultHeaderLen
	KeyTypeCodes map[hsm.KeyType]string // overrides of DefaultKeyTypeCodes
	Logger       *zap.Logger            // nil logs nothing; no key, PIN or card data is ever logged

	once  sync.Once
	codes keyTypeTable
	err   error

	mu     sync.Mutex
	lns    map[net.Listener]struct{}
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("payshield: server closed")

func (s *Server) init() error {
	s.once.Do(func() {
		if s.HeaderLen == 0 {
			s.HeaderLen = DefaultHeaderLen
		}
		if s.Logger == nil {
			s.Logger = zap.NewNop()
		}
		if s.Module == nil {
			s.err = errors.New("payshield: server without a module")
			return
		}
		if s.HeaderLen < 1 || s.HeaderLen > 32 {
			s.err = fmt.Errorf("payshield: header length %d out of range 1-32", s.HeaderLen)
			return
		}
		s.codes, s.err = newKeyTypeTable(s.KeyTypeCodes)
		s.lns, s.conns = map[net.Listener]struct{}{}, map[net.Conn]struct{}{}
	})
	return s.err
}

// Serve accepts connections on ln until Close; it always returns a non-nil error.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.init(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.conns[nc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(nc)
	}
}

// Close stops the listeners, closes every connection and waits for their goroutines.
func (s *Server) Close() error {
	if err := s.init(); err != nil {
		return err
	}
	s.mu.Lock()
	s.closed = true
	for ln := range s.lns {
		ln.Close()
	}
	for nc := range s.conns {
		nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) serveConn(nc net.Conn) {
	defer func() {
		nc.Close()
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
		s.wg.Done()
	}()
	log := s.Logger.With(zap.String("remote", nc.RemoteAddr().String()))
	log.Debug("hsm connection opened")
	r, w := bufio.NewReader(nc), bufio.NewWriter(nc)
	var buf, out []byte
	ctx := context.Background()
	for {
		var m message
		var err error
		m, buf, err = readFrame(r, s.HeaderLen, buf)
		if err != nil {
			log.Debug("hsm connection closed", zap.Error(err))
			return
		}
		reply, code := s.handle(ctx, m.code, m.body)
		if code != codeOK {
			log.Debug("hsm command failed", zap.String("command", m.code), zap.String("error_code", code))
		}
		out = append(out[:0], code...)
		out = append(out, reply...)
		frame, err := appendFrame(nil, m.header, responseCode(m.code), out)
		if err == nil {
			_, err = w.Write(frame)
		}
		if err == nil && r.Buffered() == 0 { // flush once per batch of pipelined commands
			err = w.Flush()
		}
		if err != nil {
			log.Debug("hsm write failed", zap.Error(err))
			return
		}
	}
}

// handle runs one command and returns its reply data and error code.
func (s *Server) handle(ctx context.Context, cmd string, body []byte) ([]byte, string) {
	p := &parser{b: body}
	var reply []byte
	var err error
	switch cmd {
	case "CA", "CC", "G0":
		reply, err = s.translatePIN(ctx, cmd, p)
	case "M6", "M8":
		reply, err = s.mac(ctx, cmd, p)
	case "M0", "M2":
		reply, err = s.crypt(ctx, cmd, p)
	case "A0":
		reply, err = s.generateKey(ctx, p)
	case "A6":
		reply, err = s.importKey(ctx, p)
	case "BU":
		reply, err = s.checkValue(p)
	case "NC":
		if err = p.done(); err == nil {
			info, _ := s.Module.Info(ctx)
			reply = fmt.Appendf(nil, "%-16.16s%-9.9s", info.LMKCheck, info.Firmware)
		}
	case "B2":
		data := p.take(p.hexLen())
		if err = p.done(); err == nil {
			reply = data
		}
	default:
		err = hsm.ErrUnsupported
	}
	if err != nil {
		return nil, codeOf(err)
	}
	return reply, codeOK
}

// key reads a key field and returns the key with the spec bound in its cryptogram; when code is not empty
// the key's type must be the one the code names.
func (s *Server) key(p *parser, code string) hsm.Key {
	c := p.key()
	if p.err != nil {
		return hsm.Key{}
	}
	k := hsm.Key{Cryptogram: c}
	spec, err := s.Module.Spec(k)
	if err != nil {
		p.failWith(err)
		return hsm.Key{}
	}
	if code != "" && s.codes.types[code] != spec.Type {
		p.failWith(fmt.Errorf("%w: code %s for a %v", hsm.ErrUnknownKeyType, code, spec.Type))
		return hsm.Key{}
	}
	k.Type, k.Algorithm, k.Length = spec.Type, spec.Algorithm, spec.Length
	return k
}

// keyType reads a 3-character key type code.
func (s *Server) keyType(p *parser) (string, hsm.KeyType) {
	code := strings.ToUpper(p.str(3))
	t, ok := s.codes.types[code]
	if p.err == nil && !ok {
		p.failWith(hsm.ErrUnknownKeyType)
	}
	return code, t
}

func (s *Server) translatePIN(ctx context.Context, cmd string, p *parser) ([]byte, error) {
	req := hsm.PINTranslation{Source: s.key(p, ""), Dest: s.key(p, "")}
	blockChars := 2 * req.Source.Algorithm.BlockSize() // ISO 4 blocks need AES keys, the others TDES
	if cmd == "G0" {
		p.str(3) // KSN descriptor; the BDK's algorithm gives the KSN length
		ksnLen := hsm.TDESKSNLen
		if req.Source.Algorithm == hsm.AlgAES {
			ksnLen = hsm.AESKSNLen
		}
		req.KSN = p.hex(2 * ksnLen)
	} else {
		p.dec(2) // maximum PIN length
	}
	req.Block = p.hex(blockChars)
	req.SourceFormat = parseFormat(p)
	req.DestFormat = parseFormat(p)
	req.PAN = parseAccount(p)
	if err := p.done(); err != nil {
		return nil, err
	}
	want, u := hsm.KeyTPK, hsm.UsagePIN // CA: from a TPK
	switch cmd {
	case "CC":
		want = hsm.KeyZPK
	case "G0":
		want, u = hsm.KeyBDK, hsm.UsageDUKPT
	}
	if req.Source.Type != want {
		return nil, &hsm.UsageError{Type: req.Source.Type, Usage: u}
	}
	res, err := s.Module.TranslatePIN(ctx, req)
	if err != nil {
		return nil, err
	}
	code, err := formatCode(res.Format)
	if err != nil {
		return nil, err
	}
	reply := appendHex(fmt.Appendf(nil, "%02d", res.PINLength), res.Block)
	return append(reply, code...), nil
}

// macAlgorithm maps the M6/M8 algorithm and padding flags to a module algorithm.
func macAlgorithm(algo, pad string, k hsm.Key, data []byte) (hsm.MACAlgorithm, error) {
	switch algo + pad {
	case "10":
		if len(data) == 0 || len(data)%8 != 0 {
			return "", hsm.ErrDataLength
		}
		return hsm.MACISO9797Alg1, nil
	case "11":
		if k.Length == 8 {
			return hsm.MACX99, nil
		}
		return hsm.MACISO9797Alg1, nil
	case "12":
		if k.Length == 8 {
			return hsm.MACPBOC, nil
		}
	case "31":
		return hsm.MACISO9797Alg3, nil
	case "32":
		if k.Length == 16 {
			return hsm.MACPBOC, nil
		}
	case "60":
		return hsm.MACAESCMAC, nil
	}
	return "", fmt.Errorf("%w: MAC algorithm %s with padding %s", hsm.ErrUnsupported, algo, pad)
}

func (s *Server) mac(ctx context.Context, cmd string, p *parser) ([]byte, error) {
	if p.str(1) != "0" || p.str(1) != "0" { // mode 0 (only block), input format 0 (binary)
		p.fail()
	}
	size := p.str(1)
	algo, pad := p.str(1), p.str(1)
	code, _ := s.keyType(p)
	key := s.key(p, code)
	data := p.take(p.hexLen())
	macChars := map[string]int{"0": 8, "1": 16, "2": 32}[size]
	if macChars == 0 {
		p.fail()
	}
	var mac []byte
	if cmd == "M8" {
		mac = p.hex(macChars)
	}
	if err := p.done(); err != nil {
		return nil, err
	}
	alg, err := macAlgorithm(algo, pad, key, data)
	if err != nil {
		return nil, err
	}
	if cmd == "M8" {
		return nil, s.Module.VerifyMAC(ctx, key, alg, data, mac)
	}
	sum, err := s.Module.GenerateMAC(ctx, key, alg, data)
	if err != nil {
		return nil, err
	}
	if macChars/2 > len(sum) {
		return nil, fmt.Errorf("%w: MAC size %s for %s", hsm.ErrUnsupported, size, alg)
	}
	return appendHex(nil, sum[:macChars/2]), nil
}

func (s *Server) crypt(ctx context.Context, cmd string, p *parser) ([]byte, error) {
	req := hsm.DataRequest{}
	switch p.str(2) {
	case "00":
		req.Mode = hsm.DataECB
	case "01":
		req.Mode = hsm.DataCBC
	default:
		p.fail()
	}
	if p.str(1) != "0" || p.str(1) != "0" { // input and output format: binary
		p.fail()
	}
	code, _ := s.keyType(p)
	req.Key = s.key(p, code)
	if req.Mode == hsm.DataCBC {
		req.IV = p.hex(2 * req.Key.Algorithm.BlockSize())
	}
	req.Data = p.take(p.hexLen())
	if err := p.done(); err != nil {
		return nil, err
	}
	var out []byte
	var err error
	if cmd == "M0" {
		out, err = s.Module.Encrypt(ctx, req)
	} else {
		out, err = s.Module.Decrypt(ctx, req)
	}
	if err != nil {
		return nil, err
	}
	var reply []byte
	if req.Mode == hsm.DataCBC { // the chaining value that continues the message: the last ciphertext block
		ct := out
		if cmd == "M2" {
			ct = req.Data
		}
		next := req.IV
		if len(ct) >= len(req.IV) {
			next = ct[len(ct)-len(req.IV):]
		}
		reply = appendHex(reply, next)
	}
	reply = appendHexLen(reply, len(out))
	return append(reply, out...), nil
}

func (s *Server) generateKey(ctx context.Context, p *parser) ([]byte, error) {
	mode := p.str(1)
	_, typ := s.keyType(p)
	alg, n := parseLMKScheme(p)
	req := hsm.GenerateKeyRequest{Spec: hsm.Spec{Type: typ, Algorithm: alg, Length: n}}
	var scheme string
	switch mode {
	case "0":
	case "1":
		if !p.optional(';') {
			p.fail()
		}
		flag := p.str(1)
		kek := s.key(p, "")
		scheme = p.str(1)
		if p.err == nil && !(flag == "0" && kek.Type == hsm.KeyZMK || flag == "1" && kek.Type == hsm.KeyTMK) {
			p.failWith(&hsm.UsageError{Type: kek.Type, Usage: hsm.UsageWrap})
		}
		req.Under = &kek
	default:
		p.fail()
	}
	if err := p.done(); err != nil {
		return nil, err
	}
	g, err := s.Module.GenerateKey(ctx, req)
	if err != nil {
		return nil, err
	}
	reply := []byte(g.Key.Cryptogram)
	if req.Under != nil {
		reply = append(reply, exportField(scheme, g.Under)...)
	}
	return append(reply, g.Key.KCV...), nil
}

func (s *Server) importKey(ctx context.Context, p *parser) ([]byte, error) {
	_, typ := s.keyType(p)
	kek := s.key(p, "")
	if p.err != nil {
		return nil, p.err
	}
	// The key under the ZMK comes before the LMK key scheme, and its length follows from that scheme:
	// read the scheme from the end (one letter, or R + 2 digits for AES).
	rest := p.take(len(p.b))
	schemeLen := 1
	if len(rest) >= 3 && rest[len(rest)-3] == 'R' {
		schemeLen = 3
	}
	if len(rest) <= schemeLen {
		return nil, errField
	}
	sp := &parser{b: rest[len(rest)-schemeLen:]}
	alg, n := parseLMKScheme(sp)
	ep := &parser{b: rest[:len(rest)-schemeLen]}
	if len(ep.b) > 0 && !isHexDigit(ep.b[0]) {
		ep.take(1) // X or Y scheme letter
	}
	enc := ep.hex(2 * n)
	if err := errors.Join(sp.done(), ep.done()); err != nil {
		return nil, errField
	}
	k, err := s.Module.ImportKeyUnchecked(ctx, hsm.ImportKeyRequest{Spec: hsm.Spec{Type: typ, Algorithm: alg, Length: n}, Under: kek, Encrypted: enc})
	if err != nil {
		return nil, err
	}
	return append([]byte(k.Cryptogram), k.KCV...), nil
}

func (s *Server) checkValue(p *parser) ([]byte, error) {
	code2 := strings.ToUpper(p.str(2))
	p.str(1) // key length flag; the cryptogram gives the length
	key := s.key(p, "")
	if err := p.done(); err != nil {
		return nil, err
	}
	if c := s.codes.code[key.Type]; c[1:] != code2 {
		return nil, fmt.Errorf("%w: code %s for a %v", hsm.ErrUnknownKeyType, code2, key.Type)
	}
	kcv, err := s.Module.KeyCheckValueN(key, 8)
	if err != nil {
		return nil, err
	}
	return appendHex(nil, kcv), nil
}
