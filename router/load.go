package router

import (
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/railswitch/railswitch/internal/yamlwalk"
	"go.yaml.in/yaml/v3"
)

// binHeader is the header line every BIN CSV file starts with.
var binHeader = []string{"bin_low", "bin_high", "acquirer", "priority", "card_type"}

// config is a parsed but not yet validated table, with the sources it came from.
type config struct {
	acquirers []Acquirer
	rules     []Rule
	bins      []BINRange
	binsOnly  bool // no routes file: every BIN row routes to its acquirer, and any acquirer name is accepted
	files     []string
	sum       hash.Hash
	errs      Errors
	names     map[string]string // one copy of each acquirer and card type name of a large BIN file
}

func (c *config) intern(s string) string {
	if v, ok := c.names[s]; ok {
		return v
	}
	if c.names == nil {
		c.names = map[string]string{}
	}
	c.names[s] = s
	return s
}

func (c *config) issue(file string, line int, format string, args ...any) {
	c.errs = append(c.errs, newIssue(Source{file, line}, fmt.Sprintf(format, args...)))
}

// read adds a source file's bytes to the checksum.
func (c *config) read(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c.files = append(c.files, path)
	c.sum.Write(b)
	return b, nil
}

// Load reads a routes file (YAML) and the BIN CSV files it names, and builds a table. A returned error of
// type Errors lists every problem found, each with its file and line.
func Load(path string) (*Table, error) {
	c := &config{sum: sha256.New()}
	b, err := c.read(path)
	if err != nil {
		return nil, err
	}
	for _, f := range c.parseYAML(path, b) {
		if err := c.loadCSV(f.path); err != nil {
			c.issue(path, f.line, "%v", err)
		}
	}
	return c.compile()
}

// LoadBINs reads one BIN CSV file alone and builds a table in which every BIN row is a rule to its acquirer.
func LoadBINs(path string) (*Table, error) {
	c := &config{sum: sha256.New(), binsOnly: true}
	if err := c.loadCSV(path); err != nil {
		return nil, err
	}
	return c.compile()
}

// loadCSV reads a BIN file: a header line, then bin_low,bin_high,acquirer,priority,card_type (the last two
// may be empty or left out).
func (c *config) loadCSV(path string) error {
	b, err := c.read(path)
	if err != nil {
		return err
	}
	r := csv.NewReader(strings.NewReader(string(b)))
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	r.ReuseRecord = true
	r.Comment = '#'
	for first := true; ; first = false {
		rec, err := r.Read()
		if err == io.EOF {
			if first {
				c.issue(path, 1, "empty file: want the header line %s", strings.Join(binHeader, ","))
			}
			return nil
		}
		if err != nil {
			line := 0
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.Line
			}
			c.issue(path, line, "%v", err)
			return nil
		}
		line, _ := r.FieldPos(0)
		if first {
			if len(rec) != len(binHeader) || !headerOK(rec) {
				c.issue(path, line, "the header line must be %s", strings.Join(binHeader, ","))
			}
			continue
		}
		c.binRow(Source{path, line}, rec)
	}
}

func headerOK(rec []string) bool {
	for i, h := range binHeader {
		if strings.TrimSpace(rec[i]) != h {
			return false
		}
	}
	return true
}

func (c *config) binRow(src Source, rec []string) {
	if len(rec) < 3 || len(rec) > len(binHeader) {
		c.issue(src.File, src.Line, "want 3 to 5 columns (%s), got %d", strings.Join(binHeader, ","), len(rec))
		return
	}
	col := func(i int) string {
		if i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	r := BINRange{Low: col(0), High: col(1), Acquirer: c.intern(col(2)), CardType: c.intern(col(4)), Source: src}
	if p := col(3); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			c.issue(src.File, src.Line, "priority %q is not a whole number", p)
			return
		}
		r.Priority = n
	}
	if r.Acquirer == "" {
		c.issue(src.File, src.Line, "acquirer is empty")
		return
	}
	c.bins = append(c.bins, r)
}

type binFile struct {
	path string // relative to the working directory
	line int    // where the routes file names it
}

// parseYAML reads the routes file and gives the BIN files it names, relative to the routes file.
func (c *config) parseYAML(path string, b []byte) (binFiles []binFile) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		c.issue(path, yamlwalk.ErrLine(err), "%v", err)
		return nil
	}
	if len(doc.Content) == 0 {
		c.issue(path, 1, "empty routes file")
		return nil
	}
	p := &yamlParser{c: c, file: path}
	p.Walker = yamlwalk.Walker{Fail: func(n *yaml.Node, msg string) { p.issue(n, "%s", msg) }}
	p.Mapping(doc.Content[0], func(k string, _, v *yaml.Node) {
		switch k {
		case "bins":
			if v.Kind == yaml.ScalarNode {
				v = &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{v}}
			}
			p.List(v, func(n *yaml.Node) {
				binFiles = append(binFiles, binFile{filepath.Join(filepath.Dir(path), p.Scalar(n)), n.Line})
			})
		case "acquirers":
			p.List(v, func(n *yaml.Node) { c.acquirers = append(c.acquirers, p.acquirer(n)) })
		case "rules":
			p.List(v, func(n *yaml.Node) { c.rules = append(c.rules, p.rule(n)) })
		default:
			p.issue(v, "unknown key %q (want bins, acquirers, rules)", k)
		}
	})
	return binFiles
}

type yamlParser struct {
	yamlwalk.Walker
	c    *config
	file string
}

func (p *yamlParser) issue(n *yaml.Node, format string, args ...any) {
	p.c.issue(p.file, n.Line, format, args...)
}

func (p *yamlParser) acquirer(n *yaml.Node) Acquirer {
	a := Acquirer{Source: Source{p.file, n.Line}}
	p.Mapping(n, func(k string, _, v *yaml.Node) {
		switch k {
		case "name":
			a.Name = p.Scalar(v)
		case "strategy":
			s, ok := strategyNames[p.Scalar(v)]
			if !ok {
				p.issue(v, "unknown strategy %q (want round-robin, weighted or least-inflight)", v.Value)
			}
			a.Strategy = s
		case "fallbacks":
			a.Fallbacks = p.Strings(v)
		case "endpoints":
			p.List(v, func(e *yaml.Node) { a.Endpoints = append(a.Endpoints, p.endpoint(e)) })
		case "breaker":
			a.Breaker = p.breaker(v)
		default:
			p.issue(v, "unknown acquirer key %q (want name, strategy, fallbacks, endpoints, breaker)", k)
		}
	})
	return a
}

func (p *yamlParser) endpoint(n *yaml.Node) Endpoint {
	e := Endpoint{Weight: 1, Connections: 1}
	p.Mapping(n, func(k string, _, v *yaml.Node) {
		switch k {
		case "name":
			e.Name = p.Scalar(v)
		case "address":
			e.Address = p.Scalar(v)
		case "weight":
			e.Weight = p.Int(v)
		case "connections":
			e.Connections = p.Int(v)
		default:
			p.issue(v, "unknown endpoint key %q (want name, address, weight, connections)", k)
		}
	})
	if e.Name == "" || e.Address == "" {
		p.issue(n, "an endpoint needs a name and an address")
	}
	if e.Weight < 0 || e.Connections < 1 {
		p.issue(n, "endpoint %s: weight must be 0 or more and connections 1 or more", e.Name)
	}
	return e
}

func (p *yamlParser) breaker(n *yaml.Node) BreakerConfig {
	var b BreakerConfig
	p.Mapping(n, func(k string, _, v *yaml.Node) {
		switch k {
		case "failures":
			b.Failures = p.Int(v)
		case "cooldown":
			d, err := time.ParseDuration(p.Scalar(v))
			if err != nil {
				p.issue(v, "cooldown %q is not a duration such as 30s", v.Value)
			}
			b.Cooldown = d
		case "probes":
			b.Probes = p.Int(v)
		case "successes":
			b.Successes = p.Int(v)
		default:
			p.issue(v, "unknown breaker key %q (want failures, cooldown, probes, successes)", k)
		}
	})
	return b
}

func (p *yamlParser) rule(n *yaml.Node) Rule {
	r := Rule{Source: Source{p.file, n.Line}}
	results := 0
	p.Mapping(n, func(k string, _, v *yaml.Node) {
		switch k {
		case "name":
			r.Name = p.Scalar(v)
		case "channel":
			r.Channels = p.Strings(v)
		case "class":
			r.Classes = p.Strings(v)
		case "proc":
			r.Procs = p.Strings(v)
		case "bin":
			r.BINs = p.Strings(v)
		case "card_type":
			r.CardTypes = p.Strings(v)
		case "fallbacks":
			r.Fallbacks = p.Strings(v)
		case "acquirer":
			r.Kind, r.Acquirer = KindAcquirer, p.Scalar(v)
			results++
		case "bin_table":
			if p.Bool(v) {
				r.Kind, r.BINTable = KindAcquirer, true
				results++
			}
		case "local":
			r.Kind, r.Handler = KindLocal, p.Scalar(v)
			results++
		case "decline":
			r.Kind, r.ResponseCode = KindDecline, p.Scalar(v)
			results++
		case "original":
			if p.Bool(v) {
				r.Kind = KindOriginal
				results++
			}
		default:
			p.issue(v, "unknown rule key %q", k)
		}
	})
	if results != 1 {
		p.issue(n, "a rule needs exactly one result: acquirer, bin_table, local, decline or original")
		r.Kind = KindNone
	}
	return r
}
