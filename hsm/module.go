package hsm

import "context"

// Module is the security module the switch calls: the software module (Software) or a networked
// payShield-compatible HSM (payshield.Client). Keys go in and out as Key values, whose Cryptogram is the key
// under the module's local master key; clear keys and clear PINs never leave the module. The switch keeps Key
// values (key store, terminal sessions) and passes them back with each call. Calls may block on the network:
// the switch makes them off its event loops, with a context that carries the deadline.
type Module interface {
	// TranslatePIN re-encrypts a PIN block from the source key (a TPK or ZPK, or a BDK with a KSN for DUKPT)
	// to the destination ZPK, converting its format, for the same PAN.
	TranslatePIN(ctx context.Context, req PINTranslation) (PINResult, error)
	// GenerateMAC returns the MAC of data under a TAK or ZAK (see MACer.Sum for each algorithm's output).
	GenerateMAC(ctx context.Context, key Key, alg MACAlgorithm, data []byte) ([]byte, error)
	// VerifyMAC returns nil when mac (4 bytes up to the algorithm's full size, leftmost bytes) is the MAC of
	// data, else ErrMACVerify.
	VerifyMAC(ctx context.Context, key Key, alg MACAlgorithm, data, mac []byte) error
	// Encrypt encrypts data under a TDK or DEK.
	Encrypt(ctx context.Context, req DataRequest) ([]byte, error)
	// Decrypt decrypts data under a TDK or DEK.
	Decrypt(ctx context.Context, req DataRequest) ([]byte, error)
	// GenerateKey makes a new random key, returned under the LMK and, when asked, under a ZMK or TMK.
	GenerateKey(ctx context.Context, req GenerateKeyRequest) (GeneratedKey, error)
	// ImportKey takes a key encrypted under a ZMK or TMK and returns it under the LMK, after checking its
	// check value.
	ImportKey(ctx context.Context, req ImportKeyRequest) (Key, error)
	// ImportComponents forms a key from 2 or 3 clear components (a key ceremony) and returns it under the LMK.
	ImportComponents(ctx context.Context, req ComponentsRequest) (Key, error)
	// KeyCheckValue returns the key's check value, 6 hex digits.
	KeyCheckValue(ctx context.Context, key Key) (string, error)
	// CUPSignOnKeys makes a terminal's UnionPay working keys for a sign-on reply: PIK, MAK and (for 60.3 =
	// 004) TDK, under the LMK for the switch and under the terminal's TMK in the field-62 layout.
	CUPSignOnKeys(ctx context.Context, req CUPSignOnRequest) (CUPSignOn, error)
	// Info identifies the module: its LMK check value and firmware.
	Info(ctx context.Context) (Info, error)
}

// PINTranslation asks for one PIN block translation.
type PINTranslation struct {
	Source       Key            // TPK or ZPK; or a BDK when KSN is set
	KSN          []byte         // DUKPT key serial number: 10 bytes (TDES BDK) or 12 bytes (AES BDK); nil otherwise
	Dest         Key            // ZPK
	SourceFormat PINBlockFormat // format of Block
	DestFormat   PINBlockFormat // format wanted
	PAN          string         // the card's PAN; the same for both blocks
	Block        []byte         // the encrypted PIN block: 8 bytes, or 16 for ISO4
}

// PINResult is a translated PIN block.
type PINResult struct {
	Block     []byte         // under the destination key
	Format    PINBlockFormat // the destination format
	PINLength int            // number of PIN digits, as payShield reports it
}

// DataMode is how Encrypt and Decrypt use the key.
type DataMode uint8

// Data modes.
const (
	DataECB   DataMode = iota + 1 // block by block; data a multiple of the block size
	DataCBC                       // CBC from IV; data a multiple of the block size
	DataTrack                     // UnionPay track data under a TDK: one 8-byte block of the track (see EncryptTrackTDK)
)

// String names the mode.
func (m DataMode) String() string {
	switch m {
	case DataECB:
		return "ECB"
	case DataCBC:
		return "CBC"
	case DataTrack:
		return "track"
	}
	return "DataMode(?)"
}

// DataRequest asks to encrypt or decrypt data. The caller pads data to the block size (ECB, CBC).
type DataRequest struct {
	Key  Key
	Mode DataMode
	IV   []byte // CBC only: one block
	Data []byte
}

// GenerateKeyRequest asks for a new key.
type GenerateKeyRequest struct {
	Name  string // name of the new key (its version is set when it is stored)
	Spec  Spec
	Under *Key // when set, a ZMK or TMK: the key is also returned encrypted under it (ECB, X9.17)
}

// GeneratedKey is a new key: under the LMK and, when asked, under a ZMK or TMK.
type GeneratedKey struct {
	Key   Key
	Under []byte // the clear key encrypted under the requested ZMK or TMK; nil when not asked
}

// ImportKeyRequest asks to take in a key encrypted under a ZMK or TMK.
type ImportKeyRequest struct {
	Name      string
	Spec      Spec
	Under     Key    // the ZMK or TMK the key is encrypted under
	Encrypted []byte // the key under Under (ECB, X9.17)
	KCV       string // expected check value, 6 hex digits (required)
}

// Component is one clear key component of a key ceremony.
type Component struct {
	Value []byte // clear component, as long as the key
	KCV   string // the component's own check value (hex, optional): a custodian's typing error shows here
}

// ComponentsRequest asks to form a key from 2 or 3 clear components: the key is their XOR (odd parity set
// for TDES).
type ComponentsRequest struct {
	Name       string
	Spec       Spec
	Components []Component
	KCV        string // expected check value of the formed key, 6 hex digits (required)
}

// CUPSignOnRequest asks for a terminal's UnionPay working keys.
type CUPSignOnRequest struct {
	TMK     Key    // the terminal's TMK
	NetCode string // field 60.3 of the sign-on: "001" (single-length keys), "003" (double-length PIK), "004" (+ TDK)
	Prefix  string // the keys are named Prefix+"/pik", "/mak" and "/tdk", e.g. "term/22003600"
}

// CUPSignOn is the result of CUPSignOnKeys.
type CUPSignOn struct {
	PIK, MAK Key    // under the LMK, for the switch to keep
	TDK      *Key   // under the LMK; nil unless NetCode is "004"
	Field62  []byte // the keys under the TMK with their check values, for field 62 of the 0810
}

// Info identifies a module.
type Info struct {
	LMKCheck string // the LMK's check value (16 hex digits)
	Firmware string // firmware or software version
}
