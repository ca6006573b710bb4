package hsm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// packTrack packs track digits ('=' as D) left-aligned with a trailing 0 pad nibble, as field 35 carries them.
func packTrack(t *testing.T, digits string) []byte {
	s := strings.ReplaceAll(digits, "=", "D")
	if len(s)%2 == 1 {
		s += "0"
	}
	return hexVec(t, s)
}

func TestEncryptTrackTDKChangesTheBlockBeforeTheLastByte(t *testing.T) {
	tdk := tdes(t, tdesIK)
	// Synthetic tracks from the published test PAN; odd and even digit counts.
	for _, digits := range []string{panX98 + "=49121010000000000", panX98 + "=4912101000000000", panX98 + "=4912"} {
		orig := packTrack(t, digits)
		track := bytes.Clone(orig)
		if err := EncryptTrackTDK(tdk, track, false); err != nil {
			t.Fatal(err)
		}
		n := len(track)
		want := make([]byte, 8)
		tdk.Encrypt(want, orig[n-9:n-1])
		if !bytes.Equal(track[n-9:n-1], want) || !bytes.Equal(track[:n-9], orig[:n-9]) || track[n-1] != orig[n-1] {
			t.Errorf("%d digits: encrypted %s from %s", len(digits), hex.EncodeToString(track), hex.EncodeToString(orig))
		}
		if err := EncryptTrackTDK(tdk, track, true); err != nil || !bytes.Equal(track, orig) {
			t.Errorf("%d digits: decrypt did not restore the track (%v)", len(digits), err)
		}
	}
}

func TestEncryptTrackTDKRejectsShortTracksAndAESKeys(t *testing.T) {
	short := packTrack(t, "4012345678909=49") // 16 digits, 8 bytes
	if err := EncryptTrackTDK(tdes(t, tdesIK), short, false); !errors.Is(err, ErrTrackLength) {
		t.Errorf("8-byte track: err = %v", err)
	}
	if err := EncryptTrackTDK(aesBlock(t, aesIK), packTrack(t, panX98+"=49121010000"), false); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("AES key: err = %v", err)
	}
}
