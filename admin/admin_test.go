package admin

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type fakeBackend struct {
	ready    bool
	enabled  map[string]bool
	reloaded int
}

func (f *fakeBackend) Ready() (bool, []string) {
	if f.ready {
		return true, nil
	}
	return false, []string{"ccb: no signed-on link"}
}
func (f *fakeBackend) Links() any { return []string{"ccb/a/0"} }
func (f *fakeBackend) SetLinkEnabled(id string, on bool) error {
	if id != "ccb/a/0" {
		return errors.New("no such link")
	}
	f.enabled[id] = on
	return nil
}
func (f *fakeBackend) ReloadRoutes() (any, error) {
	f.reloaded++
	return map[string]int{"version": 2}, nil
}
func (f *fakeBackend) ExplainRoute(pan, _, _, _ string) (any, error) {
	return map[string]string{"acquirer": "ccb", "pan": pan[:6]}, nil
}
func (f *fakeBackend) Terminal(id string) (any, bool) {
	return map[string]string{"id": id}, id == "22003600"
}
func (f *fakeBackend) Reversals() any { return []string{} }

func do(t *testing.T, h http.Handler, method, path, token string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestAdminEndpoints(t *testing.T) {
	b := &fakeBackend{enabled: map[string]bool{}}
	h := Handler(b, prometheus.NewRegistry(), "s3cret")
	cases := []struct {
		method, path, token string
		code                int
		body                string
	}{
		{"GET", "/healthz", "", 200, `"ok"`},
		{"GET", "/readyz", "", 503, "no signed-on link"},
		{"GET", "/metrics", "", 200, ""},
		{"GET", "/links", "", 200, "ccb/a/0"},
		{"POST", "/links/ccb/a/0/drain", "", 401, "bearer token"},
		{"POST", "/links/ccb/a/0/drain", "wrong", 401, "bearer token"},
		{"POST", "/links/ccb/a/0/drain", "s3cret", 200, `"enabled": false`},
		{"POST", "/links/ccb/b/9/enable", "s3cret", 404, "no such link"},
		{"POST", "/routes/reload", "s3cret", 200, `"version": 2`},
		{"GET", "/routes/explain?pan=6212341234567890", "", 200, `"acquirer": "ccb"`},
		{"GET", "/terminals/22003600", "", 200, "22003600"},
		{"GET", "/terminals/nope", "", 404, "unknown terminal"},
	}
	for _, c := range cases {
		w := do(t, h, c.method, c.path, c.token)
		if w.Code != c.code || !strings.Contains(w.Body.String(), c.body) {
			t.Errorf("%s %s: %d %s, want %d containing %q", c.method, c.path, w.Code, w.Body.String(), c.code, c.body)
		}
	}
	if b.enabled["ccb/a/0"] || b.reloaded != 1 {
		t.Fatalf("actions not applied: %+v reloads %d", b.enabled, b.reloaded)
	}
	b.ready = true
	if w := do(t, h, "GET", "/readyz", ""); w.Code != 200 {
		t.Fatalf("ready: %d", w.Code)
	}
	if w := do(t, Handler(b, prometheus.NewRegistry(), ""), "POST", "/routes/reload", ""); w.Code != 401 {
		t.Fatalf("no token configured must refuse mutations: %d", w.Code)
	}
}
