package link

import (
	"fmt"

	"github.com/railswitch/railswitch/codec"
)

// keyBytes bounds a matching key: 3 bytes of MTI class, then each key field as a length byte and its value.
const keyBytes = 48

// Key identifies a request in flight and the response that answers it: the MTI's version, class and function
// pair (0200 and 0210 give the same, as do 0420 and 0430), then the values of the link's key fields. It is a
// fixed-size array, so building and looking one up allocates nothing.
type Key [keyBytes]byte

// keyer builds keys from a message.
type keyer struct{ fields []int }

func newKeyer(fields []int) (keyer, error) {
	for _, f := range fields {
		if f < 2 || f > codec.MaxField {
			return keyer{}, fmt.Errorf("key field %d out of range", f)
		}
	}
	return keyer{fields: fields}, nil
}

// key builds m's matching key. An absent key field counts as empty (an 0800 has no field 41).
func (k keyer) key(m *codec.Message) (Key, error) {
	var out Key
	mti := m.MTIBytes()
	if len(mti) != 4 {
		return out, fmt.Errorf("%w: no MTI", ErrKey)
	}
	out[0], out[1] = mti[0], mti[1]
	out[2] = mti[2] &^ 1 // response (1) and advice response (3) meet their request (0) and advice (2)
	i := 3
	for _, f := range k.fields {
		v, _ := m.Value(f)
		if i+1+len(v) > len(out) {
			return out, fmt.Errorf("%w: key fields longer than %d bytes", ErrKey, keyBytes)
		}
		out[i] = byte(len(v))
		copy(out[i+1:], v)
		i += 1 + len(v)
	}
	return out, nil
}

// isRequest reports whether an MTI's function digit is a request, advice or notification (even): a message
// the bank started rather than a response.
func isRequest(mti []byte) bool { return (mti[2]-'0')%2 == 0 }
