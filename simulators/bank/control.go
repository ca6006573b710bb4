package bank

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ControlHandler serves the control endpoint: GET /faults returns the faults in force as JSON; PUT /faults
// changes them (the keys given replace those in force, the others stay); POST /keychange with
// {"key":"zpk"} or {"key":"zak"} sends a key change to every connection (see ChangeKey); GET /metrics is
// Prometheus.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Faults())
	})
	mux.HandleFunc("PUT /faults", func(w http.ResponseWriter, r *http.Request) {
		f := s.Faults()
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		if err := s.SetFaults(f); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, f)
	})
	mux.HandleFunc("POST /keychange", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Key string `json:"key"` // zpk or zak
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		keyType, ok := map[string]string{"zpk": KeyTypePIN, "zak": KeyTypeMAC}[req.Key]
		if !ok {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `key must be "zpk" or "zak"`})
			return
		}
		stan, n, err := s.ChangeKey(keyType)
		if err != nil {
			writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"stan": stan, "connections": n})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
