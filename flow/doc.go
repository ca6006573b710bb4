// Package flow is the transaction flow of the switch: for each frame a terminal sends it decodes the message,
// checks the terminal (known, signed on or holding static keys, MAC by its profile: UnionPay ECB or X9.19),
// answers management messages locally, applies limits, routes to an acquirer with failover only for requests
// never written, converts to the acquirer's spec (new STAN and RRN, PIN translation, MAC), records an intent
// (the request's reversal) before the request leaves, matches the response, converts it back, journals the
// outcome and replies. A request the bank does not answer in time gets the timeout code and a reversal is
// queued.
package flow
