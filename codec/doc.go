// Package codec is the ISO 8583 engine of the switch: field kinds (length prefix x encoding x padding), MTI,
// bitmaps, subfields, BER-TLV and framing. A specification is data (see Spec); Compile turns it into a flat
// table that Unpack and Pack walk in one loop. The package knows no sockets, banks or keys and imports nothing
// of the project's own.
package codec
