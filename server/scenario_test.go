package server

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/railswitch/railswitch/simulators/scenario"
)

// TestShippedScenariosPassThroughTheSwitch runs the simulator's scenario suite for UnionPay and railway POS
// terminals and the ticket kiosk against the demo switch and its two simulated banks, over TCP like real terminals.
func TestShippedScenariosPassThroughTheSwitch(t *testing.T) {
	d := startTestDemo(t)
	files, _ := filepath.Glob("../simulators/scenarios/0[1-7]-*.yaml")
	if len(files) != 7 {
		t.Fatalf("found %d scenario files", len(files))
	}
	for _, path := range files {
		f, err := scenario.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		target := d.Channels()[0].Addr()
		switch {
		case f.Kiosk != nil:
			target = d.Channels()[2].Addr()
		case f.Terminal != nil && f.Terminal.Spec == "rail-pos":
			target = d.Channels()[1].Addr()
		}
		var out bytes.Buffer
		res := scenario.Run(context.Background(), f, scenario.Options{Target: target, Out: &out})
		if res.Failed() > 0 {
			t.Errorf("%s: %d step(s) failed:\n%s", filepath.Base(path), res.Failed(), out.String())
		}
	}
}
