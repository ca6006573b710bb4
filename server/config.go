package server

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/railswitch/railswitch/flow"
	"github.com/railswitch/railswitch/internal/yamlwalk"
	"github.com/railswitch/railswitch/ledger"
	"go.yaml.in/yaml/v3"
)

// Config is the switch's one YAML configuration file. Paths in it are relative to the file's folder. See
// docs/configuration.md for every key.
type Config struct {
	Node        NodeConfig                `yaml:"node"`
	Keys        KeysConfig                `yaml:"keys"`
	HSM         HSMConfig                 `yaml:"hsm"` // the security module; default: the software module
	Channels    []ChannelConfig           `yaml:"channels"`
	Terminals   string                    `yaml:"terminals"` // terminals file
	Routes      string                    `yaml:"routes"`    // routes file (acquirers, endpoints, rules, BIN CSVs)
	Acquirers   map[string]AcquirerConfig `yaml:"acquirers"`
	Conversions []ConversionConfig        `yaml:"conversions"`
	Limits      string                    `yaml:"limits"` // limits file; empty: no limits
	Redis       RedisConfig               `yaml:"redis"`  // Redis of the cluster-wide limits
	Journal     JournalConfig             `yaml:"journal"`
	Sinks       []SinkConfig              `yaml:"sinks"`
	Reversals   ReversalsConfig           `yaml:"reversals"`
	Duplicates  *flow.DupConfig           `yaml:"duplicates"` // retransmission check (docs/duplicates.md); nil: none
	Admin       AdminConfig               `yaml:"admin"`
	State       StateConfig               `yaml:"state"` // node state: embedded files or shared Redis (docs/nodestate.md)

	dir   string
	file  string
	lines map[string]int // key path -> line, for validation errors
}

// NodeConfig names the node.
type NodeConfig struct {
	ID      string `yaml:"id"`      // goes into transaction ids; unique per node
	Number  int    `yaml:"number"`  // 0-99, goes into RRNs; unique per node
	Posting bool   `yaml:"posting"` // this tier posts to the ledger (see docs/journal.md)
}

// KeysConfig is the key store. The LMK never comes from this file: it is read from the environment variable
// SWITCH_LMK (hex) or the file named by SWITCH_LMK_FILE, or from lmk_file here as a path.
type KeysConfig struct {
	Store   string `yaml:"store"`    // key store file
	LMKFile string `yaml:"lmk_file"` // path of the LMK file (0600); SWITCH_LMK / SWITCH_LMK_FILE take precedence
}

// HSMConfig chooses the security module. The software module (the default) holds the LMK in the process; a
// payShield-compatible networked HSM holds it itself, and the key store then keeps cryptograms under the
// HSM's LMK (the switch still checks the key store's LMK check value against SWITCH_LMK / lmk_file, which must
// be the HSM's LMK check value source).
type HSMConfig struct {
	Type        string   `yaml:"type"`          // software (default) or payshield
	Address     string   `yaml:"address"`       // payshield: host:port
	HeaderLen   int      `yaml:"header_len"`    // payshield: message header length, default 4
	Conns       int      `yaml:"conns"`         // payshield: connections, default 2
	MaxInFlight int      `yaml:"max_in_flight"` // payshield: outstanding commands per connection, default 16
	Timeout     Duration `yaml:"timeout"`       // payshield: per command, default 2s
}

// ChannelConfig is one terminal-facing listener.
type ChannelConfig struct {
	Name        string   `yaml:"name"`
	Listen      string   `yaml:"listen"`
	Spec        string   `yaml:"spec"`
	Allow       []string `yaml:"allow"`        // source networks (CIDR); empty allows all
	MaxConns    int      `yaml:"max_conns"`    // default 10000
	IdleTimeout Duration `yaml:"idle_timeout"` // default 10m; 0s never
	MaxInFlight int      `yaml:"max_in_flight"`
	TLSCert     string   `yaml:"tls_cert"` // both set: TLS channel
	TLSKey      string   `yaml:"tls_key"`
}

// AcquirerConfig is what the switch needs of an acquirer beyond its routes-file entry (endpoints, balancing).
type AcquirerConfig struct {
	Spec          string            `yaml:"spec"`
	ZPK           string            `yaml:"zpk"` // key names in the key store
	ZAK           string            `yaml:"zak"`
	ZMK           string            `yaml:"zmk"`
	MAC           string            `yaml:"mac"`          // MAC algorithm, default x9.19
	MACField      int               `yaml:"mac_field"`    // 64 or 128; 0: 64, or 128 when a secondary bitmap is present
	PINFormat     string            `yaml:"pin_format"`   // ISO 9564 format the bank takes: 0 (default), 1, 3, 4
	Timeout       Duration          `yaml:"timeout"`      // default 10s
	ReversalMTI   string            `yaml:"reversal_mti"` // 0400 or 0420 (default)
	InstitutionID string            `yaml:"institution_id"`
	ForwarderID   string            `yaml:"forwarder_id"`
	SignOnCode    string            `yaml:"sign_on_code"`
	EchoInterval  Duration          `yaml:"echo_interval"`
	Maps          map[string]MapRef `yaml:"maps"` // terminal spec -> its conversion maps
	TLS           *TLSConfig        `yaml:"tls"`  // set: the links to this acquirer use TLS
}

// TLSConfig is TLS on the links to an acquirer.
type TLSConfig struct {
	CAFile     string `yaml:"ca_file"`     // PEM certificates that sign the bank's certificate; empty: the system's roots
	CertFile   string `yaml:"cert_file"`   // client certificate for mutual TLS, with key_file
	KeyFile    string `yaml:"key_file"`    // its private key (PEM)
	ServerName string `yaml:"server_name"` // the name the bank's certificate must carry; default: the endpoint's host
}

// MapRef names the two conversion maps between a terminal spec and an acquirer.
type MapRef struct {
	Request  string `yaml:"request"`
	Response string `yaml:"response"`
}

// ConversionConfig is a declarative conversion map (see docs/conversion.md).
type ConversionConfig struct {
	Name   string               `yaml:"name"`
	From   string               `yaml:"from"`
	To     string               `yaml:"to"`
	MTI    map[string]string    `yaml:"mti"`
	Fields map[int]FieldMapping `yaml:"fields"`
	Codes  map[string]string    `yaml:"codes"`
}

// FieldMapping is one field of a conversion map. An empty mapping (`3: {}`) copies the same field.
type FieldMapping struct {
	From     string `yaml:"from"`
	Const    string `yaml:"const"`
	Generate string `yaml:"generate"`
	PIN      bool   `yaml:"pin"`
	Track    bool   `yaml:"track"`
}

// RedisConfig is the Redis server that cluster-wide limits share between nodes (docs/configuration.md). The
// client always honours context deadlines (ContextTimeoutEnabled), so a hung Redis costs a request no more
// than the limits' cluster.timeout.
type RedisConfig struct {
	Address      string   `yaml:"address"`       // host:port; empty: no Redis (cluster-wide limits are then refused)
	PasswordEnv  string   `yaml:"password_env"`  // environment variable holding the password; empty: none
	DB           int      `yaml:"db"`            // database number, default 0
	DialTimeout  Duration `yaml:"dial_timeout"`  // default 1s
	ReadTimeout  Duration `yaml:"read_timeout"`  // default 500ms
	WriteTimeout Duration `yaml:"write_timeout"` // default 500ms
	PoolSize     int      `yaml:"pool_size"`     // connections; default go-redis's (10 per CPU)
}

// JournalConfig is the embedded journal.
type JournalConfig struct {
	Dir               string   `yaml:"dir"`
	Fsync             *bool    `yaml:"fsync"` // default true
	SegmentBytes      int64    `yaml:"segment_bytes"`
	RetentionDays     int      `yaml:"retention_days"`
	MaxUnshippedBytes int64    `yaml:"max_unshipped_bytes"`
	HardLimitBytes    int64    `yaml:"hard_limit_bytes"`
	RetryHorizon      Duration `yaml:"retry_horizon"`
}

// SinkConfig is one ledger sink fed by the shipper: file, postgres, redis or nats, with the shipper's own
// settings (batch_size, linger, ...) inline (docs/ledger.md).
type SinkConfig = ledger.Config

// ReversalsConfig is the store-and-forward queue of reversals and advices (docs/reversals.md).
type ReversalsConfig struct {
	Dir         string   `yaml:"dir"`
	KeyName     string   `yaml:"key"` // DEK in the key store from which the key sealing entries at rest is derived
	MaxAge      Duration `yaml:"max_age"`
	MaxAttempts int      `yaml:"max_attempts"`
	MinBackoff  Duration `yaml:"min_backoff"`
	MaxBackoff  Duration `yaml:"max_backoff"`
	AckCodes    []string `yaml:"ack_codes"`
	// AdviceAckCodes acknowledge an advice (0220/0221); default [00, 94] (docs/reversals.md).
	AdviceAckCodes []string `yaml:"advice_ack_codes"`
}

// AdminConfig is the admin HTTP server.
type AdminConfig struct {
	Listen   string `yaml:"listen"`    // default 127.0.0.1:8080
	TokenEnv string `yaml:"token_env"` // environment variable holding the token of mutating endpoints
}

// retryHorizon is journal.retry_horizon, or the shipper's default of 24h.
func (c *Config) retryHorizon() time.Duration {
	if c.Journal.RetryHorizon > 0 {
		return time.Duration(c.Journal.RetryHorizon)
	}
	return 24 * time.Hour
}

// Duration is a time.Duration written as "5s", "10m".
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 5s, 10m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// ConfigError is a configuration problem with its file and line.
type ConfigError struct {
	File string
	Line int
	Msg  string
}

// Error describes the problem.
func (e *ConfigError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// LoadConfig reads and checks a configuration file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, data)
}

// ParseConfig reads configuration YAML; name is the file name for errors and the base of relative paths.
func ParseConfig(name string, data []byte) (*Config, error) {
	c := &Config{dir: filepath.Dir(name), file: name, lines: map[string]int{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return nil, &ConfigError{File: name, Line: yamlwalk.ErrLine(err), Msg: err.Error()}
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root)
	if len(root.Content) > 0 {
		recordLines(root.Content[0], "", c.lines)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// recordLines maps every key path (a.b[2].c) to its line.
func recordLines(n *yaml.Node, path string, out map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			out[p] = n.Content[i].Line
			recordLines(n.Content[i+1], p, out)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			out[p] = item.Line
			recordLines(item, p, out)
		}
	}
}

// Path resolves a path from the configuration relative to the file's folder.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

func (c *Config) errAt(path, format string, args ...any) error {
	line := c.lines[path]
	if line == 0 {
		line = 1
	}
	return &ConfigError{File: c.file, Line: line, Msg: path + ": " + fmt.Sprintf(format, args...)}
}

// validate checks what YAML decoding cannot: required keys, references between sections, value ranges.
func (c *Config) validate() error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	if c.Node.ID == "" {
		add(c.errAt("node", "node.id is required (it goes into transaction ids)"))
	}
	if len(c.Channels) == 0 {
		add(c.errAt("channels", "at least one channel is required"))
	}
	if d := c.Duplicates; d != nil {
		if err := d.Validate(); err != nil {
			add(c.errAt("duplicates", "%v", err))
		}
		if d.Store == "redis" && d.Key == "" {
			add(c.errAt("duplicates", "duplicates.key (a DEK to seal stored replies) is required with store: redis"))
		}
		if d.Store == "redis" && c.Redis.Address == "" {
			add(c.errAt("duplicates", "duplicates.store: redis needs the redis: section"))
		}
	}
	names := map[string]bool{}
	for i, ch := range c.Channels {
		p := fmt.Sprintf("channels[%d]", i)
		if ch.Name == "" || names[ch.Name] {
			add(c.errAt(p, "each channel needs a unique name"))
		}
		names[ch.Name] = true
		if ch.Listen == "" {
			add(c.errAt(p, "listen address missing"))
		}
		if ch.Spec == "" {
			add(c.errAt(p, "spec missing"))
		}
		if (ch.TLSCert == "") != (ch.TLSKey == "") {
			add(c.errAt(p, "tls_cert and tls_key go together"))
		}
	}
	if c.Routes == "" {
		add(c.errAt("routes", "routes file missing"))
	}
	if c.Terminals == "" {
		add(c.errAt("terminals", "terminals file missing"))
	}
	maps := map[string]bool{}
	for i, m := range c.Conversions {
		if m.Name == "" || maps[m.Name] {
			add(c.errAt(fmt.Sprintf("conversions[%d]", i), "each conversion map needs a unique name"))
		}
		maps[m.Name] = true
	}
	for name, a := range c.Acquirers {
		p := "acquirers." + name
		if a.Spec == "" {
			add(c.errAt(p, "spec missing"))
		}
		if a.ReversalMTI != "" && a.ReversalMTI != "0400" && a.ReversalMTI != "0420" {
			add(c.errAt(p+".reversal_mti", "must be 0400 or 0420"))
		}
		if a.MACField != 0 && a.MACField != 64 && a.MACField != 128 {
			add(c.errAt(p+".mac_field", "must be 64 or 128"))
		}
		for spec, ref := range a.Maps {
			if !maps[ref.Request] || !maps[ref.Response] {
				add(c.errAt(p+".maps."+spec, "names a conversion map that is not defined"))
			}
		}
	}
	if r := c.Redis; r.DB < 0 || r.PoolSize < 0 || r.DialTimeout < 0 || r.ReadTimeout < 0 || r.WriteTimeout < 0 {
		add(c.errAt("redis", "db, pool_size and the timeouts cannot be negative"))
	}
	switch c.HSM.Type {
	case "", "software":
	case "payshield":
		if c.HSM.Address == "" {
			add(c.errAt("hsm.address", "a payshield HSM needs its address"))
		}
	default:
		add(c.errAt("hsm.type", "unknown security module %q (software or payshield)", c.HSM.Type))
	}
	if c.Journal.Dir == "" {
		add(c.errAt("journal", "journal.dir is required"))
	}
	if c.Reversals.Dir == "" || c.Reversals.KeyName == "" {
		add(c.errAt("reversals", "reversals.dir and reversals.key (a DEK in the key store) are required"))
	}
	sinkNames := map[string]bool{}
	for i, s := range c.Sinks {
		p := fmt.Sprintf("sinks[%d]", i)
		if err := s.Validate(c.retryHorizon()); err != nil {
			add(c.errAt(p, "%v", err))
		}
		name := s.Name
		if name == "" {
			name = s.Type
		}
		if sinkNames[name] {
			add(c.errAt(p, "sink name %q used twice: each sink keeps its own checkpoint by name", name))
		}
		sinkNames[name] = true
	}
	return errors.Join(errs...)
}
