package pos

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Record is one approved transaction of the open batch, as the terminal keeps it for voids, refunds,
// completions, settlement totals and batch upload. The PAN is kept masked here; the full PAN is sealed.
type Record struct {
	Txn       Txn    `json:"txn"`
	Trace     string `json:"trace"`
	Batch     string `json:"batch"`
	Date      string `json:"date"` // MMDD of the host (field 13), or of the terminal
	Amount    int64  `json:"amount"`
	RRN       string `json:"rrn,omitempty"`
	Auth      string `json:"auth,omitempty"`
	PANMasked string `json:"pan"`
	Voided    bool   `json:"voided,omitempty"`    // a void or pre-auth void cancelled it
	Completed bool   `json:"completed,omitempty"` // a pre-authorization that a completion used
}

// PendingReversal describes the stored reversal; the message itself is sealed.
type PendingReversal struct {
	Txn    Txn    `json:"txn"`
	Trace  string `json:"trace"`
	Reason string `json:"reason"` // field 39 of the 0400: 98 no reply, A0 reply MAC failed
}

// State is what a terminal remembers between transactions. Card data and keys live only in the sealed
// part, encrypted under a key derived from the TMK; the rest is plain JSON.
type State struct {
	Batch       string           `json:"batch"`
	Trace       int              `json:"trace"` // last trace number used (1-999999)
	SignedOn    bool             `json:"signed_on"`
	ClockOffset int64            `json:"clock_offset_s"` // host clock minus terminal clock at sign-on, seconds
	KSNCounter  uint32           `json:"ksn_counter,omitempty"`
	Reversal    *PendingReversal `json:"reversal,omitempty"`
	Records     []Record         `json:"records"`
	Sealed      []byte           `json:"sealed,omitempty"` // AES-GCM nonce + ciphertext of the secrets

	secrets secrets
}

// secrets is the sealed part of the state.
type secrets struct {
	PIK, MAK, TDK []byte            // clear working keys (test keys)
	Reversal      []byte            // the original request packed from the MTI on, without MAC
	PANs          map[string]string // trace number -> PAN of the batch's records
}

// newState is the state of a terminal that has never signed on.
func newState() *State {
	return &State{Batch: "000001", secrets: secrets{PANs: map[string]string{}}}
}

// stateKey derives the sealing key from the TMK, so the file is useless without the terminal's config.
func stateKey(tmk []byte) cipher.AEAD {
	k := sha256.Sum256(append([]byte("railswitch pos state v1\x00"), tmk...))
	b, _ := aes.NewCipher(k[:]) // a 32-byte key never fails
	g, _ := cipher.NewGCM(b)
	return g
}

// seal encrypts the secrets into s.Sealed.
func (s *State) seal(tmk []byte) error {
	plain, err := json.Marshal(s.secrets)
	if err != nil {
		return err
	}
	defer clear(plain)
	g := stateKey(tmk)
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	s.Sealed = g.Seal(nonce, nonce, plain, nil)
	return nil
}

// open decrypts s.Sealed into the secrets.
func (s *State) open(tmk []byte) error {
	s.secrets = secrets{PANs: map[string]string{}}
	if len(s.Sealed) == 0 {
		return nil
	}
	g := stateKey(tmk)
	if len(s.Sealed) < g.NonceSize() {
		return errors.New("state file: sealed part cut short")
	}
	plain, err := g.Open(nil, s.Sealed[:g.NonceSize()], s.Sealed[g.NonceSize():], nil)
	if err != nil {
		return errors.New("state file: sealed part does not open under this TMK")
	}
	defer clear(plain)
	if err := json.Unmarshal(plain, &s.secrets); err != nil {
		return fmt.Errorf("state file: sealed part: %w", err)
	}
	if s.secrets.PANs == nil {
		s.secrets.PANs = map[string]string{}
	}
	return nil
}

// loadState reads a state file; a missing file is a fresh state.
func loadState(path string, tmk []byte) (*State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newState(), nil
	}
	if err != nil {
		return nil, err
	}
	s := newState()
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	if err := s.open(tmk); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// saveState writes the state file with mode 0600, through a temporary file so a crash leaves the old one.
func saveState(path string, s *State, tmk []byte) error {
	if err := s.seal(tmk); err != nil {
		return err
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pos-state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// nextTrace advances the trace number (1-999999, wrapping) and returns it as 6 digits.
func (s *State) nextTrace() string {
	s.Trace = s.Trace%999999 + 1
	return fmt.Sprintf("%06d", s.Trace)
}

// findRecord returns the newest record of one of the kinds with the trace (any trace when trace is "")
// that is still open for a follow-up.
func (s *State) findRecord(trace string, kinds ...Txn) (*Record, error) {
	for i := len(s.Records) - 1; i >= 0; i-- {
		r := &s.Records[i]
		if trace != "" && r.Trace != trace {
			continue
		}
		for _, k := range kinds {
			if r.Txn == k && !r.Voided {
				return r, nil
			}
		}
		if trace != "" {
			return nil, fmt.Errorf("trace %s is a %s, not open for this transaction", trace, r.Txn)
		}
	}
	if trace != "" {
		return nil, fmt.Errorf("no transaction with trace %s in the open batch", trace)
	}
	return nil, fmt.Errorf("no open %v in the batch to refer to", kinds)
}

// Totals are the batch totals of settlement field 48: debits (purchases and completions not voided) and
// credits (refunds).
type Totals struct {
	DebitAmount, CreditAmount int64
	DebitCount, CreditCount   int
}

// counted reports whether the record counts in the settlement totals and the batch upload.
func (r Record) counted() bool {
	return !r.Voided && (r.Txn == Purchase || r.Txn == Completion || r.Txn == CompletionAdvice || r.Txn == Refund)
}

// totals sums the open batch.
func (s *State) totals() Totals {
	var t Totals
	for _, r := range s.Records {
		switch {
		case !r.counted():
		case r.Txn == Refund:
			t.CreditAmount += r.Amount
			t.CreditCount++
		default:
			t.DebitAmount += r.Amount
			t.DebitCount++
		}
	}
	return t
}
