package tokens_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/academy-gateway/academy-gateway/tokens"
)

// academyTestNow is the injected clock of the Academy client tests.
var academyTestNow = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

// academyCall is one request the fake Academy received.
type academyCall struct {
	Method        string
	Path          string
	ContentType   string
	Authorization string
	Body          map[string]any
}

// academyFake is an httptest server standing in for the Academy's token, refresh, info and
// invalidate endpoints. Its handler answers every request; it records what it received.
type academyFake struct {
	srv *httptest.Server

	mu    sync.Mutex
	calls []academyCall
	hits  atomic.Int32
}

func newAcademyFake(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, hit int)) *academyFake {
	t.Helper()
	fa := &academyFake{}
	fa.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hit := int(fa.hits.Add(1))
		call := academyCall{
			Method:        r.Method,
			Path:          r.URL.Path,
			ContentType:   r.Header.Get("Content-Type"),
			Authorization: r.Header.Get("Authorization"),
		}
		if data, _ := io.ReadAll(r.Body); len(data) > 0 {
			if err := json.Unmarshal(data, &call.Body); err != nil {
				t.Errorf("request body %q is not a JSON object: %v", data, err)
			}
		}
		fa.mu.Lock()
		fa.calls = append(fa.calls, call)
		fa.mu.Unlock()
		handler(w, r, hit)
	}))
	t.Cleanup(fa.srv.Close)
	return fa
}

func (fa *academyFake) recorded() []academyCall {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	return append([]academyCall(nil), fa.calls...)
}

// client returns an Academy client of fa with its own transport, so no test reuses another's
// connections.
func (fa *academyFake) client(t *testing.T, unit time.Duration) *tokens.Academy {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return tokens.NewAcademy(&http.Client{Transport: tr, Timeout: 10 * time.Second}, tokens.AcademyConfig{
		ClientID:      "client-id",
		ClientSecret:  "client-secret",
		TokenURL:      fa.srv.URL + "/token",
		RefreshURL:    fa.srv.URL + "/refresh",
		InfoURL:       fa.srv.URL + "/info",
		InvalidateURL: fa.srv.URL + "/invalidate",
		Unit:          unit,
		Retries:       2,
		Backoff:       time.Millisecond,
		Now:           func() time.Time { return academyTestNow },
	})
}

func academyWriteJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// academyHijackAndClose drops the connection after the request was read, without an answer.
func academyHijackAndClose(t *testing.T, w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	_ = conn.Close()
}

const academyTestGrant = `{"access_token":"new-at","expires_in":5,"refresh_token":"new-rt","refresh_expires_in":30}`

func TestAcademyGrantRequests(t *testing.T) {
	tests := []struct {
		name string
		call func(context.Context, *tokens.Academy) (tokens.Grant, error)
		want academyCall
	}{
		{
			name: "Exchange",
			call: func(ctx context.Context, a *tokens.Academy) (tokens.Grant, error) {
				return a.Exchange(ctx, "the-code", "https://gw.test/oauth/callback")
			},
			want: academyCall{
				Method:      http.MethodPost,
				Path:        "/token",
				ContentType: "application/json",
				Body: map[string]any{
					"code":          "the-code",
					"client_id":     "client-id",
					"client_secret": "client-secret",
					"grant_type":    "authorization_code",
					"redirect_uri":  "https://gw.test/oauth/callback",
				},
			},
		},
		{
			name: "Refresh",
			call: func(ctx context.Context, a *tokens.Academy) (tokens.Grant, error) {
				return a.Refresh(ctx, "old-rt")
			},
			want: academyCall{
				Method:      http.MethodPost,
				Path:        "/refresh",
				ContentType: "application/json",
				Body: map[string]any{
					"client_id":     "client-id",
					"client_secret": "client-secret",
					"grant_type":    "refresh_token",
					"refresh_token": "old-rt",
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa := newAcademyFake(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				academyWriteJSON(w, http.StatusOK, academyTestGrant)
			})
			got, err := tt.call(t.Context(), fa.client(t, time.Minute))
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if diff := cmp.Diff([]academyCall{tt.want}, fa.recorded()); diff != "" {
				t.Errorf("requests mismatch (-want +got):\n%s", diff)
			}
			want := tokens.Grant{
				AccessToken:      "new-at",
				RefreshToken:     "new-rt",
				IssuedAt:         academyTestNow,
				AccessExpiresAt:  academyTestNow.Add(5 * time.Minute),
				RefreshExpiresAt: academyTestNow.Add(30 * time.Minute),
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Grant mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAcademyGrantExpiry(t *testing.T) {
	tests := []struct {
		name        string
		unit        time.Duration
		answer      string
		wantAccess  time.Time
		wantRefresh time.Time
	}{
		{
			name:        "minutes",
			unit:        time.Minute,
			answer:      `{"access_token":"at","expires_in":5,"refresh_token":"rt","refresh_expires_in":1440}`,
			wantAccess:  academyTestNow.Add(5 * time.Minute),
			wantRefresh: academyTestNow.Add(24 * time.Hour),
		},
		{
			name:       "refresh_expires_in absent",
			unit:       time.Minute,
			answer:     `{"access_token":"at","expires_in":5,"refresh_token":"rt"}`,
			wantAccess: academyTestNow.Add(5 * time.Minute),
		},
		{
			name:       "refresh_expires_in zero",
			unit:       time.Minute,
			answer:     `{"access_token":"at","expires_in":60,"refresh_token":"rt","refresh_expires_in":0}`,
			wantAccess: academyTestNow.Add(time.Hour),
		},
		{
			name:        "seconds (sim --minute 1s)",
			unit:        time.Second,
			answer:      `{"access_token":"at","expires_in":5,"refresh_token":"rt","refresh_expires_in":10}`,
			wantAccess:  academyTestNow.Add(5 * time.Second),
			wantRefresh: academyTestNow.Add(10 * time.Second),
		},
		{
			name:        "zero unit means minutes",
			unit:        0,
			answer:      `{"access_token":"at","expires_in":2,"refresh_token":"rt","refresh_expires_in":3}`,
			wantAccess:  academyTestNow.Add(2 * time.Minute),
			wantRefresh: academyTestNow.Add(3 * time.Minute),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa := newAcademyFake(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				academyWriteJSON(w, http.StatusOK, tt.answer)
			})
			g, err := fa.client(t, tt.unit).Refresh(t.Context(), "rt0")
			if err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			got := [3]time.Time{g.IssuedAt, g.AccessExpiresAt, g.RefreshExpiresAt}
			want := [3]time.Time{academyTestNow, tt.wantAccess, tt.wantRefresh}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("[issued access refresh] mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAcademyGrantIncompleteAnswer(t *testing.T) {
	tests := []struct {
		name   string
		answer string
	}{
		{name: "missing refresh_token", answer: `{"access_token":"at","expires_in":5,"refresh_expires_in":30}`},
		{name: "missing access_token", answer: `{"expires_in":5,"refresh_token":"rt"}`},
		{name: "missing expires_in", answer: `{"access_token":"at","refresh_token":"rt"}`},
		{name: "negative expires_in", answer: `{"access_token":"at","expires_in":-1,"refresh_token":"rt"}`},
		{name: "not JSON", answer: `<html>ok</html>`},
		{name: "expires_in as a string", answer: `{"access_token":"at","expires_in":"5","refresh_token":"rt"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa := newAcademyFake(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				academyWriteJSON(w, http.StatusOK, tt.answer)
			})
			g, err := fa.client(t, time.Minute).Exchange(t.Context(), "code", "https://gw.test/cb")
			if err == nil {
				t.Fatalf("Exchange = %+v, nil; want an error", g)
			}
			if errors.Is(err, tokens.ErrInvalidGrant) {
				t.Errorf("Exchange error %v is ErrInvalidGrant; a malformed answer must not cost the connection", err)
			}
			if diff := cmp.Diff(tokens.Grant{}, g); diff != "" {
				t.Errorf("Exchange returned a grant with its error (-want +got):\n%s", diff)
			}
			if got := fa.hits.Load(); got != 1 {
				t.Errorf("server hits = %d, want 1", got)
			}
		})
	}
}

func TestAcademyErrorAnswers(t *testing.T) {
	tests := []struct {
		name             string
		call             func(context.Context, *tokens.Academy) error
		status           int
		body             string
		wantInvalidGrant bool
		want             tokens.APIError
	}{
		{
			name:             "refresh 400 is invalid_grant",
			call:             academyRefresh,
			status:           http.StatusBadRequest,
			body:             `{"error":{"message":"Refresh token expired"}}`,
			wantInvalidGrant: true,
			want:             tokens.APIError{Op: "refresh", Status: 400, Message: "Refresh token expired"},
		},
		{
			name:             "exchange 400 is invalid_grant",
			call:             academyExchange,
			status:           http.StatusBadRequest,
			body:             `{"error":"invalid_grant","error_description":"code already used"}`,
			wantInvalidGrant: true,
			want:             tokens.APIError{Op: "token", Status: 400, Message: "invalid_grant: code already used"},
		},
		{
			name:   "refresh 401 (bad client credentials) is not invalid_grant",
			call:   academyRefresh,
			status: http.StatusUnauthorized,
			body:   `{"error":{"message":"Invalid client"}}`,
			want:   tokens.APIError{Op: "refresh", Status: 401, Message: "Invalid client"},
		},
		{
			name:   "refresh 403 is not invalid_grant",
			call:   academyRefresh,
			status: http.StatusForbidden,
			body:   `{}`,
			want:   tokens.APIError{Op: "refresh", Status: 403, Message: "(no error message)"},
		},
		{
			name:   "info 400 is not invalid_grant",
			call:   academyInfo,
			status: http.StatusBadRequest,
			body:   `{"error":{"message":"bad"}}`,
			want:   tokens.APIError{Op: "info", Status: 400, Message: "bad"},
		},
		{
			name:   "invalidate 401",
			call:   academyInvalidate,
			status: http.StatusUnauthorized,
			body:   `not json`,
			want:   tokens.APIError{Op: "invalidate", Status: 401, Message: "(no error message)"},
		},
		{
			name:   "redirect is an error",
			call:   academyRefresh,
			status: http.StatusNotModified,
			want:   tokens.APIError{Op: "refresh", Status: 304, Message: "(no error message)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa := newAcademyFake(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				academyWriteJSON(w, tt.status, tt.body)
			})
			err := tt.call(t.Context(), fa.client(t, time.Minute))
			if got := errors.Is(err, tokens.ErrInvalidGrant); got != tt.wantInvalidGrant {
				t.Errorf("errors.Is(%v, ErrInvalidGrant) = %v, want %v", err, got, tt.wantInvalidGrant)
			}
			var ae *tokens.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is not an *APIError", err)
			}
			if diff := cmp.Diff(tt.want, *ae); diff != "" {
				t.Errorf("APIError mismatch (-want +got):\n%s", diff)
			}
			if got := fa.hits.Load(); got != 1 {
				t.Errorf("server hits = %d, want 1 (4xx is never retried)", got)
			}
		})
	}
}

func academyExchange(ctx context.Context, a *tokens.Academy) error {
	_, err := a.Exchange(ctx, "code", "https://gw.test/cb")
	return err
}

func academyRefresh(ctx context.Context, a *tokens.Academy) error {
	_, err := a.Refresh(ctx, "rt")
	return err
}

func academyInfo(ctx context.Context, a *tokens.Academy) error {
	_, err := a.Info(ctx, "at")
	return err
}

func academyInvalidate(ctx context.Context, a *tokens.Academy) error {
	return a.Invalidate(ctx, "at")
}

func TestAcademyRetries(t *testing.T) {
	// failing answers with a 5xx carrying the attempt number, so the last error can be told apart.
	failing := func(status int) func(*testing.T, http.ResponseWriter, int) {
		return func(_ *testing.T, w http.ResponseWriter, hit int) {
			academyWriteJSON(w, status, fmt.Sprintf(`{"error":{"message":"attempt %d"}}`, hit))
		}
	}
	dropped := func(t *testing.T, w http.ResponseWriter, _ int) { academyHijackAndClose(t, w) }
	tests := []struct {
		name     string
		call     func(context.Context, *tokens.Academy) error
		answer   func(t *testing.T, w http.ResponseWriter, hit int)
		wantHits int32
		wantErr  *tokens.APIError // nil: a transport error
	}{
		{
			name: "info 503 retried", call: academyInfo, answer: failing(503), wantHits: 3,
			wantErr: &tokens.APIError{Op: "info", Status: 503, Message: "attempt 3"},
		},
		{
			name: "invalidate 500 retried", call: academyInvalidate, answer: failing(500), wantHits: 3,
			wantErr: &tokens.APIError{Op: "invalidate", Status: 500, Message: "attempt 3"},
		},
		{
			name: "info 404 not retried", call: academyInfo, answer: failing(404), wantHits: 1,
			wantErr: &tokens.APIError{Op: "info", Status: 404, Message: "attempt 1"},
		},
		{
			name: "info 429 not retried", call: academyInfo, answer: failing(429), wantHits: 1,
			wantErr: &tokens.APIError{Op: "info", Status: 429, Message: "attempt 1"},
		},
		// A grant request that reached the Academy may have spent the code or refresh token:
		// it is never sent again, whatever came back.
		{
			name: "refresh 502 not replayed", call: academyRefresh, answer: failing(502), wantHits: 1,
			wantErr: &tokens.APIError{Op: "refresh", Status: 502, Message: "attempt 1"},
		},
		{
			name: "exchange 500 not replayed", call: academyExchange, answer: failing(500), wantHits: 1,
			wantErr: &tokens.APIError{Op: "token", Status: 500, Message: "attempt 1"},
		},
		{name: "refresh dropped after the request was written not replayed", call: academyRefresh, answer: dropped, wantHits: 1},
		{name: "exchange dropped after the request was written not replayed", call: academyExchange, answer: dropped, wantHits: 1},
		{name: "info dropped retried", call: academyInfo, answer: dropped, wantHits: 3},
		{name: "invalidate dropped retried", call: academyInvalidate, answer: dropped, wantHits: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa := newAcademyFake(t, func(w http.ResponseWriter, _ *http.Request, hit int) {
				tt.answer(t, w, hit)
			})
			err := tt.call(t.Context(), fa.client(t, time.Minute))
			if err == nil {
				t.Fatal("call succeeded, want an error")
			}
			if got := fa.hits.Load(); got != tt.wantHits {
				t.Errorf("server hits = %d, want %d", got, tt.wantHits)
			}
			var ae *tokens.APIError
			switch {
			case tt.wantErr == nil && errors.As(err, &ae):
				t.Errorf("error = %v, want a transport error", err)
			case tt.wantErr != nil && !errors.As(err, &ae):
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			case tt.wantErr != nil:
				if diff := cmp.Diff(*tt.wantErr, *ae); diff != "" {
					t.Errorf("APIError mismatch (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestAcademyRetrySucceeds(t *testing.T) {
	fa := newAcademyFake(t, func(w http.ResponseWriter, _ *http.Request, hit int) {
		if hit < 3 {
			academyWriteJSON(w, http.StatusServiceUnavailable, `{}`)
			return
		}
		academyWriteJSON(w, http.StatusOK, `{"id":"u1","user":"alice","scopes":["connect"]}`)
	})
	got, err := fa.client(t, time.Minute).Info(t.Context(), "at")
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if diff := cmp.Diff(tokens.Info{ID: "u1", User: "alice", Scopes: []string{"connect"}}, got); diff != "" {
		t.Errorf("Info mismatch (-want +got):\n%s", diff)
	}
	if got := fa.hits.Load(); got != 3 {
		t.Errorf("server hits = %d, want 3", got)
	}
}

// TestAcademyRefreshRetriedBeforeWriting checks that a refresh that never left the process (the
// dial failed) is tried again: the refresh token cannot have been spent.
func TestAcademyRefreshRetriedBeforeWriting(t *testing.T) {
	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		dials.Add(1)
		return nil, errors.New("dial refused by the test")
	}}
	a := tokens.NewAcademy(&http.Client{Transport: tr, Timeout: 10 * time.Second}, tokens.AcademyConfig{
		ClientID: "id", ClientSecret: "secret",
		RefreshURL: "http://academy.invalid/refresh",
		Retries:    2, Backoff: time.Millisecond,
	})
	_, err := a.Refresh(t.Context(), "rt")
	if err == nil {
		t.Fatal("Refresh succeeded, want an error")
	}
	if got := dials.Load(); got != 3 {
		t.Errorf("dials = %d, want 3 (1 + 2 retries)", got)
	}
}

func TestAcademyRetryStopsOnCancel(t *testing.T) {
	served := make(chan struct{}, 10)
	fa := newAcademyFake(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		academyWriteJSON(w, http.StatusServiceUnavailable, `{}`)
		served <- struct{}{}
	})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	a := tokens.NewAcademy(&http.Client{Transport: tr, Timeout: 10 * time.Second}, tokens.AcademyConfig{
		InfoURL: fa.srv.URL + "/info",
		Retries: 5, Backoff: time.Hour, // only the cancellation can end the wait
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := a.Info(ctx, "at")
		done <- err
	}()
	<-served // the first answer is out; Info is reading it or waiting out its backoff
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Info error = %v, want context.Canceled", err)
	}
	if got := fa.hits.Load(); got != 1 {
		t.Errorf("server hits = %d, want 1", got)
	}
}

func TestAcademyInfo(t *testing.T) {
	fa := newAcademyFake(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		academyWriteJSON(w, http.StatusOK, `{"id":"5f0c","user":"alice@example.com","scopes":["connect","read","write"],"extra":1}`)
	})
	got, err := fa.client(t, time.Minute).Info(t.Context(), "the-access-token")
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	want := tokens.Info{ID: "5f0c", User: "alice@example.com", Scopes: []string{"connect", "read", "write"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Info mismatch (-want +got):\n%s", diff)
	}
	wantCalls := []academyCall{{Method: http.MethodGet, Path: "/info", Authorization: "Bearer the-access-token"}}
	if diff := cmp.Diff(wantCalls, fa.recorded()); diff != "" {
		t.Errorf("requests mismatch (-want +got):\n%s", diff)
	}
}

func TestAcademyInvalidate(t *testing.T) {
	fa := newAcademyFake(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		academyWriteJSON(w, http.StatusOK, `{"message":"ok"}`)
	})
	if err := fa.client(t, time.Minute).Invalidate(t.Context(), "the-access-token"); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	wantCalls := []academyCall{{Method: http.MethodGet, Path: "/invalidate", Authorization: "Bearer the-access-token"}}
	if diff := cmp.Diff(wantCalls, fa.recorded()); diff != "" {
		t.Errorf("requests mismatch (-want +got):\n%s", diff)
	}
}

// TestAcademyRetryAfter: a 429 or 503 carries the Academy's Retry-After (seconds or an HTTP
// date) so that callers wait at least that long; a 503 that names a wait is not retried sooner.
func TestAcademyRetryAfter(t *testing.T) {
	tests := []struct {
		name       string
		call       func(context.Context, *tokens.Academy) error
		status     int
		retryAfter string
		want       time.Duration
		wantHits   int32
	}{
		{name: "refresh 429 seconds", call: academyRefresh, status: 429, retryAfter: "120", want: 2 * time.Minute, wantHits: 1},
		{name: "refresh 429 HTTP date", call: academyRefresh, status: 429,
			retryAfter: academyTestNow.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second, wantHits: 1},
		{name: "refresh 429 date in the past", call: academyRefresh, status: 429,
			retryAfter: academyTestNow.Add(-time.Hour).Format(http.TimeFormat), want: 0, wantHits: 1},
		{name: "refresh 429 without Retry-After", call: academyRefresh, status: 429, want: 0, wantHits: 1},
		{name: "refresh 429 unreadable Retry-After", call: academyRefresh, status: 429, retryAfter: "soon", want: 0, wantHits: 1},
		{name: "info 503 with Retry-After not retried", call: academyInfo, status: 503, retryAfter: "7", want: 7 * time.Second, wantHits: 1},
		{name: "refresh 400 ignores Retry-After", call: academyRefresh, status: 400, retryAfter: "7", want: 0, wantHits: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa := newAcademyFake(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				academyWriteJSON(w, tt.status, `{"error":{"message":"wait"}}`)
			})
			err := tt.call(t.Context(), fa.client(t, time.Minute))
			var ae *tokens.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is not an *APIError", err)
			}
			if ae.RetryAfter != tt.want {
				t.Errorf("RetryAfter = %v, want %v", ae.RetryAfter, tt.want)
			}
			if got := fa.hits.Load(); got != tt.wantHits {
				t.Errorf("server hits = %d, want %d", got, tt.wantHits)
			}
		})
	}
}
