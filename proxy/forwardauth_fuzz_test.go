package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/academy-gateway/academy-gateway/httperr"
	"github.com/academy-gateway/academy-gateway/scope"
)

// FuzzForwardAuthHeaders fuzzes what an ingress (or anyone who reaches the auth listener) puts
// in a check: X-Forwarded-Method, X-Forwarded-Uri, x-api-key and X-Gateway-Auth. Properties:
// never a panic; a 200 (with the user's Bearer) only for the gateway token, the one known key, a
// method of the scope table and an origin-form target whose path is clean; every refusal is the
// JSON error, repeated byte for byte in X-Gateway-Error, and never carries the access token.
func FuzzForwardAuthHeaders(f *testing.F) {
	for _, seed := range []struct{ method, uri, key, auth string }{
		{"GET", "/api/v1/movies", testKey, "gw-token"},
		{"GET", "/api/v1/movies?x=1", testKey, "gw-token"},
		{"DELETE", "/api/v1/movies/1", testKey, "gw-token"},
		{"GET", "/api/v1/../admin", testKey, "gw-token"},
		{"GET", "/api/v1/%2e%2e/admin", testKey, "gw-token"},
		{"GET", "http://evil.example/api/v1/movies", testKey, "gw-token"},
		{"GET", "/api/v1/movies#frag", testKey, "gw-token"},
		{"GET", "/api/v1/mo vies", testKey, "gw-token"},
		{"GET", "*", testKey, "gw-token"},
		{"get", "/api/v1/movies", testKey, "gw-token"},
		{"G E T", "/api/v1/movies", testKey, "gw-token"},
		{"OPTIONS", "/api/v1/movies", testKey, "gw-token"},
		{"GET", "/api/v1/info", testKey, "gw-token"},
		{"GET", "/api/v1/movies", "wrong-key", "gw-token"},
		{"GET", "/api/v1/movies", testKey, "gw-tokeN"},
		{"GET", "/api/v1/movies", testKey, ""},
		{"", "", "", ""},
	} {
		f.Add(seed.method, seed.uri, seed.key, seed.auth)
	}
	f.Fuzz(func(t *testing.T, method, uri, key, auth string) {
		fx := newFAFixture(t, func(o *ForwardAuthOptions) { o.Token = "gw-token" })
		req := httptest.NewRequest(http.MethodGet, ForwardAuthPath, nil)
		for name, v := range map[string]string{"X-Forwarded-Method": method, "X-Forwarded-Uri": uri, "X-Api-Key": key, "X-Gateway-Auth": auth} {
			if v != "" {
				req.Header[name] = []string{v}
			}
		}
		rec := httptest.NewRecorder()
		fx.fa.ServeHTTP(rec, req)
		path, _, _ := strings.Cut(uri, "?")
		_, known := scope.ForRequest(method, stripPrefix(path, []string{"/api/v1", "/api/v2"}))
		if rec.Code == http.StatusOK {
			if auth != "gw-token" || key != testKey || !known || !strings.HasPrefix(uri, "/") || !cleanPath(path) ||
				strings.ContainsAny(uri, "# \t\x00") {
				t.Fatalf("allowed method %q uri %q key %q auth %q", method, uri, key, auth)
			}
			if got := rec.Header().Get("Authorization"); got != "Bearer "+fx.tok.conn.AccessToken {
				t.Fatalf("allowed with Authorization %q", got)
			}
			return
		}
		var body httperr.Body
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code == "" {
			t.Fatalf("refusal %d is not the JSON error: %q", rec.Code, rec.Body)
		}
		if got := rec.Header().Get(ErrorHeader); got+"\n" != rec.Body.String() {
			t.Fatalf("%s %q differs from the body %q", ErrorHeader, got, rec.Body)
		}
		if strings.Contains(rec.Body.String(), fx.tok.conn.AccessToken) || rec.Header().Get("Authorization") != "" {
			t.Fatal("a refusal carries the access token")
		}
	})
}
