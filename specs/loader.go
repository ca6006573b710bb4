package specs

import (
	"embed"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/railswitch/railswitch/codec"
	"github.com/railswitch/railswitch/internal/yamlwalk"
	"go.yaml.in/yaml/v3"
)

//go:embed builtin/*.yaml
var builtinFS embed.FS

// LoadError is a problem in a spec file, with the file and line at fault.
type LoadError struct {
	File string
	Line int
	Msg  string
}

// Error describes the problem.
func (e *LoadError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// file is one parsed spec file before inheritance is applied.
type file struct {
	name     string
	path     string
	abstract bool
	extends  string
	def      codec.SpecDef
	set      map[string]bool // top-level keys the file sets
	lines    map[int]int     // field number -> line
	line     int             // line of the name key
}

var (
	builtinOnce  sync.Once
	builtinFiles map[string]*file
	builtinErr   error
	compiled     sync.Map // name -> *codec.Spec
)

func loadBuiltins() {
	builtinFiles = map[string]*file{}
	entries, err := builtinFS.ReadDir("builtin")
	if err != nil {
		builtinErr = err
		return
	}
	var errs []error
	for _, e := range entries {
		data, err := builtinFS.ReadFile("builtin/" + e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f, err := parseFile("specs/builtin/"+e.Name(), data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		builtinFiles[f.name] = f
	}
	builtinErr = errors.Join(errs...)
}

// Names lists the built-in specs that can be used directly (abstract bases left out), sorted.
func Names() []string {
	builtinOnce.Do(loadBuiltins)
	var out []string
	for n, f := range builtinFiles {
		if !f.abstract {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Source returns the YAML text of a built-in spec.
func Source(name string) ([]byte, error) {
	builtinOnce.Do(loadBuiltins)
	f, ok := builtinFiles[name]
	if !ok {
		return nil, fmt.Errorf("no built-in spec %q (have %s)", name, strings.Join(Names(), ", "))
	}
	return builtinFS.ReadFile(strings.TrimPrefix(f.path, "specs/"))
}

// Get returns a compiled spec: a built-in one by name, or a spec file when name is a path (contains a '/' or
// ends in .yaml or .yml). Built-in specs are compiled once and shared.
func Get(name string) (*codec.Spec, error) {
	if strings.Contains(name, "/") || strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") {
		return LoadFile(name)
	}
	if s, ok := compiled.Load(name); ok {
		return s.(*codec.Spec), nil
	}
	builtinOnce.Do(loadBuiltins)
	if builtinErr != nil {
		return nil, builtinErr
	}
	f, ok := builtinFiles[name]
	if !ok || f.abstract {
		return nil, fmt.Errorf("no spec %q (built-in: %s)", name, strings.Join(Names(), ", "))
	}
	s, err := build(f, builtinFiles)
	if err != nil {
		return nil, err
	}
	compiled.Store(name, s)
	return s, nil
}

// LoadFile reads and compiles a spec file. It may extend a built-in spec.
func LoadFile(p string) (*codec.Spec, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return Parse(p, data)
}

// Parse compiles spec YAML; filename is used in errors only.
func Parse(filename string, data []byte) (*codec.Spec, error) {
	f, err := parseFile(filename, data)
	if err != nil {
		return nil, err
	}
	builtinOnce.Do(loadBuiltins)
	if builtinErr != nil {
		return nil, builtinErr
	}
	return build(f, builtinFiles)
}

// build applies inheritance and compiles, mapping compile errors to lines.
func build(f *file, known map[string]*file) (*codec.Spec, error) {
	def, lines, err := resolve(f, known, 0)
	if err != nil {
		return nil, err
	}
	s, err := codec.Compile(def)
	if err == nil {
		return s, nil
	}
	var errs []error
	for _, e := range unjoin(err) {
		var se *codec.SpecError
		if errors.As(e, &se) {
			l, ok := lines[se.Field]
			if !ok {
				l = loc{f.path, f.line}
			}
			errs = append(errs, &LoadError{File: l.file, Line: l.line, Msg: se.Error()})
			continue
		}
		errs = append(errs, e)
	}
	return nil, errors.Join(errs...)
}

type loc struct {
	file string
	line int
}

// resolve merges f over the chain of specs it extends.
func resolve(f *file, known map[string]*file, depth int) (codec.SpecDef, map[int]loc, error) {
	lines := map[int]loc{}
	if f.extends == "" {
		for n, l := range f.lines {
			lines[n] = loc{f.path, l}
		}
		return f.def, lines, nil
	}
	if depth > 8 {
		return codec.SpecDef{}, nil, &LoadError{f.path, f.line, "extends chain too deep (a cycle?)"}
	}
	parent, ok := known[f.extends]
	if !ok {
		return codec.SpecDef{}, nil, &LoadError{f.path, f.line, fmt.Sprintf("extends unknown spec %q", f.extends)}
	}
	def, lines, err := resolve(parent, known, depth+1)
	if err != nil {
		return def, nil, err
	}
	def.Name, def.Description = f.def.Name, f.def.Description
	if f.set["mti"] {
		def.MTI = f.def.MTI
	}
	if f.set["bitmap"] {
		def.Bitmap = f.def.Bitmap
	}
	if f.set["tertiary"] {
		def.Tertiary = f.def.Tertiary
	}
	if f.set["framing"] {
		def.Framing = f.def.Framing
	}
	if f.set["defaults"] {
		d, pd := f.def.Defaults, &def.Defaults
		if d.Prefix != 0 {
			pd.Prefix = d.Prefix
		}
		if d.Numeric != 0 {
			pd.Numeric = d.Numeric
		}
		if d.Track != 0 {
			pd.Track = d.Track
		}
		if d.Text != 0 {
			pd.Text = d.Text
		}
		if d.Binary != 0 {
			pd.Binary = d.Binary
		}
	}
	fields := append([]codec.FieldDef(nil), def.Fields...)
	for _, fd := range f.def.Fields {
		replaced := false
		for i := range fields {
			if fields[i].Number == fd.Number {
				fields[i], replaced = fd, true
			}
		}
		if !replaced {
			fields = append(fields, fd)
		}
		lines[fd.Number] = loc{f.path, f.lines[fd.Number]}
	}
	sort.Slice(fields, func(i, j int) bool { return fields[i].Number < fields[j].Number })
	def.Fields = fields
	return def, lines, nil
}

func unjoin(err error) []error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range u.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// parseFile reads the YAML of one spec file, checking keys and values and recording lines.
func parseFile(filename string, data []byte) (*file, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &LoadError{File: filename, Line: yamlwalk.ErrLine(err), Msg: err.Error()}
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, &LoadError{File: filename, Line: 1, Msg: "a spec file is a YAML mapping"}
	}
	p := newParser(filename)
	f := &file{path: filename, set: map[string]bool{}, lines: map[int]int{}, line: 1}
	root := doc.Content[0]
	p.Mapping(root, func(key string, k, v *yaml.Node) {
		f.set[key] = true
		switch key {
		case "name":
			f.name, f.line = p.Scalar(v), k.Line
			f.def.Name = f.name
		case "description":
			f.def.Description = p.Scalar(v)
		case "extends":
			f.extends = p.Scalar(v)
		case "abstract":
			f.abstract = p.Bool(v)
		case "mti":
			f.def.MTI = codec.MTIEncoding(p.enum(v, map[string]int{"ascii": 1, "bcd": 2, "ebcdic": 3}))
		case "bitmap":
			f.def.Bitmap = codec.BitmapEncoding(p.enum(v, map[string]int{"binary": 1, "hex": 2}))
		case "tertiary":
			f.def.Tertiary = p.Bool(v)
		case "framing":
			f.def.Framing = p.framing(v)
		case "defaults":
			f.def.Defaults = p.defaults(v)
		case "fields":
			p.fields(v, f)
		default:
			p.fail(k, "unknown key %q (want name, description, extends, abstract, mti, bitmap, tertiary, framing, defaults, fields)", key)
		}
	})
	if f.name == "" {
		p.fail(root, "spec has no name")
	}
	if f.extends == "" && !f.abstract {
		if !f.set["mti"] {
			p.fail(root, "mti encoding missing")
		}
		if !f.set["bitmap"] {
			p.fail(root, "bitmap encoding missing")
		}
		if !f.set["framing"] {
			p.fail(root, "framing missing")
		}
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return f, nil
}

// parser collects errors with lines while walking YAML nodes.
type parser struct {
	yamlwalk.Walker
	file string
	errs []error
}

func newParser(file string) *parser {
	p := &parser{file: file}
	p.Walker = yamlwalk.Walker{Fail: func(n *yaml.Node, msg string) { p.fail(n, "%s", msg) }}
	return p
}

func (p *parser) fail(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, &LoadError{File: p.file, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) enum(n *yaml.Node, values map[string]int) int {
	s := p.Scalar(n)
	if v, ok := values[strings.ToLower(s)]; ok {
		return v
	}
	var names []string
	for k := range values {
		names = append(names, k)
	}
	sort.Strings(names)
	p.fail(n, "%q is not one of %s", s, strings.Join(names, ", "))
	return 0
}

var (
	encodings = map[string]int{"ascii": int(codec.EncASCII), "ebcdic": int(codec.EncEBCDIC), "bcd": int(codec.EncBCD),
		"bcd-left": int(codec.EncBCDLeft), "binary": int(codec.EncBinary), "hex": int(codec.EncHex)}
	prefixes = map[string]int{"ascii": int(codec.PrefixASCII), "bcd": int(codec.PrefixBCD),
		"binary": int(codec.PrefixBinary), "ebcdic": int(codec.PrefixEBCDIC)}
	kinds = map[string]int{"n": int(codec.KindNumeric), "z": int(codec.KindTrack), "a": int(codec.KindText),
		"an": int(codec.KindText), "ans": int(codec.KindText), "ns": int(codec.KindText), "anp": int(codec.KindText),
		"b": int(codec.KindBinary)}
	sensitivities = map[string]int{"pan": int(codec.SensitivePAN), "track": int(codec.SensitiveTrack),
		"pin": int(codec.SensitivePIN), "chip": int(codec.SensitiveChip), "key": int(codec.SensitiveKey)}
	lengthTypes = map[string]codec.LengthType{"LL": codec.LL, "LLL": codec.LLL, "LLLL": codec.LLLL}
)

func (p *parser) framing(n *yaml.Node) codec.Framing {
	var fr codec.Framing
	p.Mapping(n, func(key string, k, v *yaml.Node) {
		switch key {
		case "length":
			fr.Length = codec.LengthHeader(p.enum(v, map[string]int{"none": 1, "binary2": 2, "ascii4": 3, "bcd2": 4}))
		case "tpdu":
			fr.TPDU = p.Bool(v)
		case "header":
			fr.HeaderLen = p.Int(v)
		case "max_frame":
			fr.MaxFrame = p.Int(v)
		default:
			p.fail(k, "unknown framing key %q (want length, tpdu, header, max_frame)", key)
		}
	})
	if fr.Length == 0 {
		p.fail(n, "framing needs a length (none, binary2, ascii4, bcd2)")
	}
	return fr
}

func (p *parser) defaults(n *yaml.Node) codec.Defaults {
	var d codec.Defaults
	p.Mapping(n, func(key string, k, v *yaml.Node) {
		switch key {
		case "prefix":
			d.Prefix = codec.PrefixEncoding(p.enum(v, prefixes))
		case "n":
			d.Numeric = codec.Encoding(p.enum(v, encodings))
		case "z":
			d.Track = codec.Encoding(p.enum(v, encodings))
		case "text":
			d.Text = codec.Encoding(p.enum(v, encodings))
		case "b":
			d.Binary = codec.Encoding(p.enum(v, encodings))
		default:
			p.fail(k, "unknown defaults key %q (want prefix, n, z, text, b)", key)
		}
	})
	return d
}

func (p *parser) fields(n *yaml.Node, f *file) {
	p.Mapping(n, func(key string, k, v *yaml.Node) {
		num, err := strconv.Atoi(key)
		if err != nil {
			p.fail(k, "field key %q is not a number", key)
			return
		}
		f.lines[num] = k.Line
		f.def.Fields = append(f.def.Fields, p.field(num, v))
	})
}

func (p *parser) field(num int, n *yaml.Node) codec.FieldDef {
	fd := codec.FieldDef{Number: num}
	var maxSet, lengthSet bool
	var maxNode *yaml.Node
	p.Mapping(n, func(key string, k, v *yaml.Node) {
		switch key {
		case "name":
			fd.Name = p.Scalar(v)
		case "type":
			fd.Kind = codec.Kind(p.enum(v, kinds))
		case "length":
			lengthSet = true
			if lt, ok := lengthTypes[strings.ToUpper(v.Value)]; ok && v.Kind == yaml.ScalarNode {
				fd.Length = lt
			} else {
				fd.Length, fd.Size = codec.Fixed, p.Int(v)
			}
		case "max":
			maxSet, maxNode = true, v
			fd.Size = p.Int(v)
		case "prefix":
			fd.Prefix = codec.PrefixEncoding(p.enum(v, prefixes))
		case "counts":
			fd.Counting = codec.Counting(p.enum(v, map[string]int{"units": 0, "bytes": 1}))
		case "encoding":
			fd.Encoding = codec.Encoding(p.enum(v, encodings))
		case "pad":
			fd.PadF = p.enum(v, map[string]int{"0": 0, "f": 1}) == 1
		case "charset":
			fd.Charset = codec.Charset(p.enum(v, map[string]int{"ascii": 0, "gbk": 1}))
		case "sensitive":
			fd.Sensitivity = codec.Sensitivity(p.enum(v, sensitivities))
		case "tlv":
			fd.TLV = p.Bool(v)
		case "subfields":
			fd.Subfields = p.subfields(v)
		default:
			p.fail(k, "unknown field key %q (want name, type, length, max, prefix, counts, encoding, pad, charset, sensitive, tlv, subfields)", key)
		}
	})
	if fd.Kind == 0 {
		p.fail(n, "field %d has no type (n, z, a, an, ans, b)", num)
	}
	if !lengthSet {
		p.fail(n, "field %d has no length (a number, or LL, LLL, LLLL with max)", num)
	}
	if fd.Length != codec.Fixed && !maxSet {
		p.fail(n, "field %d: a variable length needs max", num)
	}
	if fd.Length == codec.Fixed && maxSet {
		p.fail(maxNode, "field %d: max is for variable lengths", num)
	}
	return fd
}

func (p *parser) subfields(n *yaml.Node) []codec.SubfieldDef {
	var out []codec.SubfieldDef
	p.List(n, func(item *yaml.Node) {
		var sf codec.SubfieldDef
		p.Mapping(item, func(key string, k, v *yaml.Node) {
			switch key {
			case "id":
				sf.ID = p.Int(v)
			case "name":
				sf.Name = p.Scalar(v)
			case "length":
				sf.Length = p.Int(v)
			default:
				p.fail(k, "unknown subfield key %q (want id, name, length)", key)
			}
		})
		out = append(out, sf)
	})
	return out
}
