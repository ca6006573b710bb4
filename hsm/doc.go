// Package hsm is the security module behind one interface: key store under a local master key, PIN block
// formats and translation, MAC algorithms, key generation and check values, DUKPT, and a client for a
// payShield-compatible networked HSM.
package hsm
