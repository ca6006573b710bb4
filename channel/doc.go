// Package channel is the terminal-facing side of the switch: one listener per configured channel (gnet event
// loops for plain TCP, a crypto/tls acceptor for TLS channels), framing with the codec's framers, keep-alive
// frames, source-network and connection limits, idle timeouts from a sweep, and bounded per-session queues.
//
// Nothing here blocks an event loop: a complete frame is copied out of the loop's buffer and handed to the
// Handler on its own goroutine; the reply goes back through the session's asynchronous write (Reply), or
// with Deliver, which also waits for the write's outcome: whether the reply was handed to the terminal's
// socket (the transaction flow settles an approval only then).
package channel
