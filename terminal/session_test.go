package terminal

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/railswitch/railswitch/hsm"
)

func TestSessionsFileHoldsEveryConcurrentPutAfterReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.json")
	s, err := NewMemorySessions(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Put(context.Background(), Session{TID: fmt.Sprintf("T%07d", i), SignedOn: true, Batch: "000001",
				PIK: hsm.Key{Name: "pik", Type: hsm.KeyTPK, Algorithm: hsm.AlgTDES, Length: 16},
				MAK: hsm.Key{Name: "mak", Type: hsm.KeyTAK, Algorithm: hsm.AlgTDES, Length: 8}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	again, err := NewMemorySessions(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if v, ok, _ := again.Get(context.Background(), fmt.Sprintf("T%07d", i)); !ok || !v.SignedOn {
			t.Fatalf("session %d lost after reopening", i)
		}
	}
}
