package link_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/link"
	"github.com/railswitch/railswitch/simulators/bank"
	"github.com/railswitch/railswitch/specs"
)

func ExampleLocalCounter() {
	now := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	c, _ := link.NewLocalCounter(link.CounterConfig{Node: 4, Location: time.UTC, Now: func() time.Time { return now }})
	stan, rrn, _ := c.Next(context.Background(), "icbc")
	fmt.Println(stan, rrn)
	// Output: 000001 331040000001
}

func ExampleLink_Send() {
	spec, _ := specs.Get("iso87-ascii")
	srv, _ := bank.New(bank.Config{Spec: spec}) // the bank simulator approves everything
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	defer srv.Close()

	counter, _ := link.NewLocalCounter(link.CounterConfig{Node: 1})
	l, _ := link.New(link.Config{
		ID:      link.LinkID{Acquirer: "sim", Endpoint: "main", Conn: 0},
		Address: ln.Addr().String(),
		Spec:    spec,
		Counter: counter,
	})
	l.Start()
	defer l.Close(context.Background())
	for l.State() != link.StateReady { // a real caller takes ready links from the router instead
		time.Sleep(time.Millisecond)
	}

	req := codec.NewMessage(spec)
	req.SetMTI("0200")
	req.SetString(3, "000000")
	req.SetString(4, "000000001000")
	req.SetString(7, "1127093001")
	req.SetString(11, "000123")
	req.SetString(41, "TERM0001")
	resp, err := l.Send(context.Background(), req, time.Now().Add(5*time.Second))
	if err != nil {
		fmt.Println(err, "written:", link.Written(err))
		return
	}
	defer resp.Release()
	fmt.Println(resp.MTI(), resp.String(11), resp.String(39))
	// Output: 0210 000123 00
}
