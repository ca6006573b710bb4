package hsm

import (
	"errors"
	"fmt"
)

// Errors of the security module, for errors.Is. None of them carries key material, PINs or card data.
var (
	// ErrKeyUsage reports a key used for an operation its type does not allow (see UsageError).
	ErrKeyUsage = errors.New("hsm: key usage not allowed")
	// ErrUnknownKeyType reports a key type code that is not defined.
	ErrUnknownKeyType = errors.New("hsm: invalid key type")
	// ErrAlgorithm reports a key used with an algorithm that is not its own (a TDES key for AES-CMAC).
	ErrAlgorithm = errors.New("hsm: key algorithm does not fit the operation")
	// ErrKeyNotFound reports a key name (or version) the key store does not hold.
	ErrKeyNotFound = errors.New("hsm: key not found")
	// ErrCryptogram reports a key cryptogram the module cannot open: malformed, altered, or made under
	// another LMK.
	ErrCryptogram = errors.New("hsm: key cryptogram invalid or under another LMK")
	// ErrWrongLMK reports a local master key whose check value differs from the one the key store records.
	ErrWrongLMK = errors.New("hsm: local master key does not match the key store")
	// ErrKCV reports a key whose check value differs from the expected one.
	ErrKCV = errors.New("hsm: key check value mismatch")
	// ErrMACVerify reports a MAC that does not verify.
	ErrMACVerify = errors.New("hsm: MAC verification failed")
	// ErrUnsupported reports an operation this module or its configuration does not offer.
	ErrUnsupported = errors.New("hsm: operation not supported")
	// ErrComponents reports a wrong number of key components or components of different lengths.
	ErrComponents = errors.New("hsm: invalid key components")
)

// UsageError says which key was refused for which usage. It matches ErrKeyUsage with errors.Is.
type UsageError struct {
	Key   string  // key name, or "" when unnamed
	Type  KeyType // the key's type
	Usage Usage   // the refused usage
}

// Error describes the problem.
func (e *UsageError) Error() string {
	return fmt.Sprintf("hsm: key %q of type %v cannot be used for %v", e.Key, e.Type, e.Usage)
}

// Is makes errors.Is(err, ErrKeyUsage) true for a *UsageError.
func (e *UsageError) Is(target error) bool { return target == ErrKeyUsage }

// RemoteError is an error code returned by a networked HSM (payShield error codes, see docs/hsm.md).
// It matches the module error that the code stands for, when there is one (01 on M8 is ErrMACVerify).
type RemoteError struct {
	Command string // the request command, e.g. "CA"
	Code    string // the two-character error code, e.g. "10"
	Err     error  // the module error the code maps to, or nil
}

// Error describes the problem.
func (e *RemoteError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("hsm: %s returned error %s: %v", e.Command, e.Code, e.Err)
	}
	return fmt.Sprintf("hsm: %s returned error %s", e.Command, e.Code)
}

// Unwrap returns the module error the code maps to.
func (e *RemoteError) Unwrap() error { return e.Err }
