// Package convert turns a message of one spec into a message of another by a declarative map: copies with
// re-encoding, subfield moves, constants, generated values (STAN, RRN, transmission time, institution codes),
// PIN block translation, track decryption and response-code tables. A map is data (a block of the switch's
// configuration); Compile checks it against both specs and turns it into a list of steps.
package convert
