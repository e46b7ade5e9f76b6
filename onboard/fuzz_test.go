package onboard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/academy-gateway/academy-gateway/tokens"
)

// FuzzCallbackParams fuzzes what the Academy (or anyone who can make a browser open a URL)
// puts in the OAuth2 callback: the raw query (state, code, error.message, error[message],
// error / error_description) and the onboarding cookie. Properties: never a panic; the answer
// is a 200 only for a known state with a code and no error; every answer is an HTML page with
// the caller's text escaped (no markup of theirs comes back).
func FuzzCallbackParams(f *testing.F) {
	for _, seed := range []struct{ query, cookie string }{
		{"state=s&code=c", ""},
		{"code=c", "s"},
		{"state=s&error=access_denied&error_description=nope", ""},
		{"state=s&error.message=The+user+denied+access.", ""},
		{"state=s&error%5Bmessage%5D=%3Cscript%3Ealert(1)%3C%2Fscript%3E", ""},
		{"state=unknown&code=c", ""},
		{"state=s&state=t&code=c&code=d", ""},
		{"state=%ZZ&code=c", ""},
		{"state=s;code=c", ""},
		{"", "s"},
		{"state=s&code=c&error=", ""},
	} {
		f.Add(seed.query, seed.cookie)
	}
	redirect, _ := url.Parse("https://gw.example.com/oauth/callback")
	f.Fuzz(func(t *testing.T, query, cookie string) {
		s := New(&fuzzStore{}, &fuzzAcademy{}, Options{RedirectURL: redirect, ClientID: "cid"})
		req := httptest.NewRequest(http.MethodGet, "/oauth/callback", nil)
		req.URL.RawQuery = query
		if c := (&http.Cookie{Name: cookieName, Value: cookie}); cookie != "" && c.Valid() == nil {
			req.AddCookie(c)
		}
		rec := httptest.NewRecorder()
		s.Callback(rec, req)
		q := req.URL.Query()
		state := q.Get("state")
		if state == "" {
			if c, err := req.Cookie(cookieName); err == nil {
				state = c.Value
			}
		}
		wantOK := state == "s" && q.Get("code") != "" && academyError(q) == ""
		if (rec.Code == http.StatusOK) != wantOK {
			t.Fatalf("query %q cookie %q: status %d", query, cookie, rec.Code)
		}
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Fatalf("query %q: status %d, want 200 or 400", query, rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Fatalf("Content-Type %q", ct)
		}
		if strings.Contains(rec.Body.String(), "<script") {
			t.Fatalf("query %q: markup reflected: %s", query, rec.Body)
		}
	})
}

// fuzzStore knows one state, "s", of user alice, and stores whatever connection it is given.
type fuzzStore struct{ Store }

func (fuzzStore) ConsumeTicket(_ context.Context, state string) (tokens.Ticket, error) {
	if state != "s" {
		return tokens.Ticket{}, tokens.ErrTicketInvalid
	}
	return tokens.Ticket{User: "alice"}, nil
}

func (fuzzStore) Connection(context.Context, string) (tokens.Connection, error) {
	return tokens.Connection{}, tokens.ErrNotConnected
}

func (fuzzStore) PutConnection(_ context.Context, c tokens.Connection) (tokens.Connection, error) {
	return c, nil
}

func (fuzzStore) PinIdentity(context.Context, string, string) (string, error) { return "", nil }

// fuzzAcademy accepts every code.
type fuzzAcademy struct{ Academy }

func (fuzzAcademy) Exchange(context.Context, string, string) (tokens.Grant, error) {
	return tokens.Grant{AccessToken: "a", RefreshToken: "r"}, nil
}

func (fuzzAcademy) Info(context.Context, string) (tokens.Info, error) {
	return tokens.Info{ID: "id1", User: "John"}, nil
}

func (fuzzAcademy) Invalidate(context.Context, string) error { return nil }
