package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

type faFixture struct {
	fa   *ForwardAuth
	tok  *fakeTokens
	m    *metrics.Metrics
	logs *observer.ObservedLogs
}

func newFAFixture(t *testing.T, mutate func(*ForwardAuthOptions)) *faFixture {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	m := metrics.New(prometheus.NewRegistry(), "test")
	opts := ForwardAuthOptions{StripPrefixes: []string{"/api/v1", "/api/v2"}, Metrics: m, Logger: zap.New(core)}
	if mutate != nil {
		mutate(&opts)
	}
	tok := newFakeTokens()
	return &faFixture{fa: NewForwardAuth(tok, opts), tok: tok, m: m, logs: logs}
}

// ask sends a check for method and uri (either "" leaves its header out) with extra headers.
func (f *faFixture) ask(method, uri string, header http.Header) *httptest.ResponseRecorder {
	return askWith(f.fa, method, uri, header)
}

func askWith(fa *ForwardAuth, method, uri string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, ForwardAuthPath, nil)
	if method != "" {
		req.Header.Set("X-Forwarded-Method", method)
	}
	if uri != "" {
		req.Header.Set("X-Forwarded-Uri", uri)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	fa.ServeHTTP(rec, req)
	return rec
}

func TestForwardAuthAllows(t *testing.T) {
	f := newFAFixture(t, nil)
	h := keyHeader()
	h.Set("X-Request-Id", "req-7")
	h.Set("Authorization", "Bearer caller-supplied")
	rec := f.ask("POST", "/api/v1/movies?page=2", h)

	got := map[string]string{
		"status":        fmt.Sprint(rec.Code),
		"body":          rec.Body.String(),
		"Authorization": rec.Header().Get("Authorization"),
		"X-Request-Id":  rec.Header().Get("X-Request-Id"),
		"Cache-Control": rec.Header().Get("Cache-Control"),
		ErrorHeader:     rec.Header().Get(ErrorHeader),
	}
	want := map[string]string{
		"status":        "200",
		"body":          "",
		"Authorization": "Bearer tok-old",
		"X-Request-Id":  "req-7",
		"Cache-Control": "no-store",
		ErrorHeader:     "",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("allowed answer (-want +got):\n%s", diff)
	}
	if n := testutil.ToFloat64(f.m.ForwardAuthRequests.WithLabelValues("POST", "200", metrics.OutcomeAllowed)); n != 1 {
		t.Errorf("forward_auth_requests_total{POST,200,allowed} = %v, want 1", n)
	}
	if n := testutil.CollectAndCount(f.m.Requests); n != 0 {
		t.Errorf("requests_total has %d series, want none: checks are not proxied requests", n)
	}
}

// TestForwardAuthDecidesAsTheProxy: for every decision the proxy listener makes before it
// forwards, a check describing the same request gets the same status, code and headers.
func TestForwardAuthDecidesAsTheProxy(t *testing.T) {
	cases := []struct {
		name    string
		method  string
		target  string
		header  http.Header
		setup   func(*fakeTokens)
		outcome string
	}{
		{"full key GET", "GET", "/api/v1/movies", keyHeader(), nil, metrics.OutcomeAllowed},
		{"full key DELETE", "DELETE", "/api/v1/movies/1", keyHeader(), nil, metrics.OutcomeAllowed},
		{"v2 prefix", "PUT", "/api/v2/movies/1", keyHeader(), nil, metrics.OutcomeAllowed},
		{"no prefix", "PATCH", "/movies/1", keyHeader(), nil, metrics.OutcomeAllowed},
		{"missing key", "GET", "/api/v1/movies", http.Header{}, nil, metrics.OutcomeInvalidAPIKey},
		{"repeated key", "GET", "/api/v1/movies", http.Header{"X-Api-Key": {testKey, testKey}}, nil, metrics.OutcomeInvalidAPIKey},
		{"unknown key", "GET", "/api/v1/movies", http.Header{"X-Api-Key": {"nope"}}, nil, metrics.OutcomeInvalidAPIKey},
		{"not connected", "GET", "/api/v1/movies", keyHeader(),
			func(f *fakeTokens) { f.connErr = tokens.ErrNotConnected }, metrics.OutcomeNotConnected},
		{"reauth required", "GET", "/api/v1/movies", keyHeader(),
			func(f *fakeTokens) { f.conn.Status = tokens.StatusReauthRequired }, metrics.OutcomeReauthorization},
		{"read-only key DELETE", "DELETE", "/api/v1/movies/1", keyHeader(),
			func(f *fakeTokens) { f.key.Scopes = []string{"read"} }, metrics.OutcomeInsufficientScope},
		{"connection lacks write", "POST", "/api/v1/movies", keyHeader(),
			func(f *fakeTokens) { f.conn.Scopes = []string{"connect", "read"} }, metrics.OutcomeInsufficientScope},
		{"info exempt", "GET", "/api/v1/info", keyHeader(),
			func(f *fakeTokens) { f.conn.Scopes = []string{"connect"}; f.key.Scopes = []string{"write"} }, metrics.OutcomeAllowed},
		{"HEAD info exempt", "HEAD", "/api/v1/info?x=1", keyHeader(),
			func(f *fakeTokens) { f.conn.Scopes = []string{"connect"} }, metrics.OutcomeAllowed},
		{"info trailing slash", "GET", "/api/v1/info/", keyHeader(),
			func(f *fakeTokens) { f.conn.Scopes = []string{"connect"} }, metrics.OutcomeInsufficientScope},
		{"TRACE", "TRACE", "/api/v1/movies", keyHeader(), nil, metrics.OutcomeMethodNotAllowed},
		{"PROPFIND", "PROPFIND", "/api/v1/movies", keyHeader(), nil, metrics.OutcomeMethodNotAllowed},
		{"lower-case get", "get", "/api/v1/movies", keyHeader(), nil, metrics.OutcomeMethodNotAllowed},
		{"dot segment", "GET", "/api/v1/movies/../info", keyHeader(), nil, metrics.OutcomeBadRequest},
		{"encoded dot segment", "GET", "/api/v1/movies/%2e%2e/info", keyHeader(), nil, metrics.OutcomeBadRequest},
		{"encoded slash", "GET", "/api/v1/info%2F..%2Fmovies", keyHeader(), nil, metrics.OutcomeBadRequest},
		{"encoded backslash", "GET", "/api/v1/info%5c..", keyHeader(), nil, metrics.OutcomeBadRequest},
		{"empty segment", "GET", "/api/v1//movies", keyHeader(), nil, metrics.OutcomeBadRequest},
		{"store down", "GET", "/api/v1/movies", keyHeader(),
			func(f *fakeTokens) { f.connErr = tokens.ErrStoreUnavailable }, metrics.OutcomeStoreError},
		{"store down on key lookup", "GET", "/api/v1/movies", keyHeader(),
			func(f *fakeTokens) { f.keyErr = tokens.ErrStoreUnavailable }, metrics.OutcomeStoreError},
	}
	type answer struct {
		Status                                 int
		Code, WWWAuthenticate, Allow, Retry    string
		CacheControl, ContentType, ErrorHeader string
	}
	read := func(rec *httptest.ResponseRecorder, fa bool) answer {
		var body struct{ Error struct{ Code string } }
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		a := answer{Status: rec.Code, Code: body.Error.Code, WWWAuthenticate: rec.Header().Get("WWW-Authenticate"),
			Allow: rec.Header().Get("Allow"), Retry: rec.Header().Get("Retry-After")}
		if rec.Code != 200 || fa {
			a.CacheControl, a.ContentType = rec.Header().Get("Cache-Control"), rec.Header().Get("Content-Type")
		}
		if fa && rec.Code != 200 {
			a.ErrorHeader = rec.Header().Get(ErrorHeader)
		}
		return a
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			px := newFixture(t, nil)
			f := newFAFixture(t, nil)
			for _, tok := range []*fakeTokens{px.tok, f.tok} {
				if tc.setup != nil {
					tc.setup(tok)
				}
			}
			hdr := tc.header.Clone()
			hdr.Set("X-Request-Id", "same-id")
			viaProxy := read(px.do(tc.method, tc.target, nil, hdr), false)
			rec := f.ask(tc.method, tc.target, hdr)
			viaCheck := read(rec, true)

			want := viaProxy
			if want.Status == 200 {
				want.CacheControl = "no-store" // the check's own answer, never the upstream's
			} else {
				// The body once more in a header, for nginx, which drops the body of a check.
				want.ErrorHeader = strings.TrimSpace(rec.Body.String())
			}
			if diff := cmp.Diff(want, viaCheck); diff != "" {
				t.Errorf("forward-auth vs proxy answer (-proxy +forward-auth):\n%s", diff)
			}
			if viaCheck.Status != 200 && (rec.Header().Get("Authorization") != "" || viaCheck.ErrorHeader == "") {
				t.Errorf("refusal carries Authorization %q / %s %q", rec.Header().Get("Authorization"), ErrorHeader, viaCheck.ErrorHeader)
			}
			if viaCheck.Status != 200 {
				assertErrorBody(t, rec, viaCheck.Code)
			}
			if n := testutil.ToFloat64(f.m.ForwardAuthRequests.WithLabelValues(methodLabel(tc.method), itoa(rec.Code), tc.outcome)); n != 1 {
				t.Errorf("forward_auth_requests_total{%s,%d,%s} = %v, want 1", methodLabel(tc.method), rec.Code, tc.outcome, n)
			}
		})
	}
}

// TestForwardAuthRequestHeaders: a check must describe one request, in origin form.
func TestForwardAuthRequestHeaders(t *testing.T) {
	cases := []struct {
		name   string
		header http.Header
	}{
		{"both missing", http.Header{}},
		{"method missing", http.Header{"X-Forwarded-Uri": {"/api/v1/movies"}}},
		{"uri missing", http.Header{"X-Forwarded-Method": {"GET"}}},
		{"method empty", http.Header{"X-Forwarded-Method": {""}, "X-Forwarded-Uri": {"/api/v1/movies"}}},
		{"uri empty", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {""}}},
		{"method repeated", http.Header{"X-Forwarded-Method": {"GET", "DELETE"}, "X-Forwarded-Uri": {"/api/v1/movies"}}},
		{"uri repeated", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/api/v1/info", "/api/v1/movies"}}},
		{"method not a token", http.Header{"X-Forwarded-Method": {"GE T"}, "X-Forwarded-Uri": {"/api/v1/movies"}}},
		{"absolute form", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"http://evil.example/api/v1/movies"}}},
		{"authority form", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"evil.example:443"}}},
		{"asterisk", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"*"}}},
		{"space", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/api/v1/movies /x"}}},
		{"space in query", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/api/v1/movies?a=b c"}}},
		{"tab", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/api/v1/info\t"}}},
		{"fragment", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/api/v1/info#x"}}},
		// net/http refuses this target before the proxy sees it; here cleanPath does.
		{"malformed escape", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/api/v1/movies%zz"}}},
		{"dot segments behind the query mark", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/api/v1/./info?x=/../"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFAFixture(t, nil)
			hdr := tc.header.Clone()
			hdr.Set("X-Api-Key", testKey)
			rec := f.ask("", "", hdr)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status = %d (%s), want 400", rec.Code, rec.Body)
			}
			assertErrorBody(t, rec, "bad_request")
			if rec.Header().Get("Authorization") != "" {
				t.Errorf("a refusal carries Authorization")
			}
			if n := testutil.ToFloat64(f.m.ForwardAuthRequests.WithLabelValues(methodLabel(hdr.Get("X-Forwarded-Method")), "400", metrics.OutcomeBadRequest)); n != 1 {
				t.Errorf("forward_auth_requests_total{…,400,bad_request} = %v, want 1", n)
			}
		})
	}
}

// TestForwardAuthQueryIsNotPath: the query of X-Forwarded-Uri is no part of the checked path,
// and the check's own URL never influences the decision.
func TestForwardAuthQueryIsNotPath(t *testing.T) {
	f := newFAFixture(t, nil)
	f.tok.conn.Scopes = []string{"connect"}
	if rec := f.ask("GET", "/api/v1/info?next=/movies", keyHeader()); rec.Code != 200 {
		t.Errorf("GET /info?next=/movies = %d, want 200 (exempt)", rec.Code)
	}
	req := httptest.NewRequest(http.MethodGet, ForwardAuthPath+"?uri=/api/v1/info", nil)
	req.Header.Set("X-Forwarded-Method", "GET")
	req.Header.Set("X-Forwarded-Uri", "/api/v1/movies")
	req.Header.Set("X-Original-Url", "/api/v1/info")
	req.Header.Set("X-Api-Key", testKey)
	rec := httptest.NewRecorder()
	f.fa.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("GET /movies described with an /info decoy = %d, want 403", rec.Code)
	}
}

func TestForwardAuthToken(t *testing.T) {
	const secret = "ingress-secret-1"
	cases := []struct {
		name       string
		token      string   // configured
		presented  []string // X-Gateway-Auth values
		wantStatus int
		outcome    string
	}{
		{"not configured, none sent", "", nil, 200, metrics.OutcomeAllowed},
		{"not configured, one sent", "", []string{"whatever"}, 200, metrics.OutcomeAllowed},
		{"missing", secret, nil, 403, metrics.OutcomeForbidden},
		{"wrong", secret, []string{"ingress-secret-2"}, 403, metrics.OutcomeForbidden},
		{"prefix", secret, []string{"ingress-secret"}, 403, metrics.OutcomeForbidden},
		{"empty", secret, []string{""}, 403, metrics.OutcomeForbidden},
		{"repeated", secret, []string{secret, secret}, 403, metrics.OutcomeForbidden},
		{"right", secret, []string{secret}, 200, metrics.OutcomeAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFAFixture(t, func(o *ForwardAuthOptions) { o.Token = tc.token })
			hdr := keyHeader()
			for _, p := range tc.presented {
				hdr.Add("X-Gateway-Auth", p)
			}
			rec := f.ask("GET", "/api/v1/movies", hdr)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status = %d (%s), want %d", rec.Code, rec.Body, tc.wantStatus)
			}
			if tc.wantStatus == 403 {
				assertErrorBody(t, rec, "forbidden")
				if rec.Header().Get("Authorization") != "" {
					t.Error("a forbidden check got a Bearer")
				}
			}
			if n := testutil.ToFloat64(f.m.ForwardAuthRequests.WithLabelValues("GET", itoa(tc.wantStatus), tc.outcome)); n != 1 {
				t.Errorf("forward_auth_requests_total{GET,%d,%s} = %v, want 1", tc.wantStatus, tc.outcome, n)
			}
			for _, e := range f.logs.All() {
				line, _ := json.Marshal(e.ContextMap())
				if strings.Contains(string(line), secret) {
					t.Errorf("log line %s contains the forward-auth token", line)
				}
			}
		})
	}
}

// TestForwardAuthOtherPaths: the auth listener answers only ForwardAuthPath; anything else is
// 404 and not a check (never counted, never a Bearer).
func TestForwardAuthOtherPaths(t *testing.T) {
	f := newFAFixture(t, nil)
	for _, target := range []string{"/", "/forward-auth/", "/api/v1/movies", "/metrics"} {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", "/api/v1/movies")
		req.Header.Set("X-Api-Key", testKey)
		rec := httptest.NewRecorder()
		f.fa.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound || rec.Header().Get("Authorization") != "" {
			t.Errorf("%s: %d with Authorization %q, want 404 without", target, rec.Code, rec.Header().Get("Authorization"))
		}
		assertErrorBody(t, rec, "not_found")
	}
	if n := testutil.CollectAndCount(f.m.ForwardAuthRequests); n != 0 {
		t.Errorf("forward_auth_requests_total has %d series, want none", n)
	}
}

// TestForwardAuthNoReactiveRefresh: a check never asks for another token: the gateway does not
// see the upstream's answer (docs/reference.md §4.1).
func TestForwardAuthNoReactiveRefresh(t *testing.T) {
	f := newFAFixture(t, nil)
	for range 3 {
		f.ask("GET", "/api/v1/movies", keyHeader())
	}
	if f.tok.rejected != 0 {
		t.Errorf("Rejected ran %d times, want 0", f.tok.rejected)
	}
}

// TestForwardAuthStaticIdentity: in sidecar mode every check is the static user's.
func TestForwardAuthStaticIdentity(t *testing.T) {
	f := newFAFixture(t, func(o *ForwardAuthOptions) { o.StaticUser = "alice" })
	rec := f.ask("DELETE", "/api/v1/movies/1", nil)
	if rec.Code != 200 || rec.Header().Get("Authorization") != "Bearer tok-old" {
		t.Fatalf("got %d %q, want 200 with the static user's Bearer", rec.Code, rec.Header().Get("Authorization"))
	}
}

// TestForwardAuthAccessLog: one access line per check with the fields of docs/reference.md §8 (no upstream
// duration: there is no upstream) and neither key nor token in any line.
func TestForwardAuthAccessLog(t *testing.T) {
	f := newFAFixture(t, nil)
	f.ask("GET", "/api/v1/movies?token=secret-query", keyHeader())
	f.ask("GET", "/api/v1/movies", http.Header{"X-Api-Key": {"wrong-key-value"}})
	f.ask("", "", keyHeader())
	entries := f.logs.FilterMessage("forward-auth check").All()
	if len(entries) != 3 {
		t.Fatalf("got %d access lines, want 3", len(entries))
	}
	got := entries[0].ContextMap()
	delete(got, "duration")
	want := map[string]any{"request_id": got["request_id"], "user": "alice", "key_id": "key1", "method": "GET",
		"path": "/api/v1/movies", "status": int64(200), "outcome": "allowed", "refreshed": false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("access line (-want +got):\n%s", diff)
	}
	if o := entries[1].ContextMap()["outcome"]; o != metrics.OutcomeInvalidAPIKey {
		t.Errorf("second line outcome = %v", o)
	}
	for _, e := range f.logs.All() {
		line, _ := json.Marshal(e.ContextMap())
		for _, secret := range []string{testKey, "wrong-key-value", "tok-old", "secret-query"} {
			if strings.Contains(e.Message+string(line), secret) {
				t.Errorf("log line %q %s contains %q", e.Message, line, secret)
			}
		}
	}
}

// cancelledTokens fails Token as when the ingress closed the check while it waited for a refresh.
type cancelledTokens struct{ *fakeTokens }

func (cancelledTokens) Token(context.Context, tokens.Connection) (tokens.Connection, bool, error) {
	return tokens.Connection{}, false, fmt.Errorf("wait for refresh of alice: %w", context.Canceled)
}

// TestForwardAuthClientClosedIsNoAllow: a check whose ingress went away is never answered with
// the 200 that a handler writing nothing would give.
func TestForwardAuthClientClosedIsNoAllow(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry(), "test")
	fa := NewForwardAuth(cancelledTokens{newFakeTokens()}, ForwardAuthOptions{Metrics: m})
	rec := askWith(fa, "GET", "/api/v1/movies", keyHeader())
	if rec.Code == http.StatusOK || rec.Header().Get("Authorization") != "" {
		t.Fatalf("got %d with Authorization %q, want a refusal", rec.Code, rec.Header().Get("Authorization"))
	}
	if n := testutil.ToFloat64(m.ForwardAuthRequests.WithLabelValues("GET", "499", metrics.OutcomeUpstreamError)); n != 1 {
		t.Errorf("forward_auth_requests_total{GET,499,upstream_error} = %v, want 1", n)
	}
}
