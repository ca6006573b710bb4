package payshield

import (
	"errors"

	"github.com/railswitch/railswitch/hsm"
)

// Error codes (payShield common error codes, reference/hsm.md 3.3) that the server returns and the client
// maps back to module errors.
const (
	codeOK            = "00"
	codeVerifyFailure = "01" // MAC verification failure; on A6 a parity warning
	codeKeyTypeCode   = "04" // invalid key type code
	codeKeyParity     = "10" // source key parity error
	codeLMK           = "13" // master key / LMK identifier error: a cryptogram not under this LMK
	codeInputData     = "15" // invalid input data
	codePINBlock      = "20" // PIN block does not decode
	codeAccount       = "22" // invalid account number
	codePINFormat     = "23" // invalid PIN block format code
	codePINLength     = "24" // PIN shorter than 4 or longer than 12 digits
	codeKeyLength     = "02" // inappropriate key length
	codeAlgorithm     = "27" // incompatible key length: a key of the wrong algorithm for the operation
	codeKeyType       = "28" // invalid key type: usage not allowed
	codeNotPermitted  = "29" // function not permitted (PAN-bound format to format 1)
	codeInternal      = "41" // internal error
	codeNotSupported  = "68" // command disabled
	codeDataLength    = "80" // data length error
)

// codeOf returns the error code for a module error.
func codeOf(err error) string {
	switch {
	case err == nil:
		return codeOK
	case errors.Is(err, hsm.ErrMACVerify):
		return codeVerifyFailure
	case errors.Is(err, hsm.ErrKeyUsage):
		return codeKeyType
	case errors.Is(err, hsm.ErrUnknownKeyType):
		return codeKeyTypeCode
	case errors.Is(err, hsm.ErrParity):
		return codeKeyParity
	case errors.Is(err, hsm.ErrCryptogram):
		return codeLMK
	case errors.Is(err, hsm.ErrPINBlock), errors.Is(err, hsm.ErrPINDigits):
		return codePINBlock
	case errors.Is(err, hsm.ErrPAN):
		return codeAccount
	case errors.Is(err, hsm.ErrPINBlockFormat):
		return codePINFormat
	case errors.Is(err, hsm.ErrPINLength):
		return codePINLength
	case errors.Is(err, hsm.ErrAlgorithm):
		return codeAlgorithm
	case errors.Is(err, hsm.ErrKeyLength):
		return codeKeyLength
	case errors.Is(err, hsm.ErrFormatConversion):
		return codeNotPermitted
	case errors.Is(err, hsm.ErrDataLength), errors.Is(err, hsm.ErrTrackLength):
		return codeDataLength
	case errors.Is(err, hsm.ErrKSN), errors.Is(err, hsm.ErrKSNCounter), errors.Is(err, errField):
		return codeInputData
	case errors.Is(err, hsm.ErrUnsupported):
		return codeNotSupported
	}
	return codeInternal
}

// errorOf returns the module error an error code stands for in a reply to cmd (nil when none fits).
func errorOf(cmd, code string) error {
	switch code {
	case codeVerifyFailure:
		if cmd == "A6" {
			return hsm.ErrParity
		}
		return hsm.ErrMACVerify
	case codeKeyType:
		return hsm.ErrKeyUsage
	case codeKeyTypeCode:
		return hsm.ErrUnknownKeyType
	case codeKeyParity, "11":
		return hsm.ErrParity
	case codeLMK:
		return hsm.ErrCryptogram
	case codePINBlock:
		return hsm.ErrPINBlock
	case codeAccount:
		return hsm.ErrPAN
	case codePINFormat, "69":
		return hsm.ErrPINBlockFormat
	case codePINLength:
		return hsm.ErrPINLength
	case codeAlgorithm:
		return hsm.ErrAlgorithm
	case codeKeyLength, "05", "75":
		return hsm.ErrKeyLength
	case codeNotPermitted:
		if cmd == "CA" || cmd == "CC" || cmd == "G0" {
			return hsm.ErrFormatConversion
		}
		return hsm.ErrUnsupported
	case codeDataLength:
		return hsm.ErrDataLength
	case codeNotSupported, "67", "47":
		return hsm.ErrUnsupported
	}
	return nil
}
