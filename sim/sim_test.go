package sim

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestUsers(t *testing.T) {
	s := New(Options{})
	users := s.Users()
	var names []string
	hex12 := regexp.MustCompile(`^[0-9a-f]{12}$`)
	for _, u := range users {
		names = append(names, u.Name)
		if !hex12.MatchString(u.ID) {
			t.Errorf("user %q has ID %q, want 12 hex characters", u.Name, u.ID)
		}
	}
	if want := []string{"John Doe", "Jane Black"}; !slices.Equal(names, want) {
		t.Errorf("user names = %v, want %v", names, want)
	}
	users[0].Name = "changed"
	if s.Users()[0].Name != "John Doe" {
		t.Error("Users returned the Server's own slice")
	}
}

func TestBearerAuth(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.connect("john", allScopes)
	tests := []struct {
		header string
		status int
	}{
		{"Bearer " + tok.AccessToken, 200},
		{"bearer " + tok.AccessToken, 200},
		{"BEARER  " + tok.AccessToken + " ", 200},
		{"", 401},
		{"Bearer", 401},
		{"Bearer ", 401},
		{"Basic " + tok.AccessToken, 401},
		{"Bearer " + tok.RefreshToken, 401},
		{"Bearer at_unknown", 401},
		{"Bearer " + tok.AccessToken + " extra", 401},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodGet, "/info", nil)
		req.Header.Set("Authorization", tt.header)
		rec := httptest.NewRecorder()
		e.s.ServeHTTP(rec, req)
		if rec.Code != tt.status {
			t.Errorf("Authorization %q: status = %d, want %d", tt.header, rec.Code, tt.status)
		}
		if tt.status == http.StatusUnauthorized {
			wantError(t, rec, http.StatusUnauthorized)
			if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
				t.Errorf("Authorization %q: WWW-Authenticate = %q", tt.header, got)
			}
		}
	}
}

func TestScopes(t *testing.T) {
	e := newEnv(t, Options{})
	connectOnly := e.connect("john", "connect").AccessToken
	readOnly := e.connect("jane", "connect read").AccessToken
	tests := []struct {
		token, method, path string
		status              int
		msg                 string
	}{
		{connectOnly, http.MethodGet, "/info", 200, ""},
		{connectOnly, http.MethodGet, "/movies", 403, "Insufficient scope: read required."},
		{connectOnly, http.MethodHead, "/genres", 403, ""},
		{readOnly, http.MethodGet, "/movies", 200, ""},
		{readOnly, http.MethodHead, "/movies", 200, ""},
		{readOnly, http.MethodGet, "/about", 200, ""},
		{readOnly, http.MethodPost, "/movies", 403, "Insufficient scope: write required."},
		{readOnly, http.MethodPut, "/movies/4e8255bbb161", 403, "Insufficient scope: write required."},
		{readOnly, http.MethodPatch, "/movies/4e8255bbb161", 403, "Insufficient scope: write required."},
		{readOnly, http.MethodDelete, "/movies/4e8255bbb161", 403, "Insufficient scope: delete required."},
		{readOnly, http.MethodOptions, "/movies", 405, ""},
		{readOnly, http.MethodPost, "/info", 405, ""},
		{readOnly, http.MethodGet, "/nowhere", 404, ""},
		{readOnly, http.MethodGet, "/movies/", 404, ""},
		{"", http.MethodGet, "/token", 405, ""},
	}
	for _, tt := range tests {
		rec := e.do(tt.method, tt.path, tt.token, `{"name":"x"}`)
		if rec.Code != tt.status {
			t.Errorf("%s %s: status = %d, want %d; %s", tt.method, tt.path, rec.Code, tt.status, rec.Body)
			continue
		}
		if tt.status >= 400 && tt.method != http.MethodHead {
			if msg := wantError(t, rec, tt.status); tt.msg != "" && msg != tt.msg {
				t.Errorf("%s %s: message = %q, want %q", tt.method, tt.path, msg, tt.msg)
			}
		}
		if tt.status == http.StatusForbidden && !strings.Contains(rec.Header().Get("WWW-Authenticate"), "insufficient_scope") {
			t.Errorf("%s %s: WWW-Authenticate = %q", tt.method, tt.path, rec.Header().Get("WWW-Authenticate"))
		}
		if tt.status == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tt.method, tt.path)
		}
	}
}

func TestDelayRespectsContext(t *testing.T) {
	e := newEnv(t, Options{})
	e.s.SetDelay(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/genres", nil)
	rec := httptest.NewRecorder()
	e.s.ServeHTTP(rec, req) // returns at once because ctx is done
	if rec.Body.Len() != 0 || rec.Flushed {
		t.Errorf("a cancelled delayed request wrote %d %q", rec.Code, rec.Body)
	}
	const d = 20 * time.Millisecond
	e.s.SetDelay(d)
	begin := time.Now()
	wantError(t, e.do(http.MethodGet, "/genres", "", nil), http.StatusUnauthorized)
	if took := time.Since(begin); took < d {
		t.Errorf("delayed response took %v, want at least %v", took, d)
	}
	e.s.SetDelay(0)
	wantError(t, e.do(http.MethodGet, "/genres", "", nil), http.StatusUnauthorized)
}

// TestConcurrentRefresh races 50 refreshes of one token: exactly one wins.
func TestConcurrentRefresh(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.connect("john", allScopes)
	const n = 50
	codes := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			codes[i] = e.refresh(tok.RefreshToken).Code
		})
	}
	close(start)
	wg.Wait()
	var ok, bad int
	for _, c := range codes {
		switch c {
		case http.StatusOK:
			ok++
		case http.StatusBadRequest:
			bad++
		}
	}
	if ok != 1 || bad != n-1 {
		t.Errorf("got %d successes and %d 400s, want 1 and %d", ok, bad, n-1)
	}
	if got := e.s.Stats(); got.Refreshes != 1 || got.ReusedRefreshTokens != n-1 {
		t.Errorf("Stats = %+v, want 1 refresh and %d reuses", got, n-1)
	}
}

// TestOverHTTP runs the flow through a real listener, with 200 concurrent
// resource calls from two users, as the gateway's integration tests do.
func TestOverHTTP(t *testing.T) {
	s := New(Options{RedirectURI: testRedirect})
	ts := httptest.NewServer(s)
	defer ts.Close()
	client := ts.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	connect := func(user string) string {
		resp, err := client.Get(ts.URL + authorizeURL(map[string]string{"sim_user": user}))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || resp.StatusCode != http.StatusFound {
			t.Fatalf("authorize: %d %v", resp.StatusCode, err)
		}
		body, _ := json.Marshal(tokenBody(loc.Query().Get("code")))
		resp, err = client.Post(ts.URL+"/token", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok tokenResponse
		if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("token: %d %v", resp.StatusCode, err)
		}
		return tok.AccessToken
	}
	tokens := []string{connect("john"), connect("jane")}

	const n = 200
	errs := make(chan string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			method, path, body := http.MethodGet, "/movies?page=2", ""
			switch i % 4 {
			case 1:
				path = "/info"
			case 2:
				method, path, body = http.MethodPost, "/movies", `{"name":"Film"}`
			}
			req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tokens[(i/4)%2])
			resp, err := client.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			resp.Body.Close()
			if resp.StatusCode >= 300 && !(method == http.MethodPost && resp.StatusCode == http.StatusBadRequest) {
				errs <- method + " " + path + ": " + resp.Status
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
