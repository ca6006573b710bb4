package codec

// MaskPAN is the project's one masking helper for card numbers: it keeps the first 6 and last 4 digits of a
// PAN of 13 digits or more and replaces the rest with '*'; shorter values are masked whole.
func MaskPAN(pan []byte) string {
	return string(AppendMaskedPAN(nil, pan))
}

// AppendMaskedPAN is MaskPAN appending to dst.
func AppendMaskedPAN(dst, pan []byte) []byte {
	for i, c := range pan {
		if len(pan) >= 13 && (i < 6 || i >= len(pan)-4) {
			dst = append(dst, c)
		} else {
			dst = append(dst, '*')
		}
	}
	return dst
}

// Hidden is what dumps show instead of track data, PIN blocks, chip data and keys.
const Hidden = "***"
