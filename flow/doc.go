// Package flow is the transaction flow of the switch: for each frame a terminal sends it decodes the message,
// checks the terminal (known, signed on or holding static keys, MAC by its profile: UnionPay ECB or X9.19),
// answers management messages locally, recognises retransmissions (Duplicates: the stored reply, or 94 while
// the original is in flight; docs/duplicates.md), applies limits, routes to an acquirer with failover only
// for requests never written, converts to the acquirer's spec (new STAN and RRN, PIN translation, MAC),
// records an intent (the request's reversal) before the request leaves, matches the response, converts it
// back, journals the outcome and replies. The intent of an approval ends only once its reply is on the
// terminal's socket; an approval that cannot be delivered is reversed. A request the bank does not answer in
// time gets the timeout code and a reversal is queued. UnionPay advices (0220: completion advices, offline
// sales) are answered at once and queued for the acquirer (docs/reversals.md).
package flow
