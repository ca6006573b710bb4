// Package faults holds the switch's fault-injection tests: a real switch in-process with its simulated banks
// behind fault proxies (internal/faultproxy) and real terminals over TCP, a fault injected, and the money
// invariants of DESIGN.md asserted afterwards. They are behind the build tag faults:
//
//	go test -count=1 -tags faults -timeout 20m ./faults/...
//
// docs/faults.md lists what each test breaks, what it asserts and the figures of a run.
package faults
