// Package server assembles the running switch from its configuration: the security module and key store,
// terminal registry and sessions, routing tables and balancer, limits, bank link pools, conversion maps,
// journal and shipper, reversal queue, one channel per configured listener with its transaction flow, and the
// admin HTTP server. `switch run` is a thin command over it.
package server
