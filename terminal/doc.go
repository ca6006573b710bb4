// Package terminal manages the switch's terminals: the registry of known terminals, their sessions (working
// keys under the LMK, signed-on state, batch number) and batch totals behind interfaces with embedded
// implementations, and the messages the switch answers itself for UnionPay-style terminals: sign-on (0800 with
// fresh PIK/MAK/TDK in field 62), echo and sign-off (0820), settlement (0500) and batch upload (0320).
package terminal
