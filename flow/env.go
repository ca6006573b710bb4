package flow

import (
	"context"
	"errors"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/convert"
	"github.com/railswitch/railswitch/hsm"
	"github.com/railswitch/railswitch/terminal"
)

// env gives conversion maps their generated values and security operations for one request.
type env struct {
	f         *Flow
	sess      *terminal.Session
	acq       *Acquirer
	now       time.Time
	txnID     string
	stan, rrn string
	original  *Txn // the original of a void, refund or completion; nil otherwise
	req       *codec.Message

	// The card number and the clear track 2 of req, found once: routing, PIN translation and the track
	// conversion all need them, and an encrypted track costs a security-module call.
	pan        string
	panKnown   bool
	clearTrack []byte
}

// forAcquirer is the env of one attempt at an acquirer, keeping what is known of the card.
func (e *env) forAcquirer(acq *Acquirer, now time.Time, original *Txn) *env {
	a := *e
	a.acq, a.now, a.original = acq, now, original
	return &a
}

// cardNumber is the PAN of the request: field 2, or the account number of track 2, decrypted first when the
// terminal encrypted it under its TDK.
func (e *env) cardNumber(ctx context.Context) (string, error) {
	if e.panKnown {
		return e.pan, nil
	}
	if e.req.Has(2) || !e.req.Has(35) || e.sess == nil {
		e.pan, e.panKnown = panOf(e.req), true
		return e.pan, nil
	}
	track, _ := e.req.Value(35)
	clear, err := e.DecryptTrack(ctx, track)
	if err != nil {
		return "", err
	}
	for i, c := range clear {
		if c == '=' {
			e.pan, e.panKnown = string(clear[:i]), true
			return e.pan, nil
		}
	}
	return "", errors.New("track 2 has no separator")
}

func (e *env) Generate(ctx context.Context, what string) (string, error) {
	if v, ok := convert.TimeGenerator(e.now, what); ok {
		return v, nil
	}
	switch what {
	case "stan", "rrn":
		if e.stan == "" {
			var err error
			if e.stan, e.rrn, err = e.f.cfg.Counter.Next(ctx, e.acq.Name); err != nil {
				return "", err
			}
		}
		if what == "stan" {
			return e.stan, nil
		}
		return e.rrn, nil
	case "acquirer_id":
		return e.acq.InstitutionID, nil
	case "forwarder_id":
		return e.acq.ForwarderID, nil
	case "transaction_id":
		return e.txnID, nil
	case "original_data":
		if e.original == nil {
			return "", nil
		}
		return e.original.OriginalData, nil
	}
	return "", errors.New("unknown generator " + what)
}

func (e *env) TranslatePIN(ctx context.Context, block []byte, src *codec.Message) ([]byte, error) {
	if src != e.req {
		return nil, errors.New("PIN translation for a message other than the request")
	}
	pan, err := e.cardNumber(ctx)
	if err != nil {
		return nil, err
	}
	zpk := e.acq.ZPK()
	if zpk == nil {
		return nil, errors.New("acquirer " + e.acq.Name + " has no ZPK")
	}
	r, err := e.f.cfg.HSM.TranslatePIN(ctx, hsm.PINTranslation{Source: e.sess.PIK, Dest: *zpk,
		SourceFormat: hsm.ISO0, DestFormat: e.acq.PINFormat, PAN: pan, Block: block})
	if err != nil {
		return nil, err
	}
	return r.Block, nil
}

// DecryptTrack decrypts track data that the terminal encrypted under its TDK (53.3 = 1); other tracks are
// in clear already.
func (e *env) DecryptTrack(ctx context.Context, track []byte) ([]byte, error) {
	sec, _ := e.req.Value(53)
	if e.sess.TDK == nil || len(sec) < 3 || sec[2] != '1' {
		return track, nil
	}
	if raw, _ := e.req.Value(35); e.clearTrack != nil && string(raw) == string(track) {
		return e.clearTrack, nil
	}
	clear, err := e.f.cfg.HSM.Decrypt(ctx, hsm.DataRequest{Key: *e.sess.TDK, Mode: hsm.DataTrack,
		Data: codec.PackTrack(nil, track)})
	if err != nil {
		return nil, err
	}
	out := codec.UnpackTrack(nil, clear, len(track))
	if raw, _ := e.req.Value(35); string(raw) == string(track) {
		e.clearTrack = out
	}
	return out, nil
}
