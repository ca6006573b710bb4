package router

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadBINs feeds arbitrary BIN files to the loader: it must not panic, and a table it accepts must send
// the first PAN of every range to a range that holds it.
func FuzzLoadBINs(f *testing.F) {
	for _, name := range []string{"bins.csv", "bins-new.csv", "bad-bins.csv", "bad-header.csv"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "b.csv")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		tb, err := LoadBINs(path)
		if err != nil {
			return
		}
		for _, r := range tb.BINRanges() {
			got, _ := tb.bins.find(r.lo)
			if got == nil || !got.contains(r.lo) {
				t.Fatalf("range %s: its first PAN finds %v", r.String(), got)
			}
		}
	})
}

// FuzzLoadRoutes feeds arbitrary routes files to the loader: it must not panic, and must either give a
// table or problems that each name the file.
func FuzzLoadRoutes(f *testing.F) {
	for _, name := range []string{"routes.yaml", "routes-new.yaml", "bad-routes.yaml", "broken.yaml"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	bins, err := os.ReadFile("testdata/bins.csv")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		for name, b := range map[string][]byte{"routes.yaml": data, "bins.csv": bins, "bins-new.csv": bins} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		_, err := Load(filepath.Join(dir, "routes.yaml"))
		if errs, ok := err.(Errors); ok {
			for _, is := range errs {
				if is.File == "" {
					t.Fatalf("a problem without its file: %v", is)
				}
			}
		}
	})
}
