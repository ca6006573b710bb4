// Package yamlwalk walks go.yaml.in/yaml/v3 nodes for the project's file formats (specs, routes, limits,
// bank rules), so that each format reports every problem with its line in its own error type while sharing
// one way of reading mappings, lists and values.
package yamlwalk

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Walker reads nodes and reports each problem, with the node it is about, through Fail.
type Walker struct {
	Fail func(n *yaml.Node, msg string)
}

func (w Walker) failf(n *yaml.Node, format string, args ...any) {
	w.Fail(n, fmt.Sprintf(format, args...))
}

// Mapping calls fn for each key of a mapping, in file order; a node of another kind and a repeated key are
// problems.
func (w Walker) Mapping(n *yaml.Node, fn func(key string, k, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		w.failf(n, "want a mapping")
		return
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			w.failf(k, "%q given twice", k.Value)
			continue
		}
		seen[k.Value] = true
		fn(k.Value, k, v)
	}
}

// List calls fn for each item of a sequence.
func (w Walker) List(n *yaml.Node, fn func(*yaml.Node)) {
	if n.Kind != yaml.SequenceNode {
		w.failf(n, "want a list")
		return
	}
	for _, item := range n.Content {
		fn(item)
	}
}

// Scalar returns a single value.
func (w Walker) Scalar(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		w.failf(n, "want a single value")
		return ""
	}
	return n.Value
}

// Strings reads a single value or a list of values.
func (w Walker) Strings(n *yaml.Node) []string {
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	var out []string
	w.List(n, func(item *yaml.Node) { out = append(out, w.Scalar(item)) })
	return out
}

// Int reads a whole number.
func (w Walker) Int(n *yaml.Node) int {
	v, err := strconv.Atoi(w.Scalar(n))
	if err != nil && n.Kind == yaml.ScalarNode {
		w.failf(n, "%q is not a whole number", n.Value)
	}
	return v
}

// Bool reads true or false.
func (w Walker) Bool(n *yaml.Node) bool {
	v, err := strconv.ParseBool(w.Scalar(n))
	if err != nil && n.Kind == yaml.ScalarNode {
		w.failf(n, "%q is not true or false", n.Value)
	}
	return v
}

// Duration reads a Go duration such as 500ms or 10s.
func (w Walker) Duration(n *yaml.Node) time.Duration {
	d, err := time.ParseDuration(w.Scalar(n))
	if err != nil && n.Kind == yaml.ScalarNode {
		w.failf(n, "%q is not a duration such as 500ms or 10s", n.Value)
	}
	return d
}

// ErrLine digs the line out of a YAML syntax or decoding error ("yaml: line 7: ..."); 1 when it has none.
func ErrLine(err error) int {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	var n int
	if _, e := fmt.Sscanf(strings.TrimPrefix(msg, "yaml: "), "line %d:", &n); e == nil {
		return n
	}
	return 1
}
