// Package payshield speaks the Thales payShield host command protocol over TCP: a client that implements
// hsm.Module against a networked HSM (a pool of connections, several outstanding commands per connection
// matched by their message header, timeouts and reconnection), and a server that serves the software module
// over the same protocol, as an HSM simulator for tests and testers. See docs/hsm.md for the commands and the
// simulator's extensions.
package payshield
