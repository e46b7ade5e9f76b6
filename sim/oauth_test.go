package sim

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestAuthorize(t *testing.T) {
	john := New(Options{}).Users()[0]
	tests := []struct {
		name    string
		params  map[string]string
		opts    Options
		status  int    // 400 for a JSON error; 302 for a redirect
		errMsg  string // wanted error.message on a redirect; "" means a code
		wantMsg string // substring of the JSON error message
	}{
		{name: "bad client_id", params: map[string]string{"client_id": "other"}, status: 400, wantMsg: "client_id"},
		{name: "missing client_id", params: map[string]string{"client_id": ""}, status: 400, wantMsg: "client_id"},
		{name: "missing redirect_uri", params: map[string]string{"redirect_uri": ""}, status: 400, wantMsg: "redirect_uri"},
		{name: "unregistered redirect_uri", params: map[string]string{"redirect_uri": "https://evil.example/cb"}, opts: Options{RedirectURI: testRedirect}, status: 400, wantMsg: "redirect_uri"},
		{name: "redirect_uri with fragment", params: map[string]string{"redirect_uri": testRedirect + "#frag"}, status: 400, wantMsg: "fragment"},
		{name: "relative redirect_uri", params: map[string]string{"redirect_uri": "/cb"}, status: 400, wantMsg: "absolute"},
		{name: "missing connect", params: map[string]string{"scope": "read write", "sim_user": "john"}, status: 302, errMsg: "The connect scope is required."},
		{name: "no scope", params: map[string]string{"scope": "", "sim_user": "john"}, status: 302, errMsg: "The connect scope is required."},
		{name: "unknown scope", params: map[string]string{"scope": "connect admin", "sim_user": "john"}, status: 302, errMsg: `Unknown scope "admin": allowed scopes are connect, read, write and delete.`},
		{name: "bad response_type", params: map[string]string{"response_type": "token", "sim_user": "john"}, status: 302, errMsg: `Unsupported response_type "token": only code is supported.`},
		{name: "deny", params: map[string]string{"sim_deny": "1"}, status: 302, errMsg: "The user denied access."},
		{name: "deny wins over user", params: map[string]string{"sim_deny": "1", "sim_user": "john"}, status: 302, errMsg: "The user denied access."},
		{name: "unknown user", params: map[string]string{"sim_user": "bob"}, status: 400, wantMsg: "Unknown user"},
		{name: "user by first name", params: map[string]string{"sim_user": "jane"}, status: 302},
		{name: "user by id", params: map[string]string{"sim_user": john.ID}, status: 302},
		{name: "comma scopes", params: map[string]string{"scope": "connect,read", "sim_user": "john"}, status: 302},
		{name: "plus scopes", params: map[string]string{"scope": "connect+read+write", "sim_user": "john"}, status: 302},
		{name: "registered redirect_uri", params: map[string]string{"sim_user": "john"}, opts: Options{RedirectURI: testRedirect}, status: 302},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			rec := e.do(http.MethodGet, authorizeURL(tt.params), "", nil)
			if tt.status == http.StatusBadRequest {
				if loc := rec.Header().Get("Location"); loc != "" {
					t.Errorf("redirected to %q; must not redirect on %s", loc, tt.name)
				}
				if msg := wantError(t, rec, http.StatusBadRequest); !strings.Contains(msg, tt.wantMsg) {
					t.Errorf("message = %q, want it to mention %q", msg, tt.wantMsg)
				}
				return
			}
			q := redirectQuery(t, rec)
			if got := q.Get("state"); got != "st-123" {
				t.Errorf("state = %q, want st-123", got)
			}
			if got := q.Get("error.message"); got != tt.errMsg {
				t.Errorf("error.message = %q, want %q", got, tt.errMsg)
			}
			if gotCode := q.Get("code") != ""; gotCode != (tt.errMsg == "") {
				t.Errorf("code present = %v, want %v", gotCode, tt.errMsg == "")
			}
		})
	}
}

func TestAuthorizeAnyRedirectWhenNoneRegistered(t *testing.T) {
	e := newEnv(t, Options{})
	rec := e.do(http.MethodGet, authorizeURL(map[string]string{"redirect_uri": "http://localhost:9/cb?x=1", "sim_user": "john"}), "", nil)
	loc, err := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusFound || err != nil {
		t.Fatalf("status = %d (%v), want 302", rec.Code, err)
	}
	if loc.Host != "localhost:9" || loc.Query().Get("x") != "1" || loc.Query().Get("code") == "" {
		t.Errorf("redirected to %s, want localhost:9/cb keeping x=1 and adding code", loc)
	}
}

func TestConsentPage(t *testing.T) {
	e := newEnv(t, Options{})
	rec := e.do(http.MethodGet, authorizeURL(nil), "", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type = %q, want text/html", ct)
	}
	page := rec.Body.String()
	for _, want := range []string{"John Doe", "Jane Black", "Deny", DefaultClientID + "</b> wants access", "connect read write delete"} {
		if !strings.Contains(page, want) {
			t.Errorf("consent page lacks %q:\n%s", want, page)
		}
	}
	hrefs := regexp.MustCompile(`href="([^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(hrefs) != 3 {
		t.Fatalf("found %d links, want 3 (two users and Deny):\n%s", len(hrefs), page)
	}
	for i, u := range e.s.Users() {
		link := strings.ReplaceAll(hrefs[i][1], "&amp;", "&")
		if !strings.Contains(link, "sim_user="+u.ID) {
			t.Errorf("link %d = %q, want sim_user=%s", i, link, u.ID)
		}
		// Following the link (relative to /authorize) issues a code.
		q := redirectQuery(t, e.do(http.MethodGet, "/authorize"+link, "", nil))
		if q.Get("code") == "" || q.Get("state") != "st-123" {
			t.Errorf("following %q gave %v, want a code and the state", link, q)
		}
	}
	deny := strings.ReplaceAll(hrefs[2][1], "&amp;", "&")
	if q := redirectQuery(t, e.do(http.MethodGet, "/authorize"+deny, "", nil)); q.Get("error.message") != "The user denied access." {
		t.Errorf("following Deny gave %v", q)
	}
}

func TestStateEcho(t *testing.T) {
	for _, echo := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[echo], func(t *testing.T) {
			e := newEnv(t, Options{})
			e.s.SetEchoState(echo)
			for _, params := range []map[string]string{{"sim_user": "john"}, {"sim_deny": "1"}} {
				q := redirectQuery(t, e.do(http.MethodGet, authorizeURL(params), "", nil))
				if got := q.Has("state"); got != echo {
					t.Errorf("%v: state present = %v, want %v (query %v)", params, got, echo, q)
				}
			}
		})
	}
}

func TestTokenErrors(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(e *env, body map[string]string) any // returns the body to send
		status int
	}{
		{"not JSON", func(_ *env, _ map[string]string) any { return "code=x&grant_type=authorization_code" }, 400},
		{"empty body", func(_ *env, _ map[string]string) any { return "" }, 400},
		{"trailing data", func(_ *env, _ map[string]string) any { return `{"code":"x"} {}` }, 400},
		{"grant_type refresh_token", func(_ *env, b map[string]string) any { b["grant_type"] = "refresh_token"; return b }, 501},
		{"grant_type password", func(_ *env, b map[string]string) any { b["grant_type"] = "password"; return b }, 501},
		{"wrong secret", func(_ *env, b map[string]string) any { b["client_secret"] = "nope"; return b }, 401},
		{"wrong client_id", func(_ *env, b map[string]string) any { b["client_id"] = "nope"; return b }, 401},
		{"unknown code", func(_ *env, b map[string]string) any { b["code"] = "code_unknown"; return b }, 400},
		{"redirect_uri mismatch", func(_ *env, b map[string]string) any { b["redirect_uri"] = testRedirect + "/other"; return b }, 400},
		{"missing redirect_uri", func(_ *env, b map[string]string) any { delete(b, "redirect_uri"); return b }, 400},
		{"expired code", func(e *env, b map[string]string) any { e.clock.Advance(CodeMinutes * time.Second); return b }, 400},
		{"code just before expiry", func(e *env, b map[string]string) any {
			e.clock.Advance(CodeMinutes*time.Second - time.Nanosecond)
			return b
		}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Options{Minute: time.Second})
			body := tt.edit(e, tokenBody(e.authorize("john", allScopes)))
			rec := e.do(http.MethodPost, "/token", "", body)
			if tt.status == http.StatusOK {
				if rec.Code != http.StatusOK {
					t.Fatalf("status = %d, want 200; body %s", rec.Code, rec.Body)
				}
				return
			}
			wantError(t, rec, tt.status)
			if n := e.s.Stats().TokenExchanges; n != 0 {
				t.Errorf("TokenExchanges = %d, want 0", n)
			}
		})
	}
}

func TestCodeSingleUse(t *testing.T) {
	e := newEnv(t, Options{})
	code := e.authorize("john", allScopes)
	if rec := e.do(http.MethodPost, "/token", "", tokenBody(code)); rec.Code != http.StatusOK {
		t.Fatalf("first exchange = %d, want 200", rec.Code)
	}
	msg := wantError(t, e.do(http.MethodPost, "/token", "", tokenBody(code)), http.StatusBadRequest)
	if !strings.Contains(msg, "already been used") {
		t.Errorf("message = %q, want it to say the code was used", msg)
	}
	if got, want := e.s.Stats(), (Stats{CodesIssued: 1, TokenExchanges: 1}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestLifetimes(t *testing.T) {
	e := newEnv(t, Options{Minute: time.Second, AccessMinutes: 3, RefreshMinutes: 7})
	tok := e.connect("john", allScopes)
	if tok.ExpiresIn != 3 || tok.RefreshExpiresIn != 7 {
		t.Errorf("expires_in = %d, refresh_expires_in = %d, want 3 and 7", tok.ExpiresIn, tok.RefreshExpiresIn)
	}
	if !strings.HasPrefix(tok.AccessToken, "at_") || !strings.HasPrefix(tok.RefreshToken, "rt_") {
		t.Errorf("tokens %q, %q lack the at_/rt_ prefixes", tok.AccessToken, tok.RefreshToken)
	}
	e.clock.Advance(3*time.Second - time.Nanosecond)
	if got := e.status("/movies", tok.AccessToken); got != http.StatusOK {
		t.Fatalf("just before expiry: status = %d, want 200", got)
	}
	e.clock.Advance(time.Nanosecond)
	rec := e.do(http.MethodGet, "/movies", tok.AccessToken, nil)
	wantError(t, rec, http.StatusUnauthorized)
	if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
		t.Errorf("WWW-Authenticate = %q", got)
	}
	// The refresh token outlives the access token, then expires too.
	e.clock.Advance(4*time.Second - time.Nanosecond)
	rec = e.refresh(tok.RefreshToken)
	if rec.Code != http.StatusOK {
		t.Fatalf("refresh before its expiry = %d, want 200; %s", rec.Code, rec.Body)
	}
	next := decode[tokenResponse](t, rec)
	// The refresh lifetime restarts on each refresh.
	e.clock.Advance(7*time.Second - time.Nanosecond)
	rec = e.refresh(next.RefreshToken)
	if rec.Code != http.StatusOK {
		t.Fatalf("refresh of rotated token before its expiry = %d, want 200; %s", rec.Code, rec.Body)
	}
	last := decode[tokenResponse](t, rec)
	e.clock.Advance(7 * time.Second)
	if msg := wantError(t, e.refresh(last.RefreshToken), http.StatusBadRequest); !strings.Contains(msg, "expired") {
		t.Errorf("message = %q, want it to say expired", msg)
	}
}

func TestRefreshRotation(t *testing.T) {
	e := newEnv(t, Options{Minute: time.Second})
	first := e.connect("john", allScopes)
	rec := e.refresh(first.RefreshToken)
	if rec.Code != http.StatusOK {
		t.Fatalf("refresh = %d, want 200; %s", rec.Code, rec.Body)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	second := decode[tokenResponse](t, rec)
	if second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Fatalf("refresh did not rotate: %+v then %+v", first, second)
	}
	if second.ExpiresIn != DefaultAccessMinutes || second.RefreshExpiresIn != DefaultRefreshMinutes {
		t.Errorf("lifetimes %d/%d, want defaults", second.ExpiresIn, second.RefreshExpiresIn)
	}
	for _, at := range []string{first.AccessToken, second.AccessToken} {
		if got := e.status("/info", at); got != http.StatusOK {
			t.Errorf("GET /info with %s = %d, want 200 (old access token lives until expiry)", at[:6], got)
		}
	}
	msg := wantError(t, e.refresh(first.RefreshToken), http.StatusBadRequest)
	if !strings.Contains(msg, "already been used") {
		t.Errorf("reuse message = %q", msg)
	}
	if rec := e.refresh(second.RefreshToken); rec.Code != http.StatusOK {
		t.Errorf("refresh with the rotated token = %d, want 200", rec.Code)
	}
	want := Stats{CodesIssued: 1, TokenExchanges: 1, Refreshes: 2, RefreshFailures: 1, ReusedRefreshTokens: 1}
	if got := e.s.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestRefreshErrors(t *testing.T) {
	tests := []struct {
		name   string
		body   func(rt string) any
		status int
	}{
		{"not JSON", func(string) any { return "refresh_token=x" }, 400},
		{"wrong grant_type", func(rt string) any { b := refreshBody(rt); b["grant_type"] = "authorization_code"; return b }, 501},
		{"wrong secret", func(rt string) any { b := refreshBody(rt); b["client_secret"] = "x"; return b }, 401},
		{"unknown token", func(string) any { return refreshBody("rt_nope") }, 400},
		{"access token as refresh token", nil, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			tok := e.connect("john", allScopes)
			body := any(refreshBody(tok.AccessToken))
			if tt.body != nil {
				body = tt.body(tok.RefreshToken)
			}
			wantError(t, e.do(http.MethodPost, "/refresh", "", body), tt.status)
			if got := e.s.Stats(); got.RefreshFailures != 1 || got.Refreshes != 0 {
				t.Errorf("Stats = %+v, want one failure and no refresh", got)
			}
			if rec := e.refresh(tok.RefreshToken); rec.Code != http.StatusOK {
				t.Errorf("the refresh token no longer works after a failed call: %d", rec.Code)
			}
		})
	}
}

func TestOneConnectionPerUser(t *testing.T) {
	e := newEnv(t, Options{})
	first := e.connect("john", allScopes)
	jane := e.connect("jane", allScopes)
	second := e.connect("john", "connect read")

	if got := e.status("/info", first.AccessToken); got != http.StatusUnauthorized {
		t.Errorf("first access token after reconnect: %d, want 401", got)
	}
	wantError(t, e.refresh(first.RefreshToken), http.StatusBadRequest)
	if got := e.status("/info", second.AccessToken); got != http.StatusOK {
		t.Errorf("second access token: %d, want 200", got)
	}
	if got := e.status("/info", jane.AccessToken); got != http.StatusOK {
		t.Errorf("Jane's access token after John reconnected: %d, want 200", got)
	}
	// Tokens rotated from the first connection die with it as well.
	e2 := newEnv(t, Options{})
	old := e2.connect("john", allScopes)
	rotated := decode[tokenResponse](t, e2.refresh(old.RefreshToken))
	e2.connect("john", allScopes)
	if got := e2.status("/info", rotated.AccessToken); got != http.StatusUnauthorized {
		t.Errorf("rotated access token after reconnect: %d, want 401", got)
	}
	wantError(t, e2.refresh(rotated.RefreshToken), http.StatusBadRequest)
}

func TestExpireKnobs(t *testing.T) {
	e := newEnv(t, Options{})
	john := e.connect("john", allScopes)
	jane := e.connect("jane", allScopes)
	johnID := e.s.Users()[0].ID

	e.s.ExpireAccessTokens(johnID)
	if got := e.status("/info", john.AccessToken); got != http.StatusUnauthorized {
		t.Errorf("John's expired access token: %d, want 401", got)
	}
	if got := e.status("/info", jane.AccessToken); got != http.StatusOK {
		t.Errorf("Jane's access token: %d, want 200", got)
	}
	rec := e.refresh(john.RefreshToken)
	if rec.Code != http.StatusOK {
		t.Fatalf("refresh after access expiry = %d, want 200", rec.Code)
	}
	john = decode[tokenResponse](t, rec)
	if got := e.status("/info", john.AccessToken); got != http.StatusOK {
		t.Errorf("new access token after ExpireAccessTokens: %d, want 200", got)
	}

	e.s.ExpireRefreshTokens(johnID)
	if msg := wantError(t, e.refresh(john.RefreshToken), http.StatusBadRequest); !strings.Contains(msg, "expired") {
		t.Errorf("message = %q, want expired", msg)
	}
	if rec := e.refresh(jane.RefreshToken); rec.Code != http.StatusOK {
		t.Errorf("Jane's refresh = %d, want 200", rec.Code)
	}
}

func TestFailRefreshes(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.connect("john", allScopes)
	e.s.FailRefreshes(2)
	// A call rejected before the knob is consulted does not use it up.
	wantError(t, e.do(http.MethodPost, "/refresh", "", "bad"), http.StatusBadRequest)
	for range 2 {
		wantError(t, e.refresh(tok.RefreshToken), http.StatusInternalServerError)
	}
	if rec := e.refresh(tok.RefreshToken); rec.Code != http.StatusOK {
		t.Fatalf("refresh after the failures = %d, want 200 (token must survive)", rec.Code)
	}
	if got := e.s.Stats(); got.RefreshFailures != 3 || got.Refreshes != 1 {
		t.Errorf("Stats = %+v, want 3 failures and 1 refresh", got)
	}
}

func TestInvalidate(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.connect("john", "connect")
	rec := e.do(http.MethodGet, "/invalidate", tok.AccessToken, nil)
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"message":"Access invalidated."}` {
		t.Fatalf("GET /invalidate = %d %s", rec.Code, rec.Body)
	}
	if got := e.status("/info", tok.AccessToken); got != http.StatusUnauthorized {
		t.Errorf("access token after invalidate: %d, want 401", got)
	}
	wantError(t, e.refresh(tok.RefreshToken), http.StatusBadRequest)
	wantError(t, e.do(http.MethodGet, "/invalidate", tok.AccessToken, nil), http.StatusUnauthorized)
	if n := e.s.Stats().Invalidations; n != 1 {
		t.Errorf("Invalidations = %d, want 1", n)
	}
	// The user can connect again afterwards.
	if got := e.status("/info", e.connect("john", "connect").AccessToken); got != http.StatusOK {
		t.Errorf("reconnect after invalidate: %d, want 200", got)
	}
}

func TestInfo(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.connect("jane", "write connect")
	rec := e.do(http.MethodGet, "/info", tok.AccessToken, nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /info = %d", rec.Code)
	}
	jane := e.s.Users()[1]
	want := `{"id":"` + jane.ID + `","user":"Jane Black","email":"` + jane.Email + `","scopes":["connect","write"]}`
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Errorf("GET /info = %s, want %s", got, want)
	}
}
