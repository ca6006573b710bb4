package limits_test

import (
	"context"
	"fmt"

	"github.com/railswitch/railswitch/limits"
)

// A terminal limited to a burst of 2 is refused on its third request, with response code 65; the permit of an
// admitted request gives its concurrency slot back when the transaction is done.
func ExampleLimiter_Acquire() {
	cfg, err := limits.Parse("limits.yaml", []byte(`
terminal:
  default: {rate: 1, burst: 2}
channel:
  default: {concurrency: 100}
`))
	if err != nil {
		panic(err)
	}
	l, err := limits.New(cfg, limits.Options{})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	req := limits.Request{Terminal: "10000001", Channel: "pos"}
	for range 3 {
		d := l.Acquire(context.Background(), req)
		if !d.Allowed {
			fmt.Println(d, "from", d.Source)
			continue
		}
		fmt.Println(d)
		d.Permit.Release() // when the transaction is finished
	}
	// Output:
	// allowed
	// allowed
	// refused by terminal 10000001 rate (exceeded), code 65 from limits.yaml:3
}

// Parse reports every problem with its file and line.
func ExampleParse() {
	_, err := limits.Parse("limits.yaml", []byte("terminal:\n  default: {rate: 5, brust: 10}\n"))
	fmt.Println(err)
	// Output:
	// limits.yaml:2: terminal.default.brust: unknown key (want rate, burst, concurrency, cluster, code, on_redis_down, local_share or down_code)
}
