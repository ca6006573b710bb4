package yamlwalk

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestWalkerReadsValuesAndReportsEveryProblemWithItsLine(t *testing.T) {
	src := "a: 3\nb: [x, y]\nc: true\nd: 250ms\ne: one\na: 4\nf: {k: v}\ng: nope\nh: soon\ni: [1]\n"
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	var problems []string
	w := Walker{Fail: func(n *yaml.Node, msg string) { problems = append(problems, fmt.Sprintf("%d: %s", n.Line, msg)) }}
	got := map[string]any{}
	w.Mapping(doc.Content[0], func(key string, _, v *yaml.Node) {
		switch key {
		case "a":
			got[key] = w.Int(v)
		case "b", "e":
			got[key] = strings.Join(w.Strings(v), ",")
		case "c", "g":
			got[key] = w.Bool(v)
		case "d", "h":
			got[key] = w.Duration(v)
		case "f":
			w.List(v, func(*yaml.Node) {})
		case "i":
			got[key] = w.Scalar(v)
		}
	})
	if got["a"] != 3 || got["b"] != "x,y" || got["c"] != true || got["d"] != 250*time.Millisecond || got["e"] != "one" {
		t.Fatalf("values %v", got)
	}
	want := []string{`6: "a" given twice`, "7: want a list", `8: "nope" is not true or false`,
		`9: "soon" is not a duration such as 500ms or 10s`, "10: want a single value"}
	if strings.Join(problems, "|") != strings.Join(want, "|") {
		t.Fatalf("problems\n%s\nwant\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
}
