package router

import (
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// writeTable writes a routes file and its BIN file in which every range and the default rule go to acquirer
// acq, so that a route mixing two tables would be visible.
func writeTable(t *testing.T, dir, acq string) string {
	t.Helper()
	bins := "bin_low,bin_high,acquirer,priority,card_type\n"
	for _, p := range []string{"436742", "436700-436799", "621000-629999", "62148800"} {
		lo, hi, _ := stringsCut(p)
		bins += lo + "," + hi + "," + acq + ",,debit\n"
	}
	routes := "bins: bins.csv\nacquirers:\n  - {name: " + acq + ", endpoints: [{name: a, address: \"h:1\"}]}\n" +
		"rules:\n  - {name: by-bin-" + acq + ", bin_table: true}\n  - {name: default-" + acq + ", acquirer: " + acq + "}\n"
	for name, body := range map[string]string{"bins.csv": bins, "routes.yaml": routes} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "routes.yaml")
}

func stringsCut(p string) (lo, hi string, ok bool) {
	for i := range p {
		if p[i] == '-' {
			return p[:i], p[i+1:], true
		}
	}
	return p, p, false
}

// TestReloadIsAtomicUnderConcurrentLookups swaps two tables while lookups run (run it with -race): every
// route must come whole from one table, its rule, acquirer and BIN range all from the same one.
func TestReloadIsAtomicUnderConcurrentLookups(t *testing.T) {
	pathA := writeTable(t, t.TempDir(), "alpha")
	pathB := writeTable(t, t.TempDir(), "beta")
	first, err := Load(pathA)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRouter(first)
	var stop atomic.Bool
	var lookups atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan string, 2)
	for g := range 2 {
		wg.Go(func() {
			keys := []Key{{MTI: "0200", PAN: testPAN("436742")}, {MTI: "0200", PAN: testPAN("62148800")},
				{MTI: "0200", PAN: testPAN("999999")}, {MTI: "0200", PAN: testPAN("436750")}}
			for i := g; !stop.Load(); i++ {
				rt, err := r.Lookup(keys[i%len(keys)])
				if err != nil {
					errs <- err.Error()
					return
				}
				acq := rt.Acquirer.Name
				if rt.Rule.Name != "by-bin-"+acq && rt.Rule.Name != "default-"+acq || rt.BIN != nil && rt.BIN.Acquirer != acq {
					errs <- "mixed route: rule " + rt.Rule.Name + ", acquirer " + acq
					return
				}
				lookups.Add(1)
			}
		})
	}
	versions := []uint64{first.Version()}
	for i := range 40 {
		path := pathA
		if i%2 == 0 {
			path = pathB
		}
		tb, err := r.Reload(path)
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, tb.Version())
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if lookups.Load() == 0 {
		t.Fatal("no lookup ran during the reloads")
	}
	if !slices.IsSorted(versions) || slices.Compact(versions) == nil || len(slices.Compact(slices.Clone(versions))) != len(versions) {
		t.Fatalf("versions do not grow: %v", versions)
	}
}

func TestReloadOfABadFileKeepsTheCurrentTable(t *testing.T) {
	good := mustLoad(t, "testdata/routes.yaml")
	r := NewRouter(good)
	if _, err := r.Reload("testdata/bad-routes.yaml"); err == nil {
		t.Fatal("Reload of a bad file succeeded")
	}
	if r.Table() != good {
		t.Fatal("a failed reload replaced the table")
	}
	if old := r.Swap(mustLoad(t, "testdata/routes-new.yaml")); old != good {
		t.Fatal("Swap did not give back the table it replaced")
	}
}
