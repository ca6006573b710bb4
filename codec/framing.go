package codec

import "encoding/binary"

// Framers are functions over byte slices, so the gnet event loop, TLS connections and bank links share them:
// Split finds one frame in the bytes received so far, and AppendFrame writes one.

// headerBytes is the size of the length header.
func (f Framing) headerBytes() int {
	switch f.Length {
	case LenBinary2, LenBCD2:
		return 2
	case LenASCII4:
		return 4
	}
	return 0
}

// maxBody is the largest frame body accepted.
func (f Framing) maxBody() int {
	limit := 9999
	if f.Length == LenBinary2 {
		limit = 65535
	}
	if f.MaxFrame > 0 && f.MaxFrame < limit {
		limit = f.MaxFrame
	}
	return limit
}

// Split looks for the first frame in b. It returns the frame body (the bytes after the length header: TPDU,
// header and message) and how many bytes of b the frame used, or ErrNeedMore (wrapped in nothing: compare
// with ==) when b does not hold a whole frame yet. A declared length beyond the limit is refused at once,
// before anything is allocated or waited for. With no length header the whole of b is one frame.
func (f Framing) Split(b []byte) (body []byte, used int, err error) {
	h := f.headerBytes()
	if h == 0 {
		if len(b) > f.maxBody() {
			return nil, 0, fieldErr(-2, 0, ErrTooLong, "frame of %d bytes exceeds %d", len(b), f.maxBody())
		}
		return b, len(b), nil
	}
	if len(b) < h {
		return nil, 0, ErrNeedMore
	}
	var n int
	switch f.Length {
	case LenBinary2:
		n = int(binary.BigEndian.Uint16(b))
	case LenASCII4:
		v, ok := readPrefix(PrefixASCII, b[:4])
		if !ok {
			return nil, 0, fieldErr(-2, 0, ErrBadValue, "length header is not 4 ASCII digits")
		}
		n = v
	case LenBCD2:
		v, ok := readPrefix(PrefixBCD, b[:2])
		if !ok {
			return nil, 0, fieldErr(-2, 0, ErrBadValue, "length header is not BCD")
		}
		n = v
	}
	if n > f.maxBody() {
		return nil, 0, fieldErr(-2, 0, ErrTooLong, "frame length %d exceeds %d", n, f.maxBody())
	}
	if len(b)-h < n {
		return nil, 0, ErrNeedMore
	}
	return b[h : h+n], h + n, nil
}

// IsKeepAlive reports whether a frame body is a keep-alive rather than a message: an empty frame, or, on a
// channel with a TPDU, a frame holding the TPDU alone (the `00 05 60 00 00 00 00` hello of POS access
// routers). Keep-alives are never answered as messages.
func (f Framing) IsKeepAlive(body []byte) bool {
	return len(body) == 0 || (f.TPDU && len(body) == 5)
}

// UnpackFrame decodes a frame body: TPDU and header (kept in m, readable and writable), then the message.
// Like Unpack, on error m keeps what was decoded before the bad element.
func (m *Message) UnpackFrame(f Framing, body []byte) error {
	pre := f.HeaderLen
	if f.TPDU {
		pre += 5
	}
	if len(body) < pre {
		m.Reset()
		return fieldErr(-2, 0, ErrShort, "frame of %d bytes is shorter than its TPDU and header (%d)", len(body), pre)
	}
	err := m.Unpack(body[pre:])
	off := 0
	if f.TPDU {
		copy(m.tpdu[:], body[:5])
		m.hasTPDU = true
		off = 5
	}
	m.headerLen = copy(m.header[:f.HeaderLen], body[off:pre])
	if fe, ok := err.(*FieldError); ok && fe.Offset >= 0 {
		fe.Offset += pre
	}
	return err
}

// AppendFrame appends a whole frame to dst: length header, TPDU and header when the framing has them (taken
// from m; a missing one is written as zeros), then the packed message.
func (m *Message) AppendFrame(f Framing, dst []byte) ([]byte, error) {
	mark := len(dst)
	h := f.headerBytes()
	for i := 0; i < h; i++ {
		dst = append(dst, 0)
	}
	if f.TPDU {
		if m.hasTPDU {
			dst = append(dst, m.tpdu[:]...)
		} else {
			dst = append(dst, 0, 0, 0, 0, 0)
		}
	}
	if f.HeaderLen > 0 {
		hdr := m.header[:f.HeaderLen]
		if m.headerLen < f.HeaderLen {
			clear(m.header[m.headerLen:f.HeaderLen])
		}
		dst = append(dst, hdr...)
	}
	dst, err := m.Pack(dst)
	if err != nil {
		return dst[:mark], err
	}
	n := len(dst) - mark - h
	if n > f.maxBody() {
		return dst[:mark], fieldErr(-2, -1, ErrTooLong, "frame length %d exceeds %d", n, f.maxBody())
	}
	switch f.Length {
	case LenBinary2:
		binary.BigEndian.PutUint16(dst[mark:], uint16(n))
	case LenASCII4:
		appendPrefix(dst[mark:mark], PrefixASCII, 4, n)
	case LenBCD2:
		appendPrefix(dst[mark:mark], PrefixBCD, 2, n)
	}
	return dst, nil
}
