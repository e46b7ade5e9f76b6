package onboard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/academy-gateway/academy-gateway/tokens"
)

func TestAcademyError(t *testing.T) {
	tests := []struct {
		query string
		want  string
	}{
		{"code=abc", ""},
		{"error.message=The+user+denied+access.", "The user denied access."},
		{"error%5Bmessage%5D=Denied", "Denied"},
		{"error=access_denied", "access_denied"},
		{"error=access_denied&error_description=nope", "access_denied: nope"},
		{"error.message=first&error=second", "first"}, // the Academy's own form wins
	}
	for _, tt := range tests {
		q, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		if got := academyError(q); got != tt.want {
			t.Errorf("academyError(%q) = %q, want %q", tt.query, got, tt.want)
		}
	}
}

// fakeStore hands out one ticket and binds one state; nothing else is called by these tests.
type fakeStore struct {
	Store
	user string
}

func (f *fakeStore) CreateTicketFor(_ context.Context, tk tokens.Ticket, ttl time.Duration) (string, time.Time, error) {
	f.user = tk.User
	return "tkt-123", time.Now().Add(ttl), nil
}

func (f *fakeStore) BindState(_ context.Context, ticket string) (string, time.Time, error) {
	if ticket != "tkt-123" {
		return "", time.Time{}, tokens.ErrTicketInvalid
	}
	return "st-456", time.Now().Add(TicketTTL), nil
}

func newService(t *testing.T) (*Service, *fakeStore) {
	t.Helper()
	redirect, _ := url.Parse("https://gw.example.com/oauth/callback")
	st := &fakeStore{}
	return New(st, nil, Options{AuthorizeURL: "https://academy.example.com/api/v2/authorize", RedirectURL: redirect,
		ClientID: "cid", Scopes: []string{"connect", "read"}}), st
}

func TestAuthorizeLink(t *testing.T) {
	s, st := newService(t)
	link, exp, err := s.Authorize(context.Background(), "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	if link != "https://gw.example.com/oauth/start?ticket=tkt-123" || st.user != "alice" || time.Until(exp) < 9*time.Minute {
		t.Errorf("Authorize = %q, %v for %q", link, exp, st.user)
	}
	for _, bad := range []string{"", "a{b}", "a b", strings.Repeat("x", 129)} {
		if _, _, err := s.Authorize(context.Background(), bad, false); err == nil {
			t.Errorf("Authorize(%q) succeeded, want an error", bad)
		}
	}
}

func TestStartRedirectsToAcademy(t *testing.T) {
	s, _ := newService(t)
	rec := httptest.NewRecorder()
	s.Start(rec, httptest.NewRequest(http.MethodGet, "/oauth/start?ticket=tkt-123", nil))
	if rec.Code != http.StatusFound {
		t.Fatalf("status = %d, want 302", rec.Code)
	}
	loc, err := url.Parse(rec.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	want := map[string]string{"response_type": "code", "client_id": "cid", "redirect_uri": "https://gw.example.com/oauth/callback",
		"scope": "connect read", "state": "st-456"}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	cookie := rec.Result().Cookies()
	if len(cookie) != 1 || cookie[0].Value != "st-456" || !cookie[0].HttpOnly || !cookie[0].Secure ||
		cookie[0].SameSite != http.SameSiteLaxMode || cookie[0].Path != "/oauth/callback" {
		t.Errorf("cookie = %+v, want the state, HttpOnly, Secure, SameSite=Lax, Path=/oauth/callback", cookie)
	}

	rec = httptest.NewRecorder()
	s.Start(rec, httptest.NewRequest(http.MethodGet, "/oauth/start?ticket=nope", nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "expired") || len(rec.Result().Cookies()) != 0 {
		t.Errorf("unknown ticket: %d %q, want a 400 page and no cookie", rec.Code, rec.Body)
	}
}

// failingStore and failingAcademy make the callback fail at a chosen step.
type failingStore struct {
	Store
	bindErr, consumeErr, connErr error
}

func (f *failingStore) Connection(context.Context, string) (tokens.Connection, error) {
	return tokens.Connection{}, f.connErr
}

func (f *failingStore) BindState(context.Context, string) (string, time.Time, error) {
	return "", time.Time{}, f.bindErr
}

func (f *failingStore) ConsumeTicket(context.Context, string) (tokens.Ticket, error) {
	if f.consumeErr != nil {
		return tokens.Ticket{}, f.consumeErr
	}
	return tokens.Ticket{User: "alice"}, nil
}

type failingAcademy struct {
	Academy
	exchangeErr error
	infoErr     error
	invalidated int
}

func (f *failingAcademy) Info(context.Context, string) (tokens.Info, error) {
	if f.infoErr != nil {
		return tokens.Info{}, f.infoErr
	}
	return tokens.Info{ID: "1", User: "John Doe"}, nil
}

func (f *failingAcademy) Invalidate(context.Context, string) error {
	f.invalidated++
	return nil
}

func (f *failingAcademy) Exchange(context.Context, string, string) (tokens.Grant, error) {
	return tokens.Grant{}, f.exchangeErr
}

// TestFailurePages checks that a user is told to ask for a new link only when that helps, and to
// try again (503, Retry-After) when the gateway is in trouble.
func TestFailurePages(t *testing.T) {
	tests := []struct {
		name       string
		path       string
		store      *failingStore
		exchange   error
		wantStatus int
		wantText   string
		// wantInvalidated: the new tokens were issued by then and must be invalidated.
		wantInvalidated int
		info            error // of the /info call after the exchange
	}{
		{"start: ticket used", "/oauth/start?ticket=t", &failingStore{bindErr: tokens.ErrTicketUsed}, nil, 400, "already used", 0, nil},
		{"start: store down", "/oauth/start?ticket=t", &failingStore{bindErr: tokens.ErrStoreUnavailable}, nil, 503, "try again", 0, nil},
		{"callback: no state", "/oauth/callback?code=c", &failingStore{}, nil, 400, "open the onboarding link again", 0, nil},
		{"callback: store down", "/oauth/callback?state=s&code=c", &failingStore{consumeErr: tokens.ErrStoreUnavailable}, nil, 503, "try again", 0, nil},
		{"callback: denied", "/oauth/callback?state=s&error=access_denied", &failingStore{}, nil, 400, "did not grant access", 0, nil},
		{"callback: no code", "/oauth/callback?state=s", &failingStore{}, nil, 400, "no authorization code", 0, nil},
		{"callback: code refused", "/oauth/callback?state=s&code=c", &failingStore{},
			&tokens.APIError{Op: "token", Status: 400, Message: "bad code"}, 400, "new onboarding link", 0, nil},
		{"callback: client secret wrong", "/oauth/callback?state=s&code=c", &failingStore{},
			&tokens.APIError{Op: "token", Status: 401, Message: "bad client"}, 503, "misconfigured", 0, nil},
		{"callback: earlier connection unreadable (store down)", "/oauth/callback?state=s&code=c",
			&failingStore{connErr: tokens.ErrStoreUnavailable}, nil, 503, "try again", 1, nil},
		{"callback: ticket expired", "/oauth/callback?state=s&code=c", &failingStore{consumeErr: tokens.ErrTicketInvalid}, nil, 400, "has expired", 0, nil},
		{"callback: ticket reused", "/oauth/callback?state=s&code=c", &failingStore{consumeErr: tokens.ErrTicketUsed}, nil, 400, "already used", 0, nil},
		{"callback: identity lookup failed", "/oauth/callback?state=s&code=c", &failingStore{}, nil, 400, "new onboarding link", 1,
			&tokens.APIError{Op: "info", Status: 500, Message: "boom"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			redirect, _ := url.Parse("https://gw.example.com/oauth/callback")
			ac := &failingAcademy{exchangeErr: tt.exchange, infoErr: tt.info}
			s := New(tt.store, ac, Options{RedirectURL: redirect, ClientID: "cid"})
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			if strings.HasPrefix(tt.path, "/oauth/start") {
				s.Start(rec, req)
			} else {
				s.Callback(rec, req)
			}
			if rec.Code != tt.wantStatus || !strings.Contains(rec.Body.String(), tt.wantText) {
				t.Errorf("got %d %q, want %d with %q", rec.Code, rec.Body, tt.wantStatus, tt.wantText)
			}
			if retry := rec.Header().Get("Retry-After"); (tt.wantStatus == 503) != (retry != "") {
				t.Errorf("Retry-After = %q with status %d", retry, rec.Code)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Errorf("Content-Type = %q, want an HTML page", ct)
			}
			if ac.invalidated != tt.wantInvalidated {
				t.Errorf("%d invalidate calls, want %d", ac.invalidated, tt.wantInvalidated)
			}
		})
	}
}
