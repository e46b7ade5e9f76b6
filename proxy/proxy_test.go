package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// fakeTokens is a hand-written Tokens: one key, one user, and a connection whose token can be
// replaced by Rejected.
type fakeTokens struct {
	mu        sync.Mutex
	key       tokens.APIKey
	conn      tokens.Connection
	connErr   error
	keyErr    error
	next      string // token Rejected hands out
	rejectErr error
	rejected  int
}

const testKey = "k-legacy-1"

func newFakeTokens() *fakeTokens {
	return &fakeTokens{
		key: tokens.APIKey{ID: "key1", User: "alice"},
		conn: tokens.Connection{User: "alice", Status: tokens.StatusActive, AccessToken: "tok-old",
			Scopes: []string{"connect", "read", "write", "delete"}},
		next: "tok-new",
	}
}

func (f *fakeTokens) LookupKey(_ context.Context, key string) (tokens.APIKey, error) {
	if f.keyErr != nil {
		return tokens.APIKey{}, f.keyErr
	}
	if key != testKey {
		return tokens.APIKey{}, tokens.ErrUnknownKey
	}
	return f.key, nil
}

func (f *fakeTokens) Connection(context.Context, string) (tokens.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conn, f.connErr
}

func (f *fakeTokens) Token(_ context.Context, c tokens.Connection) (tokens.Connection, bool, error) {
	return c, false, nil
}

func (f *fakeTokens) Rejected(_ context.Context, c tokens.Connection) (tokens.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejected++
	if f.rejectErr != nil {
		return tokens.Connection{}, f.rejectErr
	}
	f.conn.AccessToken = f.next
	return f.conn, nil
}

// seen is what the upstream received.
type seen struct {
	method, path, rawPath, query string
	header                       http.Header
	body                         []byte
}

type upstream struct {
	*httptest.Server
	mu    sync.Mutex
	reqs  []seen
	valid string // the token the upstream accepts; "" accepts any
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{r.Method, r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.Header.Clone(), body})
		valid := u.valid
		u.mu.Unlock()
		if valid != "" && r.Header.Get("Authorization") != "Bearer "+valid {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"message":"Invalid token."}}`)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/teapot") {
			w.Header().Set("X-Upstream", "yes")
			w.WriteHeader(http.StatusTeapot)
			io.WriteString(w, "<html>short and stout</html>")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) last(t *testing.T) seen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("upstream saw no request")
	}
	return u.reqs[len(u.reqs)-1]
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

type fixture struct {
	h    *Handler
	tok  *fakeTokens
	up   *upstream
	m    *metrics.Metrics
	logs *observer.ObservedLogs
}

func newFixture(t *testing.T, mutate func(*Options)) *fixture {
	t.Helper()
	up := newUpstream(t)
	base, _ := url.Parse(up.URL + "/api/v2")
	core, logs := observer.New(zap.DebugLevel)
	m := metrics.New(prometheus.NewRegistry(), "test")
	opts := Options{Upstream: base, StripPrefixes: []string{"/api/v1", "/api/v2"}, Metrics: m,
		Logger: zap.New(core), Transport: NewUpstreamTransport(base, 2*time.Second)}
	if mutate != nil {
		mutate(&opts)
	}
	tok := newFakeTokens()
	return &fixture{h: New(tok, opts), tok: tok, up: up, m: m, logs: logs}
}

func (f *fixture) do(method, target string, body io.Reader, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, body)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

func keyHeader() http.Header { return http.Header{"X-Api-Key": {testKey}} }

func TestForwardsWithInjectedBearer(t *testing.T) {
	f := newFixture(t, nil)
	h := keyHeader()
	h.Set("Authorization", "Bearer caller-supplied")
	h.Set("X-HTTP-Method-Override", "DELETE")
	h.Set("X-Method-Override", "DELETE")
	h.Set("X-HTTP-Method", "DELETE")
	h.Set("X-Original-URL", "/admin")
	h.Set("X-Forwarded-For", "6.6.6.6")
	h.Set("Connection", "Authorization, X-Drop")
	h.Set("X-Drop", "1")
	h.Set("X-Request-Id", "req-123")
	rec := f.do(http.MethodGet, "/api/v1/movies?page=2&q=a%20b", nil, h)

	if rec.Code != http.StatusOK || rec.Body.String() != `{"ok":true}` {
		t.Fatalf("got %d %q, want 200 and the upstream body", rec.Code, rec.Body.String())
	}
	got := f.up.last(t)
	checks := []struct{ name, got, want string }{
		{"method", got.method, "GET"},
		{"path", got.path, "/api/v2/movies"},
		{"query", got.query, "page=2&q=a%20b"},
		{"authorization", got.header.Get("Authorization"), "Bearer tok-old"},
		{"x-api-key", got.header.Get("X-Api-Key"), ""},
		{"method override", got.header.Get("X-Http-Method-Override") + got.header.Get("X-Method-Override") + got.header.Get("X-Http-Method"), ""},
		{"x-original-url", got.header.Get("X-Original-Url"), ""},
		{"hop-by-hop", got.header.Get("X-Drop"), ""},
		{"x-forwarded-for", got.header.Get("X-Forwarded-For"), "192.0.2.1"},
		{"x-forwarded-proto", got.header.Get("X-Forwarded-Proto"), "http"},
		{"x-forwarded-host", got.header.Get("X-Forwarded-Host"), "example.com"},
		{"x-request-id upstream", got.header.Get("X-Request-Id"), "req-123"},
		{"x-request-id response", rec.Header().Get("X-Request-Id"), "req-123"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if n := testutil.ToFloat64(f.m.Requests.WithLabelValues("GET", "200", metrics.OutcomeForwarded)); n != 1 {
		t.Errorf("requests_total{forwarded} = %v, want 1", n)
	}
}

func TestForwardsPathByteForByte(t *testing.T) {
	f := newFixture(t, nil)
	rec := f.do(http.MethodGet, "/api/v1/people/Robert%20Downey%20Jr", nil, keyHeader())
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	got := f.up.last(t)
	if got.path != "/api/v2/people/Robert Downey Jr" {
		t.Errorf("upstream path = %q", got.path)
	}
	if id := f.do(http.MethodGet, "/movies", nil, keyHeader()); id.Code != http.StatusOK || f.up.last(t).path != "/api/v2/movies" {
		t.Errorf("unprefixed path: %d %q", id.Code, f.up.last(t).path)
	}
}

func TestUpstreamAnswersPassThrough(t *testing.T) {
	f := newFixture(t, nil)
	rec := f.do(http.MethodGet, "/api/v1/teapot", nil, keyHeader())
	if rec.Code != http.StatusTeapot || rec.Body.String() != "<html>short and stout</html>" || rec.Header().Get("X-Upstream") != "yes" {
		t.Fatalf("got %d %q %v, want the upstream's 418 unchanged", rec.Code, rec.Body, rec.Header())
	}
}

// TestGatewayErrors covers every error code of docs/reference.md §4 step 6 the proxy produces.
func TestGatewayErrors(t *testing.T) {
	cases := []struct {
		name       string
		method     string
		target     string
		header     http.Header
		setup      func(*fakeTokens)
		upstream   func(*upstream)
		wantStatus int
		wantCode   string
		wantHeader [2]string
		outcome    string
	}{
		{name: "missing key", method: "GET", target: "/api/v1/movies", header: http.Header{},
			wantStatus: 401, wantCode: "invalid_api_key", outcome: metrics.OutcomeInvalidAPIKey},
		{name: "repeated key", method: "GET", target: "/api/v1/movies", header: http.Header{"X-Api-Key": {testKey, testKey}},
			wantStatus: 401, wantCode: "invalid_api_key", outcome: metrics.OutcomeInvalidAPIKey},
		{name: "unknown key", method: "GET", target: "/api/v1/movies", header: http.Header{"X-Api-Key": {"nope"}},
			wantStatus: 401, wantCode: "invalid_api_key", outcome: metrics.OutcomeInvalidAPIKey},
		{name: "not connected", method: "GET", target: "/api/v1/movies", header: keyHeader(),
			setup:      func(f *fakeTokens) { f.connErr = tokens.ErrNotConnected },
			wantStatus: 401, wantCode: "not_connected", outcome: metrics.OutcomeNotConnected},
		{name: "reauth required", method: "GET", target: "/api/v1/movies", header: keyHeader(),
			setup:      func(f *fakeTokens) { f.conn.Status = tokens.StatusReauthRequired },
			wantStatus: 401, wantCode: "reauthorization_required", outcome: metrics.OutcomeReauthorization},
		{name: "key lacks delete", method: "DELETE", target: "/api/v1/movies/1", header: keyHeader(),
			setup:      func(f *fakeTokens) { f.key.Scopes = []string{"read", "write"} },
			wantStatus: 403, wantCode: "insufficient_scope", wantHeader: [2]string{"WWW-Authenticate", `Bearer error="insufficient_scope", scope="delete"`},
			outcome: metrics.OutcomeInsufficientScope},
		{name: "connection lacks write", method: "PATCH", target: "/api/v1/movies/1", header: keyHeader(),
			setup:      func(f *fakeTokens) { f.conn.Scopes = []string{"connect", "read"} },
			wantStatus: 403, wantCode: "insufficient_scope", wantHeader: [2]string{"WWW-Authenticate", `Bearer error="insufficient_scope", scope="write"`},
			outcome: metrics.OutcomeInsufficientScope},
		{name: "info needs no read", method: "GET", target: "/api/v1/info", header: keyHeader(),
			setup:      func(f *fakeTokens) { f.conn.Scopes = []string{"connect"}; f.key.Scopes = []string{"write"} },
			wantStatus: 200, outcome: metrics.OutcomeForwarded},
		{name: "info with trailing slash needs read", method: "GET", target: "/api/v1/info/", header: keyHeader(),
			setup:      func(f *fakeTokens) { f.conn.Scopes = []string{"connect"} },
			wantStatus: 403, wantCode: "insufficient_scope", outcome: metrics.OutcomeInsufficientScope},
		{name: "TRACE", method: "TRACE", target: "/api/v1/movies", header: keyHeader(),
			wantStatus: 405, wantCode: "method_not_allowed", wantHeader: [2]string{"Allow", "GET, HEAD, POST, PUT, PATCH, DELETE"}, outcome: metrics.OutcomeMethodNotAllowed},
		{name: "OPTIONS", method: "OPTIONS", target: "/api/v1/movies", header: keyHeader(),
			wantStatus: 405, wantCode: "method_not_allowed", outcome: metrics.OutcomeMethodNotAllowed},
		{name: "PROPFIND", method: "PROPFIND", target: "/api/v1/movies", header: keyHeader(),
			wantStatus: 405, wantCode: "method_not_allowed", outcome: metrics.OutcomeMethodNotAllowed},
		{name: "dot segment", method: "GET", target: "/api/v1/movies/../info", header: keyHeader(),
			wantStatus: 400, wantCode: "bad_request", outcome: metrics.OutcomeBadRequest},
		{name: "encoded dot segment", method: "GET", target: "/api/v1/movies/%2e%2e/info", header: keyHeader(),
			wantStatus: 400, wantCode: "bad_request", outcome: metrics.OutcomeBadRequest},
		{name: "encoded slash", method: "GET", target: "/api/v1/info%2F..%2Fmovies", header: keyHeader(),
			wantStatus: 400, wantCode: "bad_request", outcome: metrics.OutcomeBadRequest},
		{name: "encoded backslash", method: "GET", target: "/api/v1/info%5c..", header: keyHeader(),
			wantStatus: 400, wantCode: "bad_request", outcome: metrics.OutcomeBadRequest},
		{name: "empty segment", method: "GET", target: "/api/v1//movies", header: keyHeader(),
			wantStatus: 400, wantCode: "bad_request", outcome: metrics.OutcomeBadRequest},
		{name: "store down", method: "GET", target: "/api/v1/movies", header: keyHeader(),
			setup:      func(f *fakeTokens) { f.connErr = tokens.ErrStoreUnavailable },
			wantStatus: 503, wantCode: "token_store_unavailable", wantHeader: [2]string{"Retry-After", "1"}, outcome: metrics.OutcomeStoreError},
		{name: "record fails to decrypt", method: "GET", target: "/api/v1/movies", header: keyHeader(),
			setup:      func(f *fakeTokens) { f.connErr = fmt.Errorf("open connection of alice: %w", tokens.ErrDecrypt) },
			wantStatus: 401, wantCode: "reauthorization_required", outcome: metrics.OutcomeReauthorization},
		{name: "store down on key lookup", method: "GET", target: "/api/v1/movies", header: keyHeader(),
			setup:      func(f *fakeTokens) { f.keyErr = tokens.ErrStoreUnavailable },
			wantStatus: 503, wantCode: "token_store_unavailable", outcome: metrics.OutcomeStoreError},
		{name: "upstream down", method: "GET", target: "/api/v1/movies", header: keyHeader(),
			upstream:   func(u *upstream) { u.Close() },
			wantStatus: 502, wantCode: "upstream_unavailable", outcome: metrics.OutcomeUpstreamError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			if tc.setup != nil {
				tc.setup(f.tok)
			}
			if tc.upstream != nil {
				tc.upstream(f.up)
			}
			rec := f.do(tc.method, tc.target, nil, tc.header)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status = %d (%s), want %d", rec.Code, rec.Body, tc.wantStatus)
			}
			if tc.wantCode != "" {
				assertErrorBody(t, rec, tc.wantCode)
				if f.up.count() != 0 && tc.upstream == nil {
					t.Errorf("upstream saw %d requests, want none", f.up.count())
				}
			}
			if h := tc.wantHeader; h[0] != "" && rec.Header().Get(h[0]) != h[1] {
				t.Errorf("%s = %q, want %q", h[0], rec.Header().Get(h[0]), h[1])
			}
			if n := testutil.ToFloat64(f.m.Requests.WithLabelValues(methodLabel(tc.method), itoa(rec.Code), tc.outcome)); n != 1 {
				t.Errorf("requests_total{%s,%d,%s} = %v, want 1", tc.method, rec.Code, tc.outcome, n)
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func assertErrorBody(t *testing.T, rec *httptest.ResponseRecorder, code string) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body struct {
		Error struct{ Code, Message, RequestID string } `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", rec.Body, err)
	}
	var raw map[string]map[string]string
	_ = json.Unmarshal(rec.Body.Bytes(), &raw)
	if body.Error.Code != code || body.Error.Message == "" || raw["error"]["request_id"] == "" ||
		raw["error"]["request_id"] != rec.Header().Get("X-Request-Id") {
		t.Errorf("error body = %s, want code %q with a message and the request id", rec.Body, code)
	}
}

func TestUpstreamTimeout(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	base, _ := url.Parse(slow.URL)
	for _, tc := range []struct {
		name   string
		method string
	}{
		{"on the caller's goroutine", http.MethodGet},
		{"through net/http's transport", http.MethodPost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) { o.Upstream = base; o.Transport = NewUpstreamTransport(base, 50*time.Millisecond) })
			rec := f.do(tc.method, "/movies", nil, keyHeader())
			if rec.Code != http.StatusGatewayTimeout {
				t.Fatalf("status = %d, want 504", rec.Code)
			}
			assertErrorBody(t, rec, "upstream_timeout")
		})
	}
}

// TestReactiveRefreshReplaysBody: the upstream refuses the old token; the proxy gets a new one
// and sends the same request, body included, once more.
func TestReactiveRefreshReplaysBody(t *testing.T) {
	f := newFixture(t, nil)
	f.up.valid = "tok-new"
	body := `{"name":"Alien"}`
	rec := f.do(http.MethodPost, "/api/v1/movies", strings.NewReader(body), keyHeader())
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d (%s), want 200 after the replay", rec.Code, rec.Body)
	}
	if f.up.count() != 2 || f.tok.rejected != 1 {
		t.Fatalf("upstream saw %d requests and Rejected ran %d times, want 2 and 1", f.up.count(), f.tok.rejected)
	}
	got := f.up.last(t)
	if string(got.body) != body || got.header.Get("Authorization") != "Bearer tok-new" {
		t.Errorf("replay = %q with %q, want the same body with the new token", got.body, got.header.Get("Authorization"))
	}
}

func TestReactiveRefreshSkipsLargeBodies(t *testing.T) {
	f := newFixture(t, nil)
	f.up.valid = "tok-new"
	big := bytes.Repeat([]byte("x"), MaxReplayBody+1)
	rec := f.do(http.MethodPost, "/api/v1/movies", bytes.NewReader(big), keyHeader())
	if rec.Code != http.StatusUnauthorized || f.up.count() != 1 || f.tok.rejected != 0 {
		t.Fatalf("got %d with %d upstream requests, %d refreshes; want the upstream 401, 1, 0", rec.Code, f.up.count(), f.tok.rejected)
	}
	if n := len(f.up.last(t).body); n != len(big) {
		t.Errorf("upstream got %d body bytes, want %d (streamed whole)", n, len(big))
	}
}

func TestReactiveRefreshReauthRequired(t *testing.T) {
	f := newFixture(t, nil)
	f.up.valid = "tok-new"
	f.tok.rejectErr = tokens.ErrReauthRequired
	rec := f.do(http.MethodGet, "/api/v1/movies", nil, keyHeader())
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401", rec.Code)
	}
	assertErrorBody(t, rec, "reauthorization_required")
}

// TestReactiveRefreshFailureIsNotTheAcademys401: when the refresh an upstream 401 calls for cannot
// complete, the caller gets the gateway's 502/504 with Retry-After, never the Academy's 401 (which a
// legacy caller reads as "my key is wrong"); only a dead grant is 401 reauthorization_required.
func TestReactiveRefreshFailureIsNotTheAcademys401(t *testing.T) {
	for _, tt := range refreshFailures {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.up.valid = "tok-new"
			f.tok.rejectErr = tt.err
			rec := f.do(http.MethodGet, "/api/v1/movies", nil, keyHeader())
			if rec.Code != tt.wantStatus || !strings.Contains(rec.Body.String(), `"code":"`+tt.wantCode+`"`) {
				t.Fatalf("got %d %q, want %d %s", rec.Code, rec.Body, tt.wantStatus, tt.wantCode)
			}
			if strings.Contains(rec.Body.String(), "Invalid token.") {
				t.Error("the Academy's 401 body reached the caller")
			}
			if got := rec.Header().Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetry)
			}
			if n := testutil.ToFloat64(f.m.Requests.WithLabelValues("GET", itoa(tt.wantStatus), tt.wantOutcome)); n != 1 {
				t.Errorf("requests_total{%d,%s} = %v, want 1", tt.wantStatus, tt.wantOutcome, n)
			}
		})
	}
}

func TestStaticIdentity(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.StaticUser = "alice" })
	rec := f.do(http.MethodDelete, "/api/v1/movies/1", nil, http.Header{"X-Api-Key": {"anything"}})
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d (%s), want 200", rec.Code, rec.Body)
	}
	if got := f.up.last(t); got.header.Get("X-Api-Key") != "" || got.header.Get("Authorization") != "Bearer tok-old" {
		t.Errorf("upstream headers = %v", got.header)
	}
}

// TestAccessLogHasNoSecrets: one access line per request with the fields of docs/reference.md §8 and
// neither the key nor a token.
func TestAccessLogHasNoSecrets(t *testing.T) {
	f := newFixture(t, nil)
	f.up.valid = "tok-new"
	f.do(http.MethodGet, "/api/v1/movies?token=secret-query", nil, keyHeader())
	f.do(http.MethodGet, "/api/v1/movies", nil, http.Header{"X-Api-Key": {"wrong-key-value"}})
	entries := f.logs.FilterMessage("request").All()
	if len(entries) != 2 {
		t.Fatalf("got %d access lines, want 2", len(entries))
	}
	fields := entries[0].ContextMap()
	for _, k := range []string{"request_id", "user", "key_id", "method", "path", "status", "outcome", "duration", "upstream_duration", "refreshed"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("access line lacks %q: %v", k, fields)
		}
	}
	if fields["refreshed"] != true || fields["user"] != "alice" || fields["status"] != int64(200) {
		t.Errorf("access line = %v", fields)
	}
	for _, e := range f.logs.All() {
		line, _ := json.Marshal(e.ContextMap())
		for _, secret := range []string{testKey, "wrong-key-value", "tok-old", "tok-new", "secret-query"} {
			if strings.Contains(e.Message+string(line), secret) {
				t.Errorf("log line %q %s contains %q", e.Message, line, secret)
			}
		}
	}
}
