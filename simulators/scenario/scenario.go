// Package scenario runs YAML files of terminal steps against a host (the switch, or a test responder)
// through the POS and kiosk simulators, checks each step's expectations and reports pass or fail per
// step, on a writer and as JUnit XML. The file format is in docs/simulators.md.
package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/railswitch/railswitch/simulators/pos"
	"go.yaml.in/yaml/v3"
)

// File is one scenario file: the devices' configuration and the steps run in order.
type File struct {
	Name     string           `yaml:"name"`
	Target   string           `yaml:"target"` // host address; --target overrides it
	Terminal *pos.Config      `yaml:"terminal"`
	Kiosk    *pos.KioskConfig `yaml:"kiosk"`
	Steps    []Step           `yaml:"steps"`

	Path string `yaml:"-"`
}

// Step is one transaction and what it must produce.
type Step struct {
	Name   string `yaml:"name"`
	Txn    string `yaml:"txn"`
	Amount int64  `yaml:"amount"`
	PAN    string `yaml:"pan"`
	PIN    string `yaml:"pin"`
	Entry  string `yaml:"entry"`  // swipe (default), chip, manual
	Expiry string `yaml:"expiry"` // YYMM
	Order  string `yaml:"order"`  // kiosk: ticket order number
	Refer  string `yaml:"refer"`  // name of the earlier step whose transaction this one voids, refunds or completes
	Fault  string `yaml:"fault"`  // drop-reply, bad-mac
	Expect Expect `yaml:"expect"`

	Line int `yaml:"-"`
}

// Expect is what a step must produce. Without rc and no_reply, rc "00" is expected.
type Expect struct {
	RC       *string        `yaml:"rc"`
	Fields   map[int]string `yaml:"fields"`   // reply fields as dumps show them (PAN masked, binary in hex)
	NoReply  bool           `yaml:"no_reply"` // the reply must not come (a dropped reply, a timeout)
	Reversal *bool          `yaml:"reversal"` // a stored reversal must (or must not) be sent and acknowledged first
	Upload   *bool          `yaml:"upload"`   // settlement: the batch must (or must not) be uploaded
}

// kioskTxns are the steps that go to the kiosk.
var kioskTxns = map[pos.Txn]bool{pos.KioskPurchase: true, pos.KioskRefund: true}

// Load reads and checks a scenario file; errors name the file and line.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse reads a scenario from data; name is used in errors.
func Parse(name string, data []byte) (*File, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	f := &File{Path: name}
	if err := dec.Decode(f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty scenario", name)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	stepLines(&doc, f.Steps)
	if f.Name == "" {
		f.Name = name
	}
	if len(f.Steps) == 0 {
		return nil, fmt.Errorf("%s: no steps", name)
	}
	seen := map[string]bool{}
	for i := range f.Steps {
		s := &f.Steps[i]
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: step %q: %s", name, s.Line, s.Name, fmt.Sprintf(format, args...))
		}
		if s.Name == "" {
			s.Name = fmt.Sprintf("step %d", i+1)
		}
		if seen[s.Name] {
			return nil, bad("name used twice")
		}
		seen[s.Name] = true
		txn, err := pos.ParseTxn(s.Txn)
		if err != nil {
			return nil, bad("%v", err)
		}
		if kioskTxns[txn] && f.Kiosk == nil {
			return nil, bad("kiosk step without a kiosk: section")
		}
		if !kioskTxns[txn] && f.Terminal == nil {
			return nil, bad("terminal step without a terminal: section")
		}
		if _, err := pos.ParseFault(s.Fault); err != nil {
			return nil, bad("%v", err)
		}
		if s.Refer != "" && (!seen[s.Refer] || s.Refer == s.Name) {
			return nil, bad("refer %q does not name an earlier step", s.Refer)
		}
		if s.Expect.NoReply && s.Expect.RC != nil {
			return nil, bad("expect no_reply and rc together")
		}
	}
	return f, nil
}

// stepLines records the line of each step from the parsed document.
func stepLines(doc *yaml.Node, steps []Step) {
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != "steps" || m.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		for j, n := range m.Content[i+1].Content {
			if j < len(steps) {
				steps[j].Line = n.Line
			}
		}
	}
}
