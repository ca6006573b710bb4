// Package link keeps the switch's persistent connections to acquiring-bank hosts. A Link is one TCP (or TLS)
// connection to one bank endpoint: it dials with capped exponential backoff, signs on (0800), echoes on a
// timer, answers the bank's own network management, signs off at shutdown, and carries requests only while it
// is signed on. Send matches each response to its request through a pending table keyed by configurable
// fields, with deadlines swept per link. A Counter hands out STANs and RRNs per acquirer. A Pool holds the
// links of every acquirer's endpoints for the router to pick from.
//
// The package imports the codec and nothing of the router: events go out through a callback, and LinkID has
// the same shape as router.LinkID, so the switch converts one to the other. docs/links.md is the guide.
package link
