package tokens_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// TestRefreshFailuresArePassing: docs/reference.md §4 steps 3 and 5, issue 14 item 10. When the refresh that
// an expired token (proactive) or an upstream 401 (reactive) calls for cannot complete because
// the refresh endpoint fails, hangs, refuses the client credentials, rate-limits or answers
// garbage, the Manager returns a *RefreshError (the proxy's 502 upstream_unavailable, or 504
// upstream_timeout when Timeout reports true, with Retry-After), never ErrReauthRequired, and
// the connection is kept as it was. The Academy is real HTTP here; Redis is real.
func TestRefreshFailuresArePassing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		answer         func(w http.ResponseWriter, r *http.Request)
		reactive       bool
		wantTimeout    bool
		wantRetryAfter time.Duration
	}{
		{name: "refresh endpoint 500", answer: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }},
		{name: "refresh endpoint 500, reactive", reactive: true, answer: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }},
		{name: "bad client credentials 401", answer: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":{"message":"Invalid client credentials.","code":401}}`)
		}},
		{name: "bad client credentials 401, reactive", reactive: true, answer: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(401) }},
		{name: "refresh endpoint hangs", wantTimeout: true, answer: func(_ http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body) // then the server notices the client hanging up
			<-r.Context().Done()
		}},
		{name: "429 with Retry-After", wantRetryAfter: 30 * time.Second, answer: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(429)
		}},
		{name: "200 with garbage", answer: func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "<html>maintenance</html>") }},
		{name: "200 without tokens", answer: func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{"access_token":""}`) }},
	}
	rs := redistest.Start(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var hits atomic.Int32
			academy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				tt.answer(w, r)
			}))
			t.Cleanup(academy.Close)
			kr, err := tokens.NewKeyring([]string{testKey(t)})
			if err != nil {
				t.Fatal(err)
			}
			m := metrics.New(prometheus.NewRegistry(), "test")
			store := tokens.NewStore(rs.Client(t), fmt.Sprintf("agw-fail%d:", i), kr, m, nil)
			ac := tokens.NewAcademy(&http.Client{Timeout: 300 * time.Millisecond}, tokens.AcademyConfig{
				ClientID: "c", ClientSecret: "s", RefreshURL: academy.URL + "/refresh", Backoff: time.Millisecond,
			})
			mgr := tokens.NewManager(store, ac, m, tokens.ManagerOptions{RefreshBefore: time.Minute})
			ctx := context.Background()
			now := time.Now()
			c, err := store.PutConnection(ctx, tokens.Connection{User: "ines", Status: tokens.StatusActive, Scopes: []string{"read"},
				AccessToken: "at_1", RefreshToken: "rt_1", IssuedAt: now.Add(-5 * time.Minute), AccessExpiresAt: now.Add(-time.Second),
				RefreshExpiresAt: now.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}

			call := func() error {
				if tt.reactive {
					believed := c
					believed.AccessExpiresAt = now.Add(time.Hour)
					_, err := mgr.Rejected(ctx, believed)
					return err
				}
				_, _, err := mgr.Token(ctx, c)
				return err
			}
			err = call()
			var re *tokens.RefreshError
			switch {
			case !errors.As(err, &re) || !errors.Is(err, tokens.ErrRefreshUnavailable):
				t.Fatalf("error = %v, want a *RefreshError", err)
			case errors.Is(err, tokens.ErrReauthRequired), errors.Is(err, tokens.ErrStoreUnavailable):
				t.Errorf("error = %v also matches reauth or store errors", err)
			case re.Timeout() != tt.wantTimeout:
				t.Errorf("Timeout() = %v, want %v (%v)", re.Timeout(), tt.wantTimeout, err)
			case re.RetryAfter != tt.wantRetryAfter:
				t.Errorf("RetryAfter = %v, want %v", re.RetryAfter, tt.wantRetryAfter)
			}
			stored, marker, err := store.RefreshState(ctx, "ines")
			if err != nil || stored.Status != tokens.StatusActive || stored.RefreshToken != "rt_1" || stored.Version != c.Version || !marker.IsZero() {
				t.Errorf("stored = %q %q v%d marker %+v (%v), want the connection kept as it was", stored.Status, stored.RefreshToken, stored.Version, marker, err)
			}
			if got := testutil.ToFloat64(m.TokenRefreshes.WithLabelValues(trigger(tt.reactive), metrics.ResultError)); got != 1 {
				t.Errorf("token_refreshes_total{result=error} = %v, want 1", got)
			}
			if tt.wantRetryAfter > 0 { // honoured: the next request does not ask before then
				if err := call(); !errors.Is(err, tokens.ErrRefreshUnavailable) {
					t.Errorf("second call = %v, want ErrRefreshUnavailable", err)
				}
				if got := hits.Load(); got != 1 {
					t.Errorf("the refresh endpoint was asked %d times within its Retry-After, want 1", got)
				}
			}
		})
	}
}

func trigger(reactive bool) string {
	if reactive {
		return metrics.TriggerReactive
	}
	return metrics.TriggerProactive
}

// TestCorruptRecordRefused: docs/reference.md §6, issue 14 item 11. A connection record overwritten with
// garbage, with tampered ciphertext, or with another user's record is refused: the Manager
// answers ErrReauthRequired (also matching ErrDecrypt, never ErrStoreUnavailable), drops the
// cached token instead of serving it, counts no Redis failure, and refreshes nothing. Real Redis.
func TestCorruptRecordRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		corrupt func(rec map[string]string, other map[string]string) map[string]any
	}{
		{"garbage", func(map[string]string, map[string]string) map[string]any { return map[string]any{"rec": "garbage"} }},
		{"tampered ciphertext", func(rec, _ map[string]string) map[string]any {
			return map[string]any{"rec": `{"user":"hugo","status":"active","sealed":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`}
		}},
		{"another user's record", func(_, other map[string]string) map[string]any {
			return map[string]any{"ver": other["ver"], "rec": other["rec"]}
		}},
		{"garbage version", func(map[string]string, map[string]string) map[string]any { return map[string]any{"ver": "x"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rs := redistest.Start(t)
			f := newRotatingAcademy(t)
			var mu sync.Mutex
			now := time.Now()
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			a := newInstance(t, rs, testKey(t), f, tokens.ManagerOptions{Now: clock, CacheTTL: time.Second})
			ctx := context.Background()
			seed(t, a.store, f, "hugo")
			seed(t, a.store, f, "ivan")
			c, err := a.mgr.Connection(ctx, "hugo") // cached now
			if err != nil {
				t.Fatal(err)
			}
			rdb := rs.Client(t)
			rec, _ := rdb.HGetAll(ctx, "agw:{u:hugo}:conn").Result()
			other, _ := rdb.HGetAll(ctx, "agw:{u:ivan}:conn").Result()
			if err := rdb.HSet(ctx, "agw:{u:hugo}:conn", tt.corrupt(rec, other)).Err(); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			now = now.Add(2 * time.Second) // past the cache TTL
			mu.Unlock()

			for i := range 2 { // the second is answered from the cached refusal
				got, err := a.mgr.Connection(ctx, "hugo")
				if !errors.Is(err, tokens.ErrReauthRequired) || !errors.Is(err, tokens.ErrDecrypt) || errors.Is(err, tokens.ErrStoreUnavailable) {
					t.Fatalf("Connection %d = %v, want ErrReauthRequired and ErrDecrypt, not ErrStoreUnavailable", i, err)
				}
				if got.AccessToken != "" {
					t.Fatalf("Connection %d returned a token for a corrupt record", i)
				}
			}
			if _, _, err := a.mgr.Token(ctx, c); !errors.Is(err, tokens.ErrReauthRequired) {
				t.Errorf("Token of the cached expired connection = %v, want ErrReauthRequired", err)
			}
			if got := testutil.ToFloat64(a.m.StoreOperations.WithLabelValues("get_connection", "error")); got != 0 {
				t.Errorf("store_operations{get_connection,error} = %v, want 0: a corrupt record is not an outage", got)
			}
			if got := f.requests(); got != 0 {
				t.Errorf("the Academy was asked %d times, want 0", got)
			}
			if _, err := a.mgr.Connection(ctx, "ivan"); err != nil {
				t.Errorf("the other user's own record: %v", err)
			}
		})
	}
}
