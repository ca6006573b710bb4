package router

// Table is a compiled, validated and immutable routing table. Share it freely between goroutines.
type Table struct {
	version   uint64
	checksum  string
	files     []string
	acquirers []*Acquirer
	byName    map[string]*Acquirer
	rules     []Rule
	bins      *binIndex
	binsOnly  bool
}

// Key is what a message is routed on. Empty fields match only rules without that condition.
type Key struct {
	Channel string // the channel the message came in on
	MTI     string // 4 digits; its first two are the message class
	Proc    string // processing code (field 3), normally 6 digits
	PAN     string // 12 to 19 digits
}

// Route is the result of a lookup. Its pointers point into the table and stay valid as long as it is held.
type Route struct {
	Kind         Kind
	Acquirer     *Acquirer   // KindAcquirer
	Fallbacks    []*Acquirer // KindAcquirer: tried in order when Acquirer cannot take the request
	Handler      string      // KindLocal
	ResponseCode string      // KindDecline
	Rule         *Rule       // the rule that matched
	BIN          *BINRange   // the most specific BIN range holding the PAN, if any
}

// Version is a number that grows with every table loaded in this process.
func (t *Table) Version() uint64 { return t.version }

// Checksum is the hex SHA-256 of the source files' bytes, in the order they were read.
func (t *Table) Checksum() string { return t.checksum }

// ShortChecksum is the first 12 hex digits of Checksum, for logs and the admin API.
func (t *Table) ShortChecksum() string { return t.checksum[:12] }

// Files lists the source files the table was read from (the routes file first).
func (t *Table) Files() []string { return t.files }

// Acquirers lists the acquirers in file order.
func (t *Table) Acquirers() []*Acquirer { return t.acquirers }

// Acquirer gives the acquirer of that name, or nil.
func (t *Table) Acquirer(name string) *Acquirer { return t.byName[name] }

// Rules lists the rules in the order they are tried. Do not modify them.
func (t *Table) Rules() []Rule { return t.rules }

// BINRanges lists the BIN ranges in use (identical ranges that lost on priority are left out), sorted by low
// end. Do not modify them.
func (t *Table) BINRanges() []BINRange { return t.bins.ranges }

// Lookup routes a message: the first rule that matches wins. It does not allocate.
func (t *Table) Lookup(k Key) (Route, error) {
	var pk key
	if err := t.parseKey(k, &pk); err != nil {
		return Route{}, err
	}
	for i := range t.rules {
		if r := &t.rules[i]; r.matches(&pk) {
			return t.route(r, &pk), nil
		}
	}
	return Route{BIN: pk.bin}, ErrNoRoute
}

func (t *Table) parseKey(k Key, pk *key) error {
	pk.channel, pk.proc, pk.class = k.Channel, k.Proc, -1
	if k.MTI != "" {
		if len(k.MTI) != 4 {
			return ErrBadMTI
		}
		v, ok := parseDigits(k.MTI)
		if !ok {
			return ErrBadMTI
		}
		pk.class = int(v / 100)
	}
	if k.PAN != "" {
		v, ok := padPAN(k.PAN)
		if !ok {
			return ErrBadPAN
		}
		pk.pan, pk.hasPAN = v, true
		pk.bin, pk.cls = t.bins.find(v)
	}
	return nil
}

func (t *Table) route(r *Rule, pk *key) Route {
	rt := Route{Kind: r.Kind, Rule: r, BIN: pk.bin, Handler: r.Handler, ResponseCode: r.ResponseCode}
	if r.Kind == KindAcquirer {
		rt.Acquirer, rt.Fallbacks = r.acq, r.fallbacks
		if r.BINTable {
			rt.Acquirer = pk.cls.acq
		}
		if len(r.Fallbacks) == 0 {
			rt.Fallbacks = rt.Acquirer.fallbacks
		}
	}
	return rt
}
