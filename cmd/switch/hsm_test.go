package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/railswitch/railswitch/hsm"
)

// syncBuffer lets a test read what a running command has written so far.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newLMKFile(t *testing.T, dir, name string) (string, *hsm.LMK) {
	t.Helper()
	lmk, hexKey, err := hsm.GenerateLMK(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := hsm.WriteLMKFile(path, hexKey); err != nil {
		t.Fatal(err)
	}
	return path, lmk
}

func TestHSMServeAnswersHSMInfoOverTCP(t *testing.T) {
	dir := t.TempDir()
	lmkFile, lmk := newLMKFile(t, dir, "lmk.key")
	store := filepath.Join(dir, "keys.json")
	if _, err := hsm.CreateKeyStore(store, lmk.CheckValue()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serve := newHSMCmd()
	var out syncBuffer
	serve.SetOut(&out)
	serve.SetErr(&out)
	serve.SetArgs([]string{"serve", "--listen", "127.0.0.1:0", "--lmk-file", lmkFile, "--keystore", store, "--header-len", "6"})
	done := make(chan error, 1)
	go func() { done <- serve.ExecuteContext(ctx) }()

	addrRE := regexp.MustCompile(`listening on (\S+)`)
	var addr string
	for deadline := time.Now().Add(5 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := addrRE.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("hsm serve did not report its address:\n%s", out.String())
	}
	info, err := runCmd(newHSMCmd(), "", "info", "--addr", addr, "--header-len", "6")
	if err != nil || !strings.Contains(info, lmk.CheckValue()) || !strings.Contains(info, hsm.SoftwareFirmware) {
		t.Fatalf("hsm info: %v\n%s", err, info)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("hsm serve after interrupt: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hsm serve did not stop")
	}
}

func TestHSMServeRefusesAKeyStoreOfAnotherLMK(t *testing.T) {
	dir := t.TempDir()
	lmkFile, _ := newLMKFile(t, dir, "lmk.key")
	_, other := newLMKFile(t, dir, "other.key")
	store := filepath.Join(dir, "keys.json")
	if _, err := hsm.CreateKeyStore(store, other.CheckValue()); err != nil {
		t.Fatal(err)
	}
	_, err := runCmd(newHSMCmd(), "", "serve", "--listen", "127.0.0.1:0", "--lmk-file", lmkFile, "--keystore", store)
	if !errors.Is(err, hsm.ErrWrongLMK) {
		t.Fatalf("error %v; want ErrWrongLMK", err)
	}
}
