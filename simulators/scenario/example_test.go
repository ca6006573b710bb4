package scenario_test

import (
	"fmt"

	"github.com/railswitch/railswitch/simulators/scenario"
)

func ExampleParse() {
	f, err := scenario.Parse("echo.yaml", []byte(`
name: echo
terminal: {tid: "10000001", mid: "898110000000001", tmk: 70F2A84CCBC2AE8625CBB0F2C22AB923}
steps:
  - {name: sign on, txn: sign-on}
  - {name: echo, txn: echo, expect: {rc: "00"}}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range f.Steps {
		fmt.Printf("line %d: %s (%s)\n", s.Line, s.Name, s.Txn)
	}
	// Output:
	// line 5: sign on (sign-on)
	// line 6: echo (echo)
}
