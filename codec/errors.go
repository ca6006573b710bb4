package codec

import (
	"errors"
	"fmt"
)

// Sentinel errors that callers branch on with errors.Is.
var (
	// ErrNeedMore means a framer has not yet seen a whole frame.
	ErrNeedMore = errors.New("need more bytes")
	// ErrShort means the input ended inside an element.
	ErrShort = errors.New("input ends early")
	// ErrTooLong means a length exceeds a field's maximum or a frame's limit.
	ErrTooLong = errors.New("too long")
	// ErrBadValue means a value does not fit its field's kind (a letter in a numeric field, odd hex, ...).
	ErrBadValue = errors.New("bad value")
	// ErrUnknownField means a bitmap or a caller names a field the spec does not define.
	ErrUnknownField = errors.New("field not in spec")
	// ErrTrailing means bytes are left over after the last field of the bitmap.
	ErrTrailing = errors.New("trailing bytes")
)

// FieldError is an error in one element of a message. Field is the data element number; 0 stands for the MTI,
// -1 for a bitmap and -2 for the framing. Offset is the byte offset in the unpacked input where the element
// starts (or -1 when packing).
type FieldError struct {
	Field  int
	Offset int
	Err    error  // one of the sentinel errors above
	Detail string // what exactly, without card data
}

// Error describes the problem.
func (e *FieldError) Error() string {
	var where string
	switch e.Field {
	case 0:
		where = "mti"
	case -1:
		where = "bitmap"
	case -2:
		where = "frame"
	default:
		where = fmt.Sprintf("field %d", e.Field)
	}
	if e.Offset >= 0 {
		return fmt.Sprintf("%s: %s at offset %d", where, e.Detail, e.Offset)
	}
	return fmt.Sprintf("%s: %s", where, e.Detail)
}

// Unwrap returns the sentinel error, for errors.Is.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, off int, err error, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Offset: off, Err: err, Detail: fmt.Sprintf(format, args...)}
}

// SpecError is an impossible field definition found by Compile. The spec loader adds the file and line.
type SpecError struct {
	Field int // 0 for spec-level settings
	Msg   string
}

// Error describes the problem.
func (e *SpecError) Error() string {
	if e.Field == 0 {
		return e.Msg
	}
	return fmt.Sprintf("field %d: %s", e.Field, e.Msg)
}
