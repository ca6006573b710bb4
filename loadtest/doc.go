// Package loadtest is the load generator and its report: open loop at a fixed arrival rate and closed loop at
// maximum throughput, against the switch or directly against a bank simulator.
package loadtest
