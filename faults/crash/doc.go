// Package crash holds the switch's crash-safety tests: the real `switch` binary is built, run as a child
// process on a journal with fsync, killed with SIGKILL under load and restarted on the same directories,
// and then what the terminals saw, the journal, the ledger sink and the simulated banks' balances are
// reconciled (DESIGN money-safety invariants 1 to 3). The tests are behind the build tag `faults`:
//
//	go test -tags faults -count=1 -v ./faults/crash
//
// See docs/crash.md.
package crash
