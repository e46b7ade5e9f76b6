package sim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// testRedirect is the redirect URI the tests register.
const testRedirect = "https://app.example.com/oauth/cb"

// allScopes asks for every scope.
const allScopes = "connect read write delete"

// fakeClock is a manually advanced clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, time.January, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a Server under test with its fake clock.
type env struct {
	t     testing.TB
	s     *Server
	clock *fakeClock
}

// newEnv builds a Server from opts with a fake clock (unless opts.Now is set).
func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	clock := newFakeClock()
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	return &env{t: t, s: New(opts), clock: clock}
}

// do sends one request straight to the Server. body may be nil, a string
// (sent as is) or any value (sent as JSON).
func (e *env) do(method, target, token string, body any) *httptest.ResponseRecorder {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatalf("marshal body: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, target, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	e.s.ServeHTTP(rec, req)
	return rec
}

// authorizeURL builds an /authorize URL with valid defaults; extra entries
// override them, and an empty value removes the parameter.
func authorizeURL(extra map[string]string) string {
	q := url.Values{
		"response_type": {"code"},
		"client_id":     {DefaultClientID},
		"redirect_uri":  {testRedirect},
		"scope":         {allScopes},
		"state":         {"st-123"},
	}
	for k, v := range extra {
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
	}
	return "/authorize?" + q.Encode()
}

// redirectQuery checks rec is a 302 to the test redirect URI and returns its query.
func redirectQuery(t testing.TB, rec *httptest.ResponseRecorder) url.Values {
	t.Helper()
	if rec.Code != http.StatusFound {
		t.Fatalf("status = %d, want 302; body %s", rec.Code, rec.Body)
	}
	loc, err := url.Parse(rec.Header().Get("Location"))
	if err != nil {
		t.Fatalf("parse Location: %v", err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirect {
		t.Fatalf("redirected to %q, want %q", got, testRedirect)
	}
	return loc.Query()
}

// authorize runs /authorize for user with the given scopes and returns the code.
func (e *env) authorize(user, scope string) string {
	e.t.Helper()
	q := redirectQuery(e.t, e.do(http.MethodGet, authorizeURL(map[string]string{"scope": scope, "sim_user": user}), "", nil))
	code := q.Get("code")
	if !strings.HasPrefix(code, "code_") {
		e.t.Fatalf("code = %q, want code_ prefix (query %v)", code, q)
	}
	return code
}

// tokenBody is a valid /token body for code.
func tokenBody(code string) map[string]string {
	return map[string]string{
		"code":          code,
		"client_id":     DefaultClientID,
		"client_secret": DefaultClientSecret,
		"grant_type":    "authorization_code",
		"redirect_uri":  testRedirect,
	}
}

// refreshBody is a valid /refresh body for rt.
func refreshBody(rt string) map[string]string {
	return map[string]string{
		"client_id":     DefaultClientID,
		"client_secret": DefaultClientSecret,
		"grant_type":    "refresh_token",
		"refresh_token": rt,
	}
}

// connect runs the whole flow for user and returns the tokens.
func (e *env) connect(user, scope string) tokenResponse {
	e.t.Helper()
	rec := e.do(http.MethodPost, "/token", "", tokenBody(e.authorize(user, scope)))
	if rec.Code != http.StatusOK {
		e.t.Fatalf("POST /token = %d, want 200; body %s", rec.Code, rec.Body)
	}
	return decode[tokenResponse](e.t, rec)
}

// refresh calls /refresh with rt.
func (e *env) refresh(rt string) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.do(http.MethodPost, "/refresh", "", refreshBody(rt))
}

// status calls GET path with token and returns the status.
func (e *env) status(path, token string) int {
	e.t.Helper()
	return e.do(http.MethodGet, path, token, nil).Code
}

// decode parses rec's JSON body into T.
func decode[T any](t testing.TB, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, rec.Body, err)
	}
	return v
}

// wantError checks rec is a JSON error with the given status and returns its message.
func wantError(t testing.TB, rec *httptest.ResponseRecorder, status int) string {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body struct {
		Error *struct {
			Message string `json:"message"`
			Code    int    `json:"code"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Error == nil {
		t.Fatalf("error body %q is not {\"error\":{\"message\",\"code\"}}: %v", rec.Body, err)
	}
	if body.Error.Code != status || body.Error.Message == "" {
		t.Errorf("error = %+v, want code %d and a message", *body.Error, status)
	}
	return body.Error.Message
}
