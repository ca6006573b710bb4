package codec_test

import (
	"fmt"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/specs"
)

// Split a UnionPay POS frame, unpack it, read fields and subfields, and answer with the TPDU swapped.
func ExampleMessage_UnpackFrame() {
	s, _ := specs.Get("cup-pos")
	frame := []byte{0x00, 0x3C, 0x60, 0x06, 0x01, 0x00, 0x00, 0x60, 0x31, 0x00, 0x31, 0x18, 0x12, 0x08, 0x00,
		0x00, 0x20, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x12, 0x00, 0x00, 0x00, '2', '2', '0', '0', '3', '6', '0', '0',
		'1', '0', '4', '5', '1', '2', '5', '4', '1', '1', '1', '0', '0', '0', '1', 0x00, 0x11, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x30, 0x00, 0x03, '0', '0', '0'}
	fr := s.Framing()
	body, used, err := fr.Split(frame)
	if err != nil {
		fmt.Println(err)
		return
	}
	m := codec.NewMessage(s)
	if err := m.UnpackFrame(fr, body); err != nil {
		fmt.Println(err)
		return
	}
	netCode, _ := m.Subfield(60, 3)
	fmt.Println(used, m.MTI(), m.String(41), m.String(42), string(netCode))

	_ = m.SetMTI("0810")
	_ = m.SetString(39, "00")
	m.SwapTPDU()
	out, _ := m.AppendFrame(fr, nil)
	fmt.Printf("% X\n", out[:7])
	// Output:
	// 62 0800 22003600 104512541110001 003
	// 00 3E 60 00 00 06 01
}
