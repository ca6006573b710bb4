// Package pos simulates the devices that start transactions at the switch: UnionPay-standard POS terminals
// (specs cup-pos and rail-pos) and railway ticket kiosks (spec kiosk). A Terminal behaves like a real POS:
// it signs on and loads its working keys from field 62 under its TMK, MACs and PIN-encrypts its requests,
// stores a reversal before every reversible request and sends it before the next transaction, settles its
// batch and uploads it when the host says the totals do not balance, and checks every reply the way
// terminals do. Its persistent state (batch, trace, keys, stored reversal, batch records) can live in a
// small JSON file so that separate command runs chain. A Kiosk sends ticket purchases and refunds with the
// railway data in field 57. Both talk to the host only over TCP.
package pos
