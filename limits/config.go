package limits

import (
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Scope is the dimension a limit is keyed by.
type Scope uint8

// The scopes, in the order a request's limits are checked: the most specific first, so a refusal names the
// narrowest culprit (one noisy terminal rather than the whole platform).
const (
	ScopeTerminal Scope = iota
	ScopeMerchant
	ScopeChannel
	ScopeAcquirer
	ScopeGlobal
	numScopes
)

var scopeNames = [numScopes]string{"terminal", "merchant", "channel", "acquirer", "global"}

// String returns the scope's name as written in the config file.
func (s Scope) String() string {
	if s < numScopes {
		return scopeNames[s]
	}
	return "scope(" + strconv.Itoa(int(s)) + ")"
}

// defaultCodes are the response codes (ISO 8583 field 39) sent when a limit of that scope refuses and the limit
// sets no code of its own: 65 (frequency limit exceeded) when one terminal or merchant is too busy, 96 (system
// malfunction, retry later) when the platform or a channel is saturated, 91 (issuer or switch inoperative) when
// an acquirer's budget is spent.
var defaultCodes = [numScopes]string{"65", "65", "96", "91", "96"}

// DefaultDownCode is the response code sent when a cluster-wide limit with policy "refuse" cannot reach Redis.
const DefaultDownCode = "96"

// Policy says what a cluster-wide limit does while Redis is unreachable.
type Policy uint8

const (
	// PolicyLocal checks a node-local limit with this node's share of the rate and concurrency cap.
	PolicyLocal Policy = iota
	// PolicyRefuse refuses every request the limit applies to, with the limit's down code.
	PolicyRefuse
)

// String returns the policy's name as written in the config file.
func (p Policy) String() string {
	if p == PolicyRefuse {
		return "refuse"
	}
	return "local"
}

// Spec is one limit as it applies to one key (or to the whole platform, for the global scope).
type Spec struct {
	Rate        float64 // tokens per second; 0 means no rate limit
	Burst       int     // bucket size; at least 1 when Rate > 0
	Concurrency int     // requests in flight; 0 means no cap
	Cluster     bool    // shared by all nodes through Redis
	Code        string  // response code when this limit refuses
	OnRedisDown Policy  // what a cluster-wide limit does while Redis is unreachable
	LocalShare  float64 // this node's share of Rate, Burst and Concurrency under PolicyLocal, in (0, 1]
	DownCode    string  // response code when PolicyRefuse refuses during an outage
	Source      string  // file:line the limit was defined at
}

// same reports whether two specs limit the same way (their Source may differ).
func (s *Spec) same(o *Spec) bool {
	a, b := *s, *o
	a.Source, b.Source = "", ""
	return a == b
}

// unlimited reports whether the spec limits nothing (an override that exempts a key).
func (s *Spec) unlimited() bool { return s.Rate == 0 && s.Concurrency == 0 }

// ScopeConfig holds the limits of one scope: Default applies to every key without an override.
// For the global scope only Default is used.
type ScopeConfig struct {
	Default   *Spec
	Overrides map[string]*Spec
}

// ClusterConfig sets how cluster-wide limits use Redis.
type ClusterConfig struct {
	KeyPrefix     string        // every Redis key is "{KeyPrefix}:..."; the braces make one hash tag
	Timeout       time.Duration // deadline of one Redis call when the caller's context has no earlier one
	LeaseTTL      time.Duration // a concurrency lease not renewed for this long is dropped
	Nodes         int           // switch nodes sharing the limits; the default LocalShare is 1/Nodes
	RetryInterval time.Duration // while Redis is down, it is probed this often
}

// Config is a limits configuration, as Parse returns it validated. Scopes is indexed by Scope. A Config must
// not be changed after it is passed to New or Reload; build a new one instead.
type Config struct {
	IdleTTL time.Duration // local per-key state unused for this long is dropped
	Cluster ClusterConfig
	Scopes  [numScopes]ScopeConfig
}

// Built-in defaults of the settings a file may omit.
const (
	DefaultIdleTTL       = 10 * time.Minute
	DefaultKeyPrefix     = "railswitch:limits"
	DefaultTimeout       = 50 * time.Millisecond
	DefaultLeaseTTL      = 30 * time.Second
	DefaultRetryInterval = time.Second
)

// spec returns the limit for key in scope, or nil when none applies.
func (c *Config) spec(s Scope, key string) *Spec {
	sc := &c.Scopes[s]
	if sp, ok := sc.Overrides[key]; ok {
		return sp
	}
	return sc.Default
}

// check guards a Config built in Go rather than by Parse against values the limiter cannot run with.
func (c *Config) check() error {
	cc := &c.Cluster
	if c.IdleTTL <= 0 || cc.Timeout <= 0 || cc.LeaseTTL <= 0 || cc.RetryInterval <= 0 || cc.KeyPrefix == "" {
		return errors.New("limits: idle_ttl, cluster timeout, lease_ttl, retry_interval and key_prefix must be set")
	}
	for _, lim := range c.Limits() {
		sp := lim.Spec
		if sp.Rate < 0 || sp.Concurrency < 0 || (sp.Rate > 0 && sp.Burst < 1) || sp.Code == "" ||
			(sp.Cluster && !(sp.LocalShare > 0 && sp.LocalShare <= 1)) {
			return fmt.Errorf("limits: %s %q: invalid limit %+v", lim.Scope, lim.Key, *sp)
		}
	}
	return nil
}

// ConfigError is one problem in a limits file, located by file and line.
type ConfigError struct {
	File string
	Line int
	Key  string // the YAML key at fault, dotted from the root
	Msg  string
}

// Error formats the problem as "file:line: key: message".
func (e *ConfigError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
}

// LoadFile reads and validates a limits file.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}
	return Parse(path, data)
}

// Parse validates a limits file's content; name is used in error messages. Every problem found is reported,
// each as a *ConfigError, joined with errors.Join.
func Parse(name string, data []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := yamlErrLine(err)
		return nil, &ConfigError{File: name, Line: line, Msg: msg}
	}
	p := &parser{file: name}
	cfg := &Config{
		IdleTTL: DefaultIdleTTL,
		Cluster: ClusterConfig{KeyPrefix: DefaultKeyPrefix, Timeout: DefaultTimeout, LeaseTTL: DefaultLeaseTTL,
			Nodes: 1, RetryInterval: DefaultRetryInterval},
	}
	if len(doc.Content) == 0 { // empty file: no limits
		return cfg, nil
	}
	root := doc.Content[0]
	var limitNodes [numScopes]*yaml.Node
	p.mapping(root, "", func(key string, k, v *yaml.Node) {
		switch key {
		case "idle_ttl":
			cfg.IdleTTL = p.duration(v, key)
		case "cluster":
			p.cluster(v, &cfg.Cluster)
		case "terminal", "merchant", "channel", "acquirer", "global":
			limitNodes[scopeByName(key)] = v
		default:
			p.errf(k, key, "unknown key (want idle_ttl, cluster, terminal, merchant, channel, acquirer or global)")
		}
	})
	// Limits are read after cluster settings, whose node count gives the default local share.
	for s, v := range limitNodes {
		if v == nil {
			continue
		}
		scope := Scope(s)
		if scope == ScopeGlobal {
			cfg.Scopes[s].Default = p.spec(v, "global", scope, &cfg.Cluster)
			continue
		}
		p.scope(v, scope, &cfg.Scopes[s], &cfg.Cluster)
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return cfg, nil
}

func scopeByName(name string) Scope {
	for i, n := range scopeNames {
		if n == name {
			return Scope(i)
		}
	}
	return numScopes
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlErrLine splits a YAML syntax error into its line and message.
func yamlErrLine(err error) (int, string) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n, msg[len(m[0]):]
	}
	return 1, strings.TrimPrefix(msg, "yaml: ")
}

// parser walks the YAML tree, collecting every error with its line.
type parser struct {
	file string
	errs []error
}

func (p *parser) errf(n *yaml.Node, key, format string, args ...any) {
	p.errs = append(p.errs, &ConfigError{File: p.file, Line: n.Line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// mapping calls f for each key of a mapping node, rejecting other node kinds and duplicate keys.
func (p *parser) mapping(n *yaml.Node, path string, f func(key string, k, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		p.errf(n, path, "want a mapping")
		return
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		full := k.Value
		if path != "" {
			full = path + "." + k.Value
		}
		if seen[k.Value] {
			p.errf(k, full, "duplicate key")
			continue
		}
		seen[k.Value] = true
		f(k.Value, k, v)
	}
}

func (p *parser) scalar(n *yaml.Node, key string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.errf(n, key, "want a single value")
		return "", false
	}
	return n.Value, true
}

func (p *parser) duration(n *yaml.Node, key string) time.Duration {
	s, ok := p.scalar(n, key)
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		p.errf(n, key, "want a positive duration such as 500ms or 10s, got %q", s)
		return 0
	}
	return d
}

func (p *parser) positiveInt(n *yaml.Node, key string) int {
	s, ok := p.scalar(n, key)
	if !ok {
		return 0
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		p.errf(n, key, "want a whole number of at least 1, got %q", s)
		return 0
	}
	return v
}

func (p *parser) cluster(n *yaml.Node, c *ClusterConfig) {
	p.mapping(n, "cluster", func(key string, k, v *yaml.Node) {
		full := "cluster." + key
		switch key {
		case "key_prefix":
			s, ok := p.scalar(v, full)
			if ok && (s == "" || strings.ContainsAny(s, "{} \t")) {
				p.errf(v, full, "want a non-empty prefix without braces or spaces, got %q", s)
			}
			c.KeyPrefix = s
		case "timeout":
			c.Timeout = p.duration(v, full)
		case "lease_ttl":
			c.LeaseTTL = p.duration(v, full)
		case "nodes":
			c.Nodes = p.positiveInt(v, full)
		case "retry_interval":
			c.RetryInterval = p.duration(v, full)
		default:
			p.errf(k, full, "unknown key (want key_prefix, timeout, lease_ttl, nodes or retry_interval)")
		}
	})
}

func (p *parser) scope(n *yaml.Node, s Scope, sc *ScopeConfig, c *ClusterConfig) {
	name := s.String()
	p.mapping(n, name, func(key string, k, v *yaml.Node) {
		full := name + "." + key
		switch key {
		case "default":
			sc.Default = p.spec(v, full, s, c)
		case "overrides":
			sc.Overrides = map[string]*Spec{}
			p.mapping(v, full, func(id string, _, lv *yaml.Node) {
				if sp := p.spec(lv, full+"."+id, s, c); sp != nil {
					sc.Overrides[id] = sp
				}
			})
		default:
			p.errf(k, full, "unknown key (want default or overrides)")
		}
	})
}

var codeRE = regexp.MustCompile(`^[0-9A-Z]{2}$`)

// spec reads one limit. Unset keys take the built-in defaults, never the scope default: an override replaces
// the default whole, so what a key gets can be read off its own entry.
func (p *parser) spec(n *yaml.Node, path string, s Scope, c *ClusterConfig) *Spec {
	sp := &Spec{Code: defaultCodes[s], DownCode: DefaultDownCode, Source: fmt.Sprintf("%s:%d", p.file, n.Line)}
	var burstNode, shareNode, policyNode, downCodeNode *yaml.Node
	before := len(p.errs)
	p.mapping(n, path, func(key string, k, v *yaml.Node) {
		full := path + "." + key
		switch key {
		case "rate":
			str, ok := p.scalar(v, full)
			if !ok {
				return
			}
			r, err := strconv.ParseFloat(str, 64)
			if err != nil || r <= 0 || math.IsInf(r, 0) || math.IsNaN(r) {
				p.errf(v, full, "want a positive number of requests per second, got %q", str)
				return
			}
			sp.Rate = r
		case "burst":
			burstNode = v
			sp.Burst = p.positiveInt(v, full)
		case "concurrency":
			sp.Concurrency = p.positiveInt(v, full)
		case "cluster":
			str, ok := p.scalar(v, full)
			if !ok {
				return
			}
			b, err := strconv.ParseBool(str)
			if err != nil {
				p.errf(v, full, "want true or false, got %q", str)
			}
			sp.Cluster = b
		case "code", "down_code":
			str, ok := p.scalar(v, full)
			if ok && !codeRE.MatchString(str) {
				p.errf(v, full, "want a two-character response code such as \"65\", got %q", str)
			}
			if key == "code" {
				sp.Code = str
			} else {
				sp.DownCode, downCodeNode = str, v
			}
		case "on_redis_down":
			policyNode = v
			str, ok := p.scalar(v, full)
			switch {
			case !ok:
			case str == "local":
				sp.OnRedisDown = PolicyLocal
			case str == "refuse":
				sp.OnRedisDown = PolicyRefuse
			default:
				p.errf(v, full, "want local or refuse, got %q", str)
			}
		case "local_share":
			shareNode = v
			str, ok := p.scalar(v, full)
			if !ok {
				return
			}
			f, err := strconv.ParseFloat(str, 64)
			if err != nil || !(f > 0 && f <= 1) {
				p.errf(v, full, "want a fraction in (0, 1], got %q", str)
				return
			}
			sp.LocalShare = f
		default:
			p.errf(k, full, "unknown key (want rate, burst, concurrency, cluster, code, on_redis_down, local_share or down_code)")
		}
	})
	if len(p.errs) > before {
		return nil
	}
	switch {
	case burstNode != nil && sp.Rate == 0:
		p.errf(burstNode, path+".burst", "burst needs a rate")
	case sp.Rate > 0 && sp.Burst == 0:
		sp.Burst = int(math.Max(1, math.Ceil(sp.Rate)))
	}
	if !sp.Cluster {
		for i, node := range []*yaml.Node{policyNode, shareNode, downCodeNode} {
			if node != nil {
				key := [...]string{"on_redis_down", "local_share", "down_code"}[i]
				p.errf(node, path+"."+key, "applies only to a cluster-wide limit (cluster: true)")
			}
		}
	} else if sp.LocalShare == 0 {
		sp.LocalShare = 1 / float64(max(c.Nodes, 1))
	}
	if sp.Cluster && sp.unlimited() {
		p.errf(n, path+".cluster", "a cluster-wide limit needs a rate or a concurrency")
	}
	return sp
}

// Limit is one configured limit with where it applies: a scope's default (Key ""), an override for one key, or
// the global limit.
type Limit struct {
	Scope   Scope
	Key     string
	Default bool
	Spec    *Spec
}

// Limits lists every configured limit, by scope in check order, each scope's default before its overrides,
// overrides by key.
func (c *Config) Limits() []Limit {
	var out []Limit
	for s := range numScopes {
		sc := &c.Scopes[s]
		if sc.Default != nil {
			out = append(out, Limit{Scope: s, Default: true, Spec: sc.Default})
		}
		keys := make([]string, 0, len(sc.Overrides))
		for k := range sc.Overrides {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			out = append(out, Limit{Scope: s, Key: k, Spec: sc.Overrides[k]})
		}
	}
	return out
}

// String describes the limit in one line, e.g. "5/s burst 10, 2 in flight, code 65" or, for a cluster-wide one,
// "500/s burst 500, cluster-wide, on redis down: local 0.25 share, code 91".
func (s *Spec) String() string {
	if s.unlimited() {
		return "unlimited"
	}
	var parts []string
	if s.Rate > 0 {
		parts = append(parts, strconv.FormatFloat(s.Rate, 'g', -1, 64)+"/s burst "+strconv.Itoa(s.Burst))
	}
	if s.Concurrency > 0 {
		parts = append(parts, strconv.Itoa(s.Concurrency)+" in flight")
	}
	if s.Cluster {
		parts = append(parts, "cluster-wide")
		if s.OnRedisDown == PolicyRefuse {
			parts = append(parts, "on redis down: refuse with "+s.DownCode)
		} else {
			parts = append(parts, "on redis down: local "+strconv.FormatFloat(s.LocalShare, 'g', 3, 64)+" share")
		}
	}
	return strings.Join(append(parts, "code "+s.Code), ", ")
}
