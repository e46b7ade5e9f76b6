package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/academy-gateway/academy-gateway/internal/testutil"
)

// TestRevocationReachesEveryReplica: three gateways share one Redis and cache keys and
// connections for an hour, so only the invalidation channel can make them notice. A key revoked
// through one replica's admin API, and a connection revoked through the CLI, are refused by every
// replica within docs/reference.md §5's one second. The latencies of 20 key revocations are logged.
func TestRevocationReachesEveryReplica(t *testing.T) {
	s := newStack(t, time.Minute)
	s.cfg.Security.AdminToken = "admin-secret-token"
	var replicas []*replica
	for range 3 {
		replicas = append(replicas, s.startWith(nil, appOptions{managerInterval: time.Hour, cacheTTL: time.Hour}))
	}
	a := replicas[0]
	s.connect(a, "rita", "jane", "read")

	var lat []time.Duration
	for run := range 20 {
		_, key, err := a.app.store.IssueKey(t.Context(), "rita", nil, "run", "")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range replicas { // every replica caches the key
			if st, body := call(t, "GET", r.proxyURL+"/api/v1/movies", key, ""); st != 200 {
				t.Fatalf("run %d: warm-up = %d %s", run, st, body)
			}
		}
		id := keyIDOf(t, a, key)
		began := time.Now()
		adminCall(t, "DELETE", a.opsURL+"/admin/keys/"+id, http.StatusNoContent)
		lat = append(lat, untilRefused(t, replicas, key, "invalid_api_key", began))
	}
	slices.Sort(lat)
	t.Logf("key revocation reached all 3 replicas: median %v, worst %v (20 runs)", lat[len(lat)/2], lat[len(lat)-1])

	key := s.connect(a, "sam", "john", "read")
	for _, r := range replicas {
		if st, _ := call(t, "GET", r.proxyURL+"/api/v1/movies", key, ""); st != 200 {
			t.Fatalf("warm-up = %d", st)
		}
	}
	before := s.sim.Stats().Invalidations
	cfgPath := writeConfig(t, string(s.cfg.YAML()))
	began := time.Now()
	if err := run(context.Background(), []string{"connections", "revoke", "sam", "--config", cfgPath},
		func(string) string { return "" }, io.Discard, io.Discard); err != nil {
		t.Fatalf("connections revoke: %v", err)
	}
	d := untilRefused(t, replicas, key, "not_connected", began)
	t.Logf("connection revocation reached all 3 replicas in %v", d)
	if got := s.sim.Stats().Invalidations - before; got != 1 {
		t.Errorf("the Academy saw %d invalidations, want 1", got)
	}
}

// untilRefused polls every replica until each refuses key with code, and fails the test if that
// takes more than a second. It returns how long the slowest replica took.
func untilRefused(t *testing.T, replicas []*replica, key, code string, began time.Time) time.Duration {
	t.Helper()
	var worst time.Duration
	for i, r := range replicas {
		testutil.Eventually(t, time.Until(began.Add(time.Second)), func() error {
			st, body := call(t, "GET", r.proxyURL+"/api/v1/movies", key, "")
			if st == 401 && strings.Contains(body, code) {
				return nil
			}
			return fmt.Errorf("replica %d still answers %d %s one second after the revocation", i, st, body)
		})
		worst = max(worst, time.Since(began))
	}
	return worst
}

func keyIDOf(t *testing.T, r *replica, key string) string {
	t.Helper()
	k, err := r.app.mgr.LookupKey(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return k.ID
}

func adminCall(t *testing.T, method, url string, want int) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	req.Header.Set("Authorization", "Bearer admin-secret-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s = %d, want %d", method, url, resp.StatusCode, want)
	}
}
