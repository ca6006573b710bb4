// Package admin is the switch's operations HTTP server: health and readiness, Prometheus metrics, link status
// with drain and enable, route reload and explain, terminal status. It binds to localhost by default;
// mutating endpoints (POST) require the bearer token.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Backend is what the admin server reports on and acts upon; the switch implements it.
type Backend interface {
	// Ready reports whether every acquirer has at least one signed-on link, and what is missing if not.
	Ready() (bool, []string)
	// Links lists the bank links with their state.
	Links() any
	// SetLinkEnabled drains (false) or enables (true) a link by its id acquirer/endpoint/conn.
	SetLinkEnabled(id string, enabled bool) error
	// ReloadRoutes reloads the routing tables (and limits) from their files and describes the new table.
	ReloadRoutes() (any, error)
	// ExplainRoute tells where a PAN (with MTI, processing code, channel) would be routed.
	ExplainRoute(pan, mti, proc, channel string) (any, error)
	// Terminal returns a terminal's registration and session (no keys).
	Terminal(id string) (any, bool)
	// Reversals lists pending and dead-letter reversals (no card data).
	Reversals() any
}

// Handler returns the admin HTTP handler. token protects POST endpoints; an empty token refuses them all.
func Handler(b Backend, reg prometheus.Gatherer, token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, missing := b.Ready()
		code := http.StatusOK
		if !ok {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"ready": ok, "missing": missing})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /links", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, b.Links()) })
	mux.HandleFunc("POST /links/{acq}/{ep}/{conn}/drain", guarded(token, func(w http.ResponseWriter, r *http.Request) {
		linkAction(w, b, r, false)
	}))
	mux.HandleFunc("POST /links/{acq}/{ep}/{conn}/enable", guarded(token, func(w http.ResponseWriter, r *http.Request) {
		linkAction(w, b, r, true)
	}))
	mux.HandleFunc("POST /routes/reload", guarded(token, func(w http.ResponseWriter, _ *http.Request) {
		v, err := b.ReloadRoutes()
		if err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, v)
	}))
	mux.HandleFunc("GET /routes/explain", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		v, err := b.ExplainRoute(q.Get("pan"), q.Get("mti"), q.Get("proc"), q.Get("channel"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
	mux.HandleFunc("GET /terminals/{id}", func(w http.ResponseWriter, r *http.Request) {
		v, ok := b.Terminal(r.PathValue("id"))
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown terminal"})
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
	mux.HandleFunc("GET /reversals", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, b.Reversals()) })
	return mux
}

func linkAction(w http.ResponseWriter, b Backend, r *http.Request, enable bool) {
	id := r.PathValue("acq") + "/" + r.PathValue("ep") + "/" + r.PathValue("conn")
	if err := b.SetLinkEnabled(id, enable); err != nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"link": id, "enabled": enable})
}

// guarded requires "Authorization: Bearer TOKEN".
func guarded(token string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if token == "" || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a valid bearer token is required"})
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
