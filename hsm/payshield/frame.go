package payshield

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// DefaultHeaderLen is the factory-default length of the message header that the HSM echoes.
const DefaultHeaderLen = 4

// errFrame reports a frame too short to hold its header and command code.
var errFrame = errors.New("payshield: frame too short for header and command")

// message is one decoded frame: header, two-character command (or response) code and the rest.
type message struct {
	header string
	code   string
	body   []byte
}

// appendFrame appends the frame [length 2B big-endian][header][code][body] to dst.
func appendFrame(dst []byte, header, code string, body []byte) ([]byte, error) {
	n := len(header) + len(code) + len(body)
	if n > 0xFFFF {
		return dst, fmt.Errorf("payshield: message of %d bytes exceeds the 2-byte length", n)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	dst = append(dst, header...)
	dst = append(dst, code...)
	return append(dst, body...), nil
}

// readFrame reads one frame and splits it; buf is reused when large enough.
func readFrame(r *bufio.Reader, headerLen int, buf []byte) (message, []byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return message{}, buf, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return message{}, buf, err
	}
	if n < headerLen+2 {
		return message{}, buf, errFrame
	}
	return message{header: string(buf[:headerLen]), code: string(buf[headerLen : headerLen+2]), body: buf[headerLen+2:]}, buf, nil
}

// responseCode is the reply code of a command: the second character incremented (CA -> CB, M6 -> M7).
func responseCode(cmd string) string {
	if len(cmd) != 2 {
		return ""
	}
	return string([]byte{cmd[0], cmd[1] + 1})
}
