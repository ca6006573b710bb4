package hsm

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// keyStoreFormat names the key store file format; it changes when the layout does.
const keyStoreFormat = "railswitch-keystore-1"

// KeyStore is the file of named keys: every version of every key, each as its cryptogram under the LMK (never
// clear), with the LMK's check value so that the store is never used with another LMK. Each save writes a
// temporary file, syncs it and renames it over the old one, so a crash leaves the old or the new store, never a
// mix. The store version counts saves. It is safe for concurrent use.
type KeyStore struct {
	path string

	mu       sync.RWMutex
	version  int
	lmkCheck string
	keys     map[string][]Key // versions in ascending order
}

type keyStoreFile struct {
	Format   string `json:"format"`
	Version  int    `json:"store_version"`
	LMKCheck string `json:"lmk_check"`
	Keys     []Key  `json:"keys"`
}

// CreateKeyStore writes a new, empty key store for the LMK with the given check value. It refuses to
// overwrite an existing file.
func CreateKeyStore(path, lmkCheck string) (*KeyStore, error) {
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("hsm: key store %s already exists", path)
	}
	s := &KeyStore{path: path, lmkCheck: lmkCheck, keys: map[string][]Key{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.saveLocked(s.keys, lmkCheck); err != nil {
		return nil, err
	}
	return s, nil
}

// OpenKeyStore reads a key store file.
func OpenKeyStore(path string) (*KeyStore, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("hsm: key store: %w", err)
	}
	var f keyStoreFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("hsm: key store %s: %w", path, err)
	}
	if f.Format != keyStoreFormat {
		return nil, fmt.Errorf("hsm: key store %s: format %q, want %q", path, f.Format, keyStoreFormat)
	}
	s := &KeyStore{path: path, version: f.Version, lmkCheck: f.LMKCheck, keys: map[string][]Key{}}
	for _, k := range f.Keys {
		if err := validStoredKey(k); err != nil {
			return nil, fmt.Errorf("hsm: key store %s: %w", path, err)
		}
		vs := s.keys[k.Name]
		if len(vs) > 0 && vs[len(vs)-1].Version >= k.Version {
			return nil, fmt.Errorf("hsm: key store %s: versions of %q out of order", path, k.Name)
		}
		s.keys[k.Name] = append(vs, k)
	}
	return s, nil
}

func validStoredKey(k Key) error {
	if err := validKeyName(k.Name); err != nil {
		return err
	}
	if k.Version < 1 {
		return fmt.Errorf("key %q: version %d", k.Name, k.Version)
	}
	if err := k.Spec().Validate(); err != nil {
		return fmt.Errorf("key %q: %w", k.Name, err)
	}
	if k.Cryptogram == "" {
		return fmt.Errorf("key %q: no cryptogram", k.Name)
	}
	return nil
}

// validKeyName accepts names made of letters, digits and . _ - separated by single slashes.
func validKeyName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("key name %q: want 1 to 128 characters", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" {
			return fmt.Errorf("key name %q: empty path element", name)
		}
		for _, c := range part {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return fmt.Errorf("key name %q: character %q not allowed", name, c)
			}
		}
	}
	return nil
}

// Path returns the store's file name.
func (s *KeyStore) Path() string { return s.path }

// Version returns the store version: the number of saves since it was created.
func (s *KeyStore) Version() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.version
}

// LMKCheck returns the check value of the LMK the store's cryptograms are under.
func (s *KeyStore) LMKCheck() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lmkCheck
}

// CheckLMK returns ErrWrongLMK unless lmkCheck is the check value the store records.
func (s *KeyStore) CheckLMK(lmkCheck string) error {
	if want := s.LMKCheck(); !strings.EqualFold(lmkCheck, want) {
		return fmt.Errorf("%w: LMK check value %s, the store %s was made under %s", ErrWrongLMK, lmkCheck, s.path, want)
	}
	return nil
}

// Get returns the latest version of the named key.
func (s *KeyStore) Get(name string) (Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	vs := s.keys[name]
	if len(vs) == 0 {
		return Key{}, fmt.Errorf("%w: %q", ErrKeyNotFound, name)
	}
	return vs[len(vs)-1], nil
}

// GetVersion returns one version of the named key (an older data key still decrypts the records made with it).
func (s *KeyStore) GetVersion(name string, version int) (Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, k := range s.keys[name] {
		if k.Version == version {
			return k, nil
		}
	}
	return Key{}, fmt.Errorf("%w: %q version %d", ErrKeyNotFound, name, version)
}

// List returns every version of every key, sorted by name and version.
func (s *KeyStore) List() []Key {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sortedLocked(s.keys)
}

func (s *KeyStore) sortedLocked(keys map[string][]Key) []Key {
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []Key
	for _, n := range names {
		out = append(out, keys[n]...)
	}
	return out
}

// Put stores k under k.Name as a new version (one more than the latest, 1 for a new name), saves the store and
// returns the key with its version set.
func (s *KeyStore) Put(k Key) (Key, error) {
	if err := validKeyName(k.Name); err != nil {
		return Key{}, fmt.Errorf("hsm: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := s.keys[k.Name]
	k.Version = 1
	if len(vs) > 0 {
		k.Version = vs[len(vs)-1].Version + 1
	}
	if err := validStoredKey(k); err != nil {
		return Key{}, fmt.Errorf("hsm: %w", err)
	}
	next := make(map[string][]Key, len(s.keys)+1)
	for n, v := range s.keys {
		next[n] = v
	}
	next[k.Name] = append(slices.Clip(vs), k)
	if err := s.saveLocked(next, s.lmkCheck); err != nil {
		return Key{}, err
	}
	s.keys = next
	return k, nil
}

// RotateLMK re-encrypts every key of the store from the old LMK to the new one and saves the store under the
// new LMK's check value. Each key keeps its name, version and check value; the check value is recomputed from
// the clear key on the way, so a key that does not survive intact stops the rotation before anything is saved.
func (s *KeyStore) RotateLMK(oldLMK, newLMK *LMK, rnd io.Reader) error {
	if err := s.CheckLMK(oldLMK.CheckValue()); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[string][]Key, len(s.keys))
	for name, vs := range s.keys {
		out := make([]Key, len(vs))
		for i, k := range vs {
			spec, clearKey, err := oldLMK.Unwrap(k.Cryptogram)
			if err != nil {
				return fmt.Errorf("hsm: rotate LMK: key %q version %d: %w", k.Name, k.Version, err)
			}
			kcv, err := checkValue(spec, clearKey)
			if err == nil && !strings.EqualFold(kcv, k.KCV) {
				err = ErrKCV
			}
			if err == nil {
				k.Cryptogram, err = newLMK.Wrap(spec, clearKey, rnd)
			}
			clear(clearKey)
			if err != nil {
				return fmt.Errorf("hsm: rotate LMK: key %q version %d: %w", k.Name, k.Version, err)
			}
			out[i] = k
		}
		next[name] = out
	}
	if err := s.saveLocked(next, newLMK.CheckValue()); err != nil {
		return err
	}
	s.keys, s.lmkCheck = next, newLMK.CheckValue()
	return nil
}

// saveLocked writes keys as the next store version: temp file, fsync, rename, fsync of the directory.
func (s *KeyStore) saveLocked(keys map[string][]Key, lmkCheck string) error {
	f := keyStoreFile{Format: keyStoreFormat, Version: s.version + 1, LMKCheck: lmkCheck, Keys: s.sortedLocked(keys)}
	if f.Keys == nil {
		f.Keys = []Key{}
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("hsm: key store: %w", err)
	}
	if err := writeFileAtomic(s.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("hsm: save key store: %w", err)
	}
	s.version = f.Version
	return nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	err = tmp.Chmod(perm)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		os.Remove(name)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	d.Close()
	return err
}
