package flow

import (
	"testing"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/specs"
)

func TestMessageHasTheSpecAskedForAndIsEmptyAfterReleasesOfOtherSpecs(t *testing.T) {
	cup, _ := specs.Get("cup-pos")
	iso, _ := specs.Get("iso87-binary")
	var f Flow
	for _, spec := range []*codec.Spec{cup, iso, cup, iso} {
		used := f.message(spec)
		if err := used.SetMTI("0200"); err != nil {
			t.Fatal(err)
		}
		f.release(used)
		for _, want := range []*codec.Spec{cup, iso} {
			m := f.message(want)
			if m.Spec() != want {
				t.Fatalf("asked for a %s message, got a %s one", want.Name(), m.Spec().Name())
			}
			if m.MTI() != "" {
				t.Fatalf("reused %s message still holds MTI %q", want.Name(), m.MTI())
			}
			f.release(m)
		}
	}
}
