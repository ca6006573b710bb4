package pos_test

import (
	"fmt"

	"github.com/railswitch/railswitch/simulators/pos"
)

func ExampleRailway_Field57() {
	rw := pos.Railway{Bureau: "03", Station: "BJP", Business: "1", Order: "E820000001", Window: "W0012"}
	f57, err := rw.Field57()
	fmt.Printf("%q %v\n", f57, err)
	// Output: "03BJP  1E820000001          W0012   " <nil>
}
