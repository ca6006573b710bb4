package router_test

import (
	"fmt"

	"github.com/railswitch/railswitch/router"
)

func ExampleTable_Lookup() {
	t, err := router.Load("testdata/routes.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	rt, err := t.Lookup(router.Key{Channel: "pos", MTI: "0200", Proc: "000000", PAN: "4111111111111111"})
	fmt.Println(rt.Kind, rt.ResponseCode, rt.Rule.Name, rt.Rule.Source, err)
	// Output: decline 14 test-cards testdata/routes.yaml:39 <nil>
}

func ExampleLoad_errors() {
	_, err := router.Load("testdata/bad-routes.yaml")
	if errs, ok := err.(router.Errors); ok {
		fmt.Println(len(errs), "problems, the first:", errs[0])
	}
	// Output: 17 problems, the first: testdata/bad-routes-bins.csv:2: unknown acquirer "nobank"
}

func ExampleAttempt() {
	t, _ := router.Load("testdata/routes.yaml")
	bal := router.NewBalancer(t.Acquirers(), nil, nil)
	_ = bal.Observe(router.LinkID{Acquirer: "icbc", Endpoint: "icbc-a", Conn: 0}, router.Up) // ccb has no link up

	rt, _ := t.Lookup(router.Key{Channel: "pos", MTI: "0200", Proc: "000000", PAN: "436742" + "0000000000"}) // a BIN and zeros, not a card
	at := bal.Begin(rt.Acquirer, rt.Fallbacks)
	c, err := at.Next()
	if err != nil {
		fmt.Println("decline:", err)
		return
	}
	// Write the request to c.Link. If not a byte left: at.NotSent(), then at.Next() again.
	at.Sent()
	// ... the response arrives in time:
	at.Done(router.Success)
	fmt.Println(rt.Acquirer.Name, "->", c.Link.Acquirer, c.Link.Endpoint, c.Address)
	// Output: ccb -> icbc icbc-a 10.0.1.1:7001
}
