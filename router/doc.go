// Package router holds the routing tables (rules on channel, message class, processing code, BIN ranges and
// card type), load-balancing strategies, endpoint health, atomic hot reload and explain.
//
// A Table is loaded from a routes file (YAML) and the BIN files (CSV) it names, validated as a whole (every
// problem with its file and line), and never changed after. Table.Lookup is the hot path: rules are tried in
// file order and the first match wins; the BIN table answers with its most specific range. A Router serves
// one table and swaps in a reloaded one atomically. A Balancer picks an acquirer's endpoint and link for each
// request and fails over only while the request was not written to a socket (see Attempt).
//
// Where things are: table.go (Lookup, the hot path), bin.go (BIN ranges and the flattened index), rule.go
// (rules and matching), load.go (file formats), validate.go (checks and compilation), reload.go (Router),
// explain.go, diff.go, balancer.go and breaker.go. The user documentation is docs/routing.md. The package
// imports nothing else of the switch's: keys are plain strings.
package router
