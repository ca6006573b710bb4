package convert

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/railswitch/railswitch/codec"
)

// Rule is how one destination field is filled. Exactly one source is set.
type Rule struct {
	From     string // "N" copies field N, "N.S" subfield S of field N; "" with no other source copies the same field
	Const    string // a constant value (logical form, as decode --json shows it)
	Generate string // stan, rrn, transmission_time (MMDDhhmmss), local_time (hhmmss), local_date (MMDD), acquirer_id, forwarder_id, transaction_id, original_data (field 90 of the original; absent for a request without one)
	PIN      bool   // translate the PIN block of From (default: the same field) from the terminal's key to the acquirer's
	Track    bool   // decrypt the track data of From under the terminal's TDK before copying
	Optional bool   // skip silently when the source is absent (copies are optional by default; constants are not)
	Line     int    // line in the configuration, for errors
}

// Map is the conversion from one spec to another in one direction.
type Map struct {
	Name   string
	From   string            // source spec name
	To     string            // destination spec name
	MTI    map[string]string // source MTI -> destination MTI; a missing MTI is kept as it is
	Fields map[int]Rule      // destination field -> rule
	Codes  map[string]string // response-code table, applied to field 39 after the field rules; "*" is the default
	Line   int
}

// Env gives a conversion the values and operations it cannot compute itself. Generated values and security
// operations come from the switch, so conversions stay deterministic in tests.
type Env interface {
	// Generate returns a generated value: stan, rrn, transmission_time, local_time, local_date, acquirer_id,
	// forwarder_id, transaction_id or original_data. An empty value leaves the field out.
	Generate(ctx context.Context, what string) (string, error)
	// TranslatePIN re-encrypts a PIN block from the source side's key to the destination's, for the card of
	// src (field 2, or track 2, which the Env may have to decrypt first).
	TranslatePIN(ctx context.Context, block []byte, src *codec.Message) ([]byte, error)
	// DecryptTrack returns track data in clear (logical form, '=' separators).
	DecryptTrack(ctx context.Context, track []byte) ([]byte, error)
}

// step fills one destination field.
type step struct {
	field int
	do    func(ctx context.Context, env Env, src, dst *codec.Message) error
}

// Converter is a compiled Map.
type Converter struct {
	m     Map
	to    *codec.Spec
	mti   map[string]string
	steps []step
	codes map[string]string
}

// Name is the map's name.
func (c *Converter) Name() string { return c.m.Name }

// Generators names the values Generate may be asked for.
var Generators = []string{"stan", "rrn", "transmission_time", "local_time", "local_date", "acquirer_id", "forwarder_id", "transaction_id", "original_data"}

// Compile checks m against the specs and prepares it. Errors name the map and the field's line.
func Compile(m Map, from, to *codec.Spec) (*Converter, error) {
	c := &Converter{m: m, to: to, mti: m.MTI, codes: m.Codes}
	var errs []error
	bad := func(line, field int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("line %d: map %s field %d: %s", line, m.Name, field, fmt.Sprintf(format, args...)))
	}
	for mtiFrom, mtiTo := range m.MTI {
		if len(mtiFrom) != 4 || len(mtiTo) != 4 {
			errs = append(errs, fmt.Errorf("line %d: map %s: MTI %s -> %s: want 4 digits each", m.Line, m.Name, mtiFrom, mtiTo))
		}
	}
	fields := make([]int, 0, len(m.Fields))
	for n := range m.Fields {
		fields = append(fields, n)
	}
	sort.Ints(fields)
	for _, n := range fields {
		r := m.Fields[n]
		if _, ok := to.Field(n); !ok {
			bad(r.Line, n, "spec %s has no field %d", to.Name(), n)
			continue
		}
		sources := 0
		for _, set := range []bool{r.From != "", r.Const != "", r.Generate != ""} {
			if set {
				sources++
			}
		}
		if sources > 1 || (sources == 1 && r.From == "" && (r.PIN || r.Track)) {
			bad(r.Line, n, "give one of from, const, generate (pin and track go with from)")
			continue
		}
		switch {
		case r.Const != "":
			probe := codec.NewMessage(to)
			if err := probe.SetDisplayValue(n, r.Const); err != nil {
				bad(r.Line, n, "constant does not fit: %v", err)
				continue
			}
			val := r.Const
			c.steps = append(c.steps, step{n, func(_ context.Context, _ Env, _, dst *codec.Message) error {
				return dst.SetDisplayValue(n, val)
			}})
		case r.Generate != "":
			what := r.Generate
			known := false
			for _, g := range Generators {
				known = known || g == what
			}
			if !known {
				bad(r.Line, n, "unknown generator %q (want %s)", what, strings.Join(Generators, ", "))
				continue
			}
			c.steps = append(c.steps, step{n, func(ctx context.Context, env Env, _, dst *codec.Message) error {
				v, err := env.Generate(ctx, what)
				if err != nil || v == "" {
					return err
				}
				return dst.SetString(n, v)
			}})
		default:
			srcField, sub, err := parseFrom(r.From, n)
			if err != nil {
				bad(r.Line, n, "%v", err)
				continue
			}
			if _, ok := from.Field(srcField); !ok {
				bad(r.Line, n, "spec %s has no field %d", from.Name(), srcField)
				continue
			}
			c.steps = append(c.steps, step{n, copyStep(n, srcField, sub, r)})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func parseFrom(s string, same int) (field, sub int, err error) {
	if s == "" {
		return same, 0, nil
	}
	main, subText, hasSub := strings.Cut(s, ".")
	if field, err = strconv.Atoi(main); err != nil || field < 2 || field > codec.MaxField {
		return 0, 0, fmt.Errorf("from %q is not a field number", s)
	}
	if hasSub {
		if sub, err = strconv.Atoi(subText); err != nil || sub < 1 {
			return 0, 0, fmt.Errorf("from %q: bad subfield", s)
		}
	}
	return field, sub, nil
}

func copyStep(n, srcField, sub int, r Rule) func(context.Context, Env, *codec.Message, *codec.Message) error {
	return func(ctx context.Context, env Env, src, dst *codec.Message) error {
		var v []byte
		var ok bool
		if sub > 0 {
			v, ok = src.Subfield(srcField, sub)
		} else {
			v, ok = src.Value(srcField)
		}
		if !ok {
			return nil // absent source: nothing to copy
		}
		switch {
		case r.PIN:
			out, err := env.TranslatePIN(ctx, v, src)
			if err != nil {
				return err
			}
			return dst.Set(n, out)
		case r.Track:
			out, err := env.DecryptTrack(ctx, v)
			if err != nil {
				return err
			}
			return dst.Set(n, out)
		}
		return dst.Set(n, v)
	}
}

// Convert fills dst (of the destination spec, reset here) from src. Fields without a rule are not copied: a
// map lists every field the destination gets.
func (c *Converter) Convert(ctx context.Context, env Env, src, dst *codec.Message) error {
	dst.Reset()
	mti := src.MTI()
	if to, ok := c.mti[mti]; ok {
		mti = to
	}
	if err := dst.SetMTI(mti); err != nil {
		return err
	}
	for _, s := range c.steps {
		if err := s.do(ctx, env, src, dst); err != nil {
			return fmt.Errorf("convert %s: field %d: %w", c.m.Name, s.field, err)
		}
	}
	if len(c.codes) > 0 && dst.Has(39) {
		rc := dst.String(39)
		if to, ok := c.codes[rc]; ok {
			return dst.SetString(39, to)
		}
		if def, ok := c.codes["*"]; ok {
			return dst.SetString(39, def)
		}
	}
	return nil
}

// TimeGenerator answers the time-based generators from a clock, for Env implementations.
func TimeGenerator(now time.Time, what string) (string, bool) {
	switch what {
	case "transmission_time":
		return now.UTC().Format("0102150405"), true
	case "local_time":
		return now.Format("150405"), true
	case "local_date":
		return now.Format("0102"), true
	}
	return "", false
}
