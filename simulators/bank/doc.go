// Package bank is the acquiring-bank host simulator: it answers network management (sign-on, sign-off, echo,
// key change), authorizes purchases, balance inquiries, voids, refunds and reversals against the balances of a
// rules file, and injects link faults (latency, lost, late, duplicate and garbage replies, disconnects, stalls,
// wrong MACs) that can be changed while it runs. It speaks any host spec over TCP, one goroutine per
// connection. docs/bank-link.md is its user guide.
package bank
