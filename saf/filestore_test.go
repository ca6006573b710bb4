package saf

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// entryFor is a stored entry with a sealed message.
func entryFor(acq string, seq uint64) *Entry {
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	return &Entry{ID: fmt.Sprintf("n-%d", seq), Seq: seq, Acquirer: acq, TxnID: fmt.Sprint("t", seq), Kind: KindReversal,
		MTI: "0420", Queued: now, Since: now, Next: now, Sealed: []byte{1, 2, 3, byte(seq)}}
}

func ids(es []*Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func TestTornLastRecordIsDiscardedAtReopen(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(data []byte) []byte // applied to the log after three good puts
	}{
		{"header cut short", func(d []byte) []byte { return append(d, 0, 0, 1) }},
		{"payload cut short", func(d []byte) []byte { return append(d, 0, 0, 0, 90, 1, 2, 3, 4, '{', '"') }},
		{"last record truncated", func(d []byte) []byte { return d[:len(d)-5] }},
		{"last byte flipped (CRC)", func(d []byte) []byte { d[len(d)-2] ^= 0xFF; return d }},
		{"zeros from a preallocated tail", func(d []byte) []byte { return append(d, make([]byte, 64)...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			st, err := OpenFileStore(dir, FileStoreOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for seq := uint64(1); seq <= 3; seq++ {
				if err := st.Put(ctx, entryFor("bank", seq)); err != nil {
					t.Fatal(err)
				}
			}
			st.Close()
			path := filepath.Join(dir, "bank.saf")
			data, _ := os.ReadFile(path)
			if err := os.WriteFile(path, tc.tear(data), 0o600); err != nil {
				t.Fatal(err)
			}

			st, err = OpenFileStore(dir, FileStoreOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := st.Load(ctx)
			want := []string{"n-1", "n-2", "n-3"}
			if tc.name == "last record truncated" || tc.name == "last byte flipped (CRC)" {
				want = want[:2]
			}
			if fmt.Sprint(ids(got)) != fmt.Sprint(want) {
				t.Fatalf("after reopen %v, want %v", ids(got), want)
			}
			if kept, _ := filepath.Glob(path + ".discarded-*"); len(kept) != 1 {
				t.Errorf("kept aside %v, want one copy of the discarded end", kept)
			}
			if err := st.Put(ctx, entryFor("bank", 4)); err != nil { // appends after the cut, not after garbage
				t.Fatal(err)
			}
			st.Close()
			st, err = OpenFileStore(dir, FileStoreOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			got, _ = st.Load(ctx)
			if fmt.Sprint(ids(got)) != fmt.Sprint(append(want, "n-4")) {
				t.Errorf("after a put and a second reopen %v, want %v", ids(got), append(want, "n-4"))
			}
		})
	}
}

func TestFileStoreReplaysStatesAndRemovals(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := OpenFileStore(dir, FileStoreOptions{CompactAfter: 8})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 20; seq++ {
		e := entryFor("bank", seq)
		if err := st.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
		e.Attempts, e.LastError, e.Sealed = 2, "response code 96", nil // a state update carries no message
		if err := st.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
		if seq%4 != 0 {
			if err := st.Remove(ctx, "bank", e.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := st.Put(ctx, entryFor("other bank/é", 1)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	info, _ := os.Stat(filepath.Join(dir, "bank.saf"))
	st, err = OpenFileStore(dir, FileStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, _ := st.Load(ctx)
	if want := "[n-4 n-8 n-12 n-16 n-20 n-1]"; fmt.Sprint(ids(got)) != want {
		t.Fatalf("entries %v, want %s", ids(got), want)
	}
	if got[0].Attempts != 2 || got[0].LastError != "response code 96" || !bytes.Equal(got[0].Sealed, []byte{1, 2, 3, 4}) {
		t.Errorf("replayed entry %+v, want its last state with the message of its put", got[0])
	}
	if got[5].Acquirer != "other bank/é" {
		t.Errorf("acquirer %q, want the name with a space, slash and accent back", got[5].Acquirer)
	}
	if info.Size() > 8*400 {
		t.Errorf("log of 5 live entries is %d bytes after 60 records: not compacted", info.Size())
	}
	if _, err := os.Stat(filepath.Join(dir, fileName("other bank/é"))); err != nil || fileName("other bank/é") != "x-6f746865722062616e6b2fc3a9.saf" {
		t.Errorf("log of an acquirer with a non-plain name: %s, %v", fileName("other bank/é"), err)
	}
}

func TestConcurrentEnqueuesAreAllDurable(t *testing.T) {
	spec := testSpec(t, "iso87-ascii")
	dir := t.TempDir()
	clock := newClock()
	clock.gate = make(chan struct{})
	q := openQueue(t, dir, newSender(t, spec, func(string, int) (string, error) { return "", errNoAnswer }), clock, Policy{}, nil)
	const workers, each = 20, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				acq := []string{"bankA", "bankB"}[w%2]
				errs <- q.Enqueue(context.Background(), acq, "", fmt.Sprint(w, "-", i), packed(t, spec, "0420", "000001"))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := OpenFileStore(dir, FileStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, _ := st.Load(context.Background())
	txns := map[string]bool{}
	for _, e := range got {
		txns[e.TxnID] = true
	}
	if len(got) != workers*each || len(txns) != workers*each {
		t.Errorf("%d entries (%d distinct) on disk after %d concurrent enqueues", len(got), len(txns), workers*each)
	}
}
