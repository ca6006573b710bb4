// Package simulators holds the POS terminal, kiosk and acquiring-bank simulators. They use codec, specs and
// hsm and talk to the switch only over TCP, like real devices.
package simulators
