package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCorruptRecordNeverForwarded: docs/reference.md §6, issue 14 item 11, end to end against real Redis.
// Once a user's connection record is overwritten with garbage or with another user's record,
// requests are refused with 401 reauthorization_required (the user must connect again, which
// overwrites the record), nothing reaches the Academy, and the admin API shows the record as
// "undecryptable" (200) instead of a Redis outage (503).
func TestCorruptRecordNeverForwarded(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		corrupt func(own, other map[string]string) map[string]any
	}{
		{"garbage", func(_, _ map[string]string) map[string]any { return map[string]any{"rec": "{not json"} }},
		{"another user's record", func(_, other map[string]string) map[string]any {
			return map[string]any{"ver": other["ver"], "rec": other["rec"]}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, time.Minute)
			tap := resUseTap(t, s)
			r := s.startWith(nil, appOptions{managerInterval: time.Hour})
			key := s.connect(r, "lena", "john", "read")
			s.connect(r, "omar", "jane", "read")
			movies := r.proxyURL + "/api/v1/movies"
			if got, _ := resAsk(t, movies, key); got.Status != http.StatusOK {
				t.Fatalf("before: %+v, want 200", got)
			}
			forwarded := tap.count("/movies")

			rdb := s.redis.Client(t)
			prefix := s.cfg.Redis.KeyPrefix
			own, _ := rdb.HGetAll(t.Context(), prefix+"{u:lena}:conn").Result()
			other, _ := rdb.HGetAll(t.Context(), prefix+"{u:omar}:conn").Result()
			if err := rdb.HSet(t.Context(), prefix+"{u:lena}:conn", tt.corrupt(own, other)).Err(); err != nil {
				t.Fatal(err)
			}
			r.app.mgr.Forget("lena", "") // as the cache TTL would, without waiting for it

			for i := range 5 {
				got, resp := resAsk(t, movies, key)
				if diff := cmp.Diff(resAnswer{http.StatusUnauthorized, "reauthorization_required"}, got); diff != "" {
					t.Fatalf("request %d after the corruption (-want +got):\n%s", i, diff)
				}
				if ra := resp.Header.Get("Retry-After"); ra != "" {
					t.Errorf("Retry-After %q on a refusal that waiting does not cure", ra)
				}
			}
			if got := tap.count("/movies"); got != forwarded {
				t.Errorf("%d requests reached the Academy after the corruption, want 0", got-forwarded)
			}

			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, r.opsURL+"/admin/connections/lena", nil)
			req.Header.Set("Authorization", "Bearer "+s.cfg.Security.AdminToken)
			resp, err := resClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var c struct{ User, Status string }
			if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /admin/connections/lena = %d (%v), want 200", resp.StatusCode, err)
			}
			if diff := cmp.Diff(struct{ User, Status string }{"lena", "undecryptable"}, c); diff != "" {
				t.Errorf("admin view (-want +got):\n%s", diff)
			}
		})
	}
}
