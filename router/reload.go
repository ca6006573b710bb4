package router

import "sync/atomic"

// Router serves lookups from the current table and swaps in a new one atomically: a lookup sees either the
// old table or the new one, never a mix.
type Router struct {
	cur atomic.Pointer[Table]
}

// NewRouter serves t until the next Swap or Reload.
func NewRouter(t *Table) *Router {
	r := &Router{}
	r.cur.Store(t)
	return r
}

// Table is the table being served.
func (r *Router) Table() *Table { return r.cur.Load() }

// Lookup routes a message on the current table.
func (r *Router) Lookup(k Key) (Route, error) { return r.cur.Load().Lookup(k) }

// Swap serves t from now on and gives back the table it replaces.
func (r *Router) Swap(t *Table) *Table { return r.cur.Swap(t) }

// Reload loads a routes file and, if it is valid, serves it. On any error the current table stays in
// service. The switch calls it on SIGHUP and from the admin API.
func (r *Router) Reload(path string) (*Table, error) {
	t, err := Load(path)
	if err != nil {
		return nil, err
	}
	r.Swap(t)
	return t, nil
}
