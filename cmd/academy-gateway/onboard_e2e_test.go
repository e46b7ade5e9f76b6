package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/academy-gateway/academy-gateway/onboard"
	"github.com/academy-gateway/academy-gateway/sim"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// End-to-end onboarding (docs/reference.md §4, onboarding paragraph): a browser with a cookie jar walks the
// OAuth2 authorization-code flow through the real gateway, the simulator and a real Redis.

// onboardCookie is the name of the gateway's onboarding cookie (onboard.cookieName).
const onboardCookie = "agw_onboarding"

// onboardBrowser is a user's browser: it keeps cookies and never follows redirects on its own,
// so every hop can be inspected (and tampered with).
type onboardBrowser struct {
	t   *testing.T
	jar *cookiejar.Jar
	c   *http.Client
}

func newOnboardBrowser(t *testing.T) *onboardBrowser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &onboardBrowser{t: t, jar: jar, c: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// get requests u once and returns the response with its body read.
func (b *onboardBrowser) get(u string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequestWithContext(b.t.Context(), http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("GET %s: read body: %v", u, err)
	}
	return resp, string(body)
}

// open opens an onboarding link and checks what docs/reference.md §4 promises of it: a 302 to the Academy's
// consent page with response_type, client_id, redirect_uri, scope and state, and a short-lived
// HttpOnly, SameSite=Lax cookie scoped to the callback path. It returns the consent URL.
func (b *onboardBrowser) open(s *stack, r *replica, link string) *url.URL {
	t := b.t
	t.Helper()
	resp, body := b.get(link)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("onboarding link: status %d, want 302; body: %s", resp.StatusCode, body)
	}
	consent, err := resp.Location()
	if err != nil {
		t.Fatalf("onboarding link: Location: %v", err)
	}
	if got, want := consent.Scheme+"://"+consent.Host+consent.Path, s.simURL+"/authorize"; got != want {
		t.Errorf("redirect goes to %s, want the Academy's %s", got, want)
	}
	q := consent.Query()
	for param, want := range map[string]string{
		"response_type": "code",
		"client_id":     sim.DefaultClientID,
		"redirect_uri":  r.proxyURL + "/oauth/callback",
	} {
		if got := q.Get(param); got != want {
			t.Errorf("authorize URL %s = %q, want %q", param, got, want)
		}
	}
	scopes := strings.Split(q.Get("scope"), " ")
	if !slices.Contains(scopes, "connect") || !slices.Equal(scopes, s.cfg.OAuth.Scopes) {
		t.Errorf("authorize URL scope = %q, want the configured scopes %v space-separated (with connect)", q.Get("scope"), s.cfg.OAuth.Scopes)
	}
	if len(q.Get("state")) < 16 {
		t.Errorf("authorize URL state = %q, want a random value", q.Get("state"))
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("redirect Cache-Control = %q, want no-store", cc)
	}

	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == onboardCookie {
			cookie = c
		}
	}
	switch {
	case cookie == nil:
		t.Fatalf("no %s cookie set; Set-Cookie: %q", onboardCookie, resp.Header.Values("Set-Cookie"))
	case !cookie.HttpOnly:
		t.Errorf("cookie is not HttpOnly: %s", cookie)
	case cookie.SameSite != http.SameSiteLaxMode:
		t.Errorf("cookie SameSite = %v, want Lax: %s", cookie.SameSite, cookie)
	case cookie.Path != "/oauth/callback":
		t.Errorf("cookie Path = %q, want /oauth/callback", cookie.Path)
	case cookie.MaxAge <= 0 || cookie.MaxAge > int(onboard.TicketTTL.Seconds())+1:
		t.Errorf("cookie Max-Age = %d, want short-lived (at most the ticket's %s)", cookie.MaxAge, onboard.TicketTTL)
	case cookie.Value == "":
		t.Errorf("cookie has no value")
	}
	return consent
}

// consent answers the Academy's consent page with extra (sim_user=… or sim_deny=1) and returns
// the callback URL the Academy redirects the browser to.
func (b *onboardBrowser) consent(r *replica, consentURL *url.URL, extra url.Values) *url.URL {
	t := b.t
	t.Helper()
	u := *consentURL
	q := u.Query()
	for k, vs := range extra {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	resp, body := b.get(u.String())
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("consent: status %d, want 302 back to the gateway; body: %s", resp.StatusCode, body)
	}
	cb, err := resp.Location()
	if err != nil {
		t.Fatalf("consent: Location: %v", err)
	}
	if got, want := cb.Scheme+"://"+cb.Host+cb.Path, r.proxyURL+"/oauth/callback"; got != want {
		t.Fatalf("the Academy redirected to %s, want the callback %s", got, want)
	}
	return cb
}

// onboard walks the whole flow for user as the simulator's academyUser ("john", "jane") and
// returns the callback's status and page.
func (b *onboardBrowser) onboard(s *stack, r *replica, user, academyUser string) (int, string) {
	b.t.Helper()
	return b.onboardLink(s, r, authorizeLink(b.t, r, user), academyUser)
}

// onboardLink walks the flow from an issued link as the simulator's academyUser.
func (b *onboardBrowser) onboardLink(s *stack, r *replica, link, academyUser string) (int, string) {
	b.t.Helper()
	cb := b.consent(r, b.open(s, r, link), url.Values{"sim_user": {academyUser}})
	resp, body := b.get(cb.String())
	checkHTMLPage(b.t, resp)
	return resp.StatusCode, body
}

// authorizeLink issues user's onboarding link as `connections authorize` does.
func authorizeLink(t *testing.T, r *replica, user string) string {
	t.Helper()
	return authorizeLinkWith(t, r, user, false)
}

// authorizeLinkWith issues user's link, with newIdentity as `connections authorize --new-identity`.
func authorizeLinkWith(t *testing.T, r *replica, user string, newIdentity bool) string {
	t.Helper()
	link, exp, err := r.app.onboard.Authorize(t.Context(), user, newIdentity)
	if err != nil {
		t.Fatalf("authorize %s: %v", user, err)
	}
	if d := time.Until(exp); d <= 9*time.Minute || d > onboard.TicketTTL+time.Second {
		t.Errorf("link expires in %s, want about %s", d, onboard.TicketTTL)
	}
	return link
}

// checkHTMLPage: onboarding answers are HTML pages for a person, never cached.
func checkHTMLPage(t *testing.T, resp *http.Response) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("%s: Content-Type = %q, want an HTML page", resp.Request.URL.Path, ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s: Cache-Control = %q, want no-store", resp.Request.URL.Path, cc)
	}
}

// wantPage checks status and that the page says why.
func wantPage(t *testing.T, status int, body string, wantStatus int, wantText string) {
	t.Helper()
	if status != wantStatus || !strings.Contains(body, wantText) {
		t.Errorf("page = %d %q, want %d containing %q", status, body, wantStatus, wantText)
	}
}

// wantNotConnected checks that nothing was stored for user.
func wantNotConnected(t *testing.T, r *replica, user string) {
	t.Helper()
	c, err := r.app.store.Connection(context.WithoutCancel(t.Context()), user)
	if !errors.Is(err, tokens.ErrNotConnected) {
		t.Errorf("connection of %s = %+v, %v; want ErrNotConnected (nothing stored)", user, c, err)
	}
}

func mustConnection(t *testing.T, r *replica, user string) tokens.Connection {
	t.Helper()
	c, err := r.app.store.Connection(t.Context(), user)
	if err != nil {
		t.Fatalf("connection of %s: %v", user, err)
	}
	return c
}

// errorCode extracts the code of a gateway JSON error body.
func errorCode(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %q", err, body)
	}
	return e.Error.Code
}

// simStatus sends a GET with a bearer token straight to the simulator.
func simStatus(t *testing.T, s *stack, path, accessToken string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.simURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestOnboardSuccess: the link redirects to the Academy with the right parameters and cookie;
// consenting as John connects the user, the page says so, the connection records John's Academy
// identity and the granted scopes, the cookie is cleared, and an API key of the user works.
func TestOnboardSuccess(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	r := s.start(nil)
	john := s.sim.Users()[0]
	before := s.sim.Stats()

	b := newOnboardBrowser(t)
	status, body := b.onboard(s, r, "alice", "john")
	wantPage(t, status, body, http.StatusOK, "alice")
	wantPage(t, status, body, http.StatusOK, "John Doe")

	c := mustConnection(t, r, "alice")
	if c.Status != tokens.StatusActive || c.AcademyUser != john.Name || c.AcademyID != john.ID {
		t.Errorf("connection: status %q, academy %q (%s); want active, %q (%s)", c.Status, c.AcademyUser, c.AcademyID, john.Name, john.ID)
	}
	if !slices.Equal(c.Scopes, []string{"connect", "read", "write", "delete"}) {
		t.Errorf("connection scopes = %v, want the granted connect, read, write, delete", c.Scopes)
	}
	if c.AccessToken == "" || c.RefreshToken == "" || !c.AccessExpiresAt.After(time.Now()) || !c.RefreshExpiresAt.After(c.AccessExpiresAt) {
		t.Errorf("connection tokens: access %t until %s, refresh %t until %s", c.AccessToken != "", c.AccessExpiresAt, c.RefreshToken != "", c.RefreshExpiresAt)
	}
	if got := s.sim.Stats().TokenExchanges - before.TokenExchanges; got != 1 {
		t.Errorf("simulator saw %d code exchanges, want 1", got)
	}
	cb, _ := url.Parse(r.proxyURL + "/oauth/callback")
	for _, ck := range b.jar.Cookies(cb) {
		if ck.Name == onboardCookie {
			t.Errorf("the callback left the onboarding cookie in the browser: %s", ck)
		}
	}

	_, key, err := r.app.store.IssueKey(t.Context(), "alice", nil, "e2e", "")
	if err != nil {
		t.Fatal(err)
	}
	if status, body := call(t, "GET", r.proxyURL+"/api/v1/movies", key, ""); status != http.StatusOK || !strings.Contains(body, `"movies"`) {
		t.Errorf("GET /api/v1/movies after onboarding = %d %s", status, body)
	}
}

// TestOnboardBadTicket: a link without a ticket, with an unknown one or with an expired one is
// refused with a 400 page that says why; no cookie is set and nothing is stored.
func TestOnboardBadTicket(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	r := s.start(nil)
	rdb := s.redis.Client(t)
	ctx := t.Context()

	tests := []struct {
		name string
		link func(t *testing.T) string
	}{
		{"missing ticket", func(*testing.T) string { return r.proxyURL + onboard.StartPath }},
		{"empty ticket", func(*testing.T) string { return r.proxyURL + onboard.StartPath + "?ticket=" }},
		{"unknown ticket", func(*testing.T) string {
			return r.proxyURL + onboard.StartPath + "?ticket=" + url.QueryEscape("not-a-ticket-0123456789abcdef")
		}},
		{"expired ticket", func(t *testing.T) string {
			ticket, _, err := r.app.store.CreateTicket(ctx, "alice", onboard.TicketTTL)
			if err != nil {
				t.Fatal(err)
			}
			// Let Redis expire it now: an expiry time in the past removes the key at once.
			key := s.cfg.Redis.KeyPrefix + "ticket:" + tokens.HashKey(ticket)
			if ok, err := rdb.PExpireAt(ctx, key, time.Now().Add(-time.Hour)).Result(); err != nil || !ok {
				t.Fatalf("expire %s: %t, %v (wrong key layout?)", key, ok, err)
			}
			if n := rdb.Exists(ctx, key).Val(); n != 0 {
				t.Fatalf("ticket key still exists after its expiry")
			}
			return r.proxyURL + onboard.StartPath + "?ticket=" + url.QueryEscape(ticket)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newOnboardBrowser(t)
			resp, body := b.get(tt.link(t))
			checkHTMLPage(t, resp)
			wantPage(t, resp.StatusCode, body, http.StatusBadRequest, "unknown or has expired")
			if len(resp.Cookies()) != 0 {
				t.Errorf("a refused link set cookies: %v", resp.Header.Values("Set-Cookie"))
			}
			wantNotConnected(t, r, "alice")
		})
	}
	if n := s.sim.Stats().TokenExchanges; n != 0 {
		t.Errorf("simulator saw %d code exchanges, want 0", n)
	}
}

// TestOnboardReusedLink: a link works once. Opening it again, or replaying the callback URL
// (same state and code), is refused with "already used", and the stored connection stays as it
// was.
func TestOnboardReusedLink(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	r := s.start(nil)
	link := authorizeLink(t, r, "alice")

	b := newOnboardBrowser(t)
	cb := b.consent(r, b.open(s, r, link), url.Values{"sim_user": {"john"}})
	resp, body := b.get(cb.String())
	wantPage(t, resp.StatusCode, body, http.StatusOK, "John Doe")
	first := mustConnection(t, r, "alice")
	exchanges := s.sim.Stats().TokenExchanges

	t.Run("link opened again", func(t *testing.T) {
		resp, body := newOnboardBrowser(t).get(link)
		checkHTMLPage(t, resp)
		wantPage(t, resp.StatusCode, body, http.StatusBadRequest, "already used")
	})
	t.Run("callback replayed", func(t *testing.T) {
		for _, br := range []*onboardBrowser{b, newOnboardBrowser(t)} { // same browser and another
			resp, body := br.get(cb.String())
			checkHTMLPage(t, resp)
			wantPage(t, resp.StatusCode, body, http.StatusBadRequest, "already used")
		}
	})
	now := mustConnection(t, r, "alice")
	if now.Version != first.Version || now.AccessToken != first.AccessToken {
		t.Errorf("stored connection changed: version %d → %d", first.Version, now.Version)
	}
	if n := s.sim.Stats().TokenExchanges; n != exchanges {
		t.Errorf("a refused callback exchanged a code (%d → %d exchanges)", exchanges, n)
	}
}

// TestOnboardCallbackRefused: a callback whose state does not lead to an open ticket, or whose
// code the Academy refuses, is answered with a 400 page that says why and stores nothing. Each
// case starts from a real consent, so only the named part is wrong.
func TestOnboardCallbackRefused(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	r := s.start(nil)
	rdb := s.redis.Client(t)

	tests := []struct {
		name string
		// tamper changes the callback query; it may also change the browser or the ticket.
		tamper    func(t *testing.T, q url.Values, b *onboardBrowser, ticket string) *onboardBrowser
		wantText  string
		exchanged int // code exchanges the simulator sees
	}{
		{
			name: "garbage state with the cookie",
			tamper: func(_ *testing.T, q url.Values, b *onboardBrowser, _ string) *onboardBrowser {
				q.Set("state", "garbage")
				return b
			},
			wantText: "unknown or has expired",
		},
		{
			name: "garbage state without the cookie",
			tamper: func(t *testing.T, q url.Values, _ *onboardBrowser, _ string) *onboardBrowser {
				q.Set("state", "garbage")
				return newOnboardBrowser(t)
			},
			wantText: "unknown or has expired",
		},
		{
			name: "no state and no cookie",
			tamper: func(t *testing.T, q url.Values, _ *onboardBrowser, _ string) *onboardBrowser {
				q.Del("state")
				return newOnboardBrowser(t)
			},
			wantText: "no state and no onboarding cookie",
		},
		{
			name: "ticket expired between start and callback",
			tamper: func(t *testing.T, _ url.Values, b *onboardBrowser, ticket string) *onboardBrowser {
				// Expire the ticket in Redis (a past expiry removes the key at once); its state
				// key is left in place, so only the ticket is missing.
				key := s.cfg.Redis.KeyPrefix + "ticket:" + tokens.HashKey(ticket)
				if ok, err := rdb.PExpireAt(t.Context(), key, time.Now().Add(-time.Hour)).Result(); err != nil || !ok {
					t.Fatalf("expire %s: %t, %v (wrong key layout?)", key, ok, err)
				}
				return b
			},
			wantText: "unknown or has expired",
		},
		{
			name: "code refused by the Academy",
			tamper: func(_ *testing.T, q url.Values, b *onboardBrowser, _ string) *onboardBrowser {
				q.Set("code", "bogus")
				return b
			},
			wantText:  "could not be completed",
			exchanged: 0, // the simulator refuses the code: no successful exchange
		},
		{
			name: "code missing",
			tamper: func(_ *testing.T, q url.Values, b *onboardBrowser, _ string) *onboardBrowser {
				q.Del("code")
				return b
			},
			wantText: "no authorization code",
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user := "user" + string(rune('a'+i))
			before := s.sim.Stats()
			b := newOnboardBrowser(t)
			link := authorizeLink(t, r, user)
			cb := b.consent(r, b.open(s, r, link), url.Values{"sim_user": {"john"}})
			if cb.Query().Get("code") == "" || cb.Query().Get("state") == "" {
				t.Fatalf("the Academy's redirect lacks code or state: %s", cb)
			}
			lu, _ := url.Parse(link)
			q := cb.Query()
			b = tt.tamper(t, q, b, lu.Query().Get("ticket"))
			cb.RawQuery = q.Encode()
			resp, body := b.get(cb.String())
			checkHTMLPage(t, resp)
			wantPage(t, resp.StatusCode, body, http.StatusBadRequest, tt.wantText)
			wantNotConnected(t, r, user)
			if got := s.sim.Stats().TokenExchanges - before.TokenExchanges; got != tt.exchanged {
				t.Errorf("simulator saw %d successful code exchanges, want %d", got, tt.exchanged)
			}
		})
	}
}

// TestOnboardAcademyError: when the user denies access the Academy redirects back with its own
// error.message, and with the standard error / error_description; both become a 400 page that
// quotes the Academy, and nothing is stored.
func TestOnboardAcademyError(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	r := s.start(nil)

	t.Run("user denies at the Academy", func(t *testing.T) {
		b := newOnboardBrowser(t)
		cb := b.consent(r, b.open(s, r, authorizeLink(t, r, "alice")), url.Values{"sim_deny": {"1"}})
		if cb.Query().Get("error.message") == "" {
			t.Fatalf("the simulator's denial carries no error.message: %s", cb)
		}
		resp, body := b.get(cb.String())
		checkHTMLPage(t, resp)
		wantPage(t, resp.StatusCode, body, http.StatusBadRequest, "The user denied access.")
		wantNotConnected(t, r, "alice")
	})
	t.Run("standard error parameters", func(t *testing.T) {
		b := newOnboardBrowser(t)
		b.open(s, r, authorizeLink(t, r, "bob")) // sets the cookie; the callback binds through it
		resp, body := b.get(r.proxyURL + "/oauth/callback?error=access_denied&error_description=nope")
		checkHTMLPage(t, resp)
		wantPage(t, resp.StatusCode, body, http.StatusBadRequest, "access_denied")
		wantPage(t, resp.StatusCode, body, http.StatusBadRequest, "nope")
		wantNotConnected(t, r, "bob")
	})
	if n := s.sim.Stats().TokenExchanges; n != 0 {
		t.Errorf("simulator saw %d code exchanges, want 0", n)
	}
}

// TestOnboardWithoutStateEcho: an Academy that does not echo state still completes the flow:
// the callback binds to the ticket through the cookie.
func TestOnboardWithoutStateEcho(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	s.sim.SetEchoState(false)
	r := s.start(nil)

	b := newOnboardBrowser(t)
	cb := b.consent(r, b.open(s, r, authorizeLink(t, r, "alice")), url.Values{"sim_user": {"jane"}})
	if cb.Query().Has("state") || cb.Query().Get("code") == "" {
		t.Fatalf("callback URL %s: want a code and no state", cb)
	}
	resp, body := b.get(cb.String())
	checkHTMLPage(t, resp)
	wantPage(t, resp.StatusCode, body, http.StatusOK, "Jane Black")
	if c := mustConnection(t, r, "alice"); c.Status != tokens.StatusActive || c.AcademyUser != "Jane Black" {
		t.Errorf("connection: status %q, academy user %q; want active, Jane Black", c.Status, c.AcademyUser)
	}
}

// TestOnboardReplacesConnection: onboarding a connected user again stores new tokens (a higher
// version), the old access token stops working at the Academy (revoked by the Academy itself
// for the same account, by the gateway for another account), and the same API key keeps
// working without a refresh.
func TestOnboardReplacesConnection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, again, wantName string
		invalidations         int // invalidate calls the gateway makes
	}{
		{"same Academy account", "john", "John Doe", 0},
		{"another Academy account (--new-identity)", "jane", "Jane Black", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, time.Minute)
			r := s.start(nil)
			key := s.connect(r, "alice", "john", "read")
			if status, body := call(t, "GET", r.proxyURL+"/api/v1/movies", key, ""); status != http.StatusOK {
				t.Fatalf("GET before re-onboarding = %d %s", status, body) // also caches the connection
			}
			old := mustConnection(t, r, "alice")
			before := s.sim.Stats()

			link := authorizeLinkWith(t, r, "alice", tt.again != "john")
			status, body := newOnboardBrowser(t).onboardLink(s, r, link, tt.again)
			wantPage(t, status, body, http.StatusOK, tt.wantName)

			now := mustConnection(t, r, "alice")
			if now.Version <= old.Version || now.AccessToken == old.AccessToken || now.RefreshToken == old.RefreshToken {
				t.Errorf("version %d → %d, new tokens %t; want a higher version with new tokens",
					old.Version, now.Version, now.AccessToken != old.AccessToken)
			}
			if now.AcademyUser != tt.wantName {
				t.Errorf("academy user = %q, want %q", now.AcademyUser, tt.wantName)
			}
			if st := simStatus(t, s, "/movies", old.AccessToken); st != http.StatusUnauthorized {
				t.Errorf("the old access token at the Academy: %d, want 401 (revoked)", st)
			}
			if st := simStatus(t, s, "/movies", now.AccessToken); st != http.StatusOK {
				t.Errorf("the new access token at the Academy: %d, want 200", st)
			}
			if got := s.sim.Stats().Invalidations - before.Invalidations; got != tt.invalidations {
				t.Errorf("gateway made %d invalidate calls, want %d", got, tt.invalidations)
			}

			if status, body := call(t, "GET", r.proxyURL+"/api/v1/movies", key, ""); status != http.StatusOK {
				t.Errorf("GET after re-onboarding with the same key = %d %s", status, body)
			}
			if got := s.sim.Stats().Refreshes - before.Refreshes; got != 0 {
				t.Errorf("gateway refreshed %d times; the new token should have been used as is", got)
			}
			if v := mustConnection(t, r, "alice").Version; v != now.Version {
				t.Errorf("connection version moved %d → %d after one request", now.Version, v)
			}
		})
	}
}

// TestOnboardAfterReauthorizationRequired: once the refresh token is dead, a request gets
// 401 reauthorization_required and the connection shows reauth_required (also through the
// `connections` CLI on the same Redis); onboarding again makes the same key work.
func TestOnboardAfterReauthorizationRequired(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	r := s.start(nil)
	key := s.connect(r, "alice", "john", "read")
	if status, body := call(t, "GET", r.proxyURL+"/api/v1/movies", key, ""); status != http.StatusOK {
		t.Fatalf("GET while connected = %d %s", status, body)
	}

	johnID := s.sim.Users()[0].ID
	s.sim.ExpireRefreshTokens(johnID)
	s.sim.ExpireAccessTokens(johnID)
	status, body := call(t, "GET", r.proxyURL+"/api/v1/movies", key, "")
	if status != http.StatusUnauthorized || errorCode(t, body) != "reauthorization_required" {
		t.Fatalf("GET with dead tokens = %d %s, want 401 reauthorization_required", status, body)
	}
	if c := mustConnection(t, r, "alice"); c.Status != tokens.StatusReauthRequired {
		t.Errorf("stored status = %q, want %q", c.Status, tokens.StatusReauthRequired)
	}
	var shown wireConnection
	out := runCLI(t, stackGetenv(t, s), "connections", "show", "alice", "--json")
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("connections show --json: %v: %s", err, out)
	}
	if shown.User != "alice" || shown.Status != tokens.StatusReauthRequired || shown.AcademyUser != "John Doe" {
		t.Errorf("connections show = %+v, want alice reauth_required John Doe", shown)
	}

	status, body = newOnboardBrowser(t).onboard(s, r, "alice", "john")
	wantPage(t, status, body, http.StatusOK, "John Doe")
	if c := mustConnection(t, r, "alice"); c.Status != tokens.StatusActive {
		t.Errorf("status after re-onboarding = %q, want active", c.Status)
	}
	if status, body := call(t, "GET", r.proxyURL+"/api/v1/movies", key, ""); status != http.StatusOK {
		t.Errorf("GET after re-onboarding = %d %s", status, body)
	}
}

// stackGetenv is the environment a management command needs to work on s's Redis: everything
// through ACADEMY_GATEWAY_* overrides over an empty configuration file.
func stackGetenv(t *testing.T, s *stack) func(string) string {
	t.Helper()
	empty := t.TempDir() + "/empty.yaml"
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return mapEnv(map[string]string{
		"ACADEMY_GATEWAY_CONFIG":                   empty,
		"ACADEMY_GATEWAY_REDIS_URL":                s.redis.URL(),
		"ACADEMY_GATEWAY_OAUTH_CLIENT_ID":          s.cfg.OAuth.ClientID,
		"ACADEMY_GATEWAY_OAUTH_CLIENT_SECRET":      s.cfg.OAuth.ClientSecret,
		"ACADEMY_GATEWAY_SECURITY_ENCRYPTION_KEYS": strings.Join(s.cfg.Security.EncryptionKeys, ","),
		"ACADEMY_GATEWAY_OAUTH_INVALIDATE_URL":     s.simURL + "/invalidate",
	})
}

// runCLI runs one command that must succeed and returns its stdout.
func runCLI(t *testing.T, getenv func(string) string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), args, getenv, &stdout, &stderr); err != nil {
		t.Fatalf("%s: %v\nstderr: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}
