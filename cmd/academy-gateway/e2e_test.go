package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/internal/testutil"
)

// TestEndToEnd: a v1 caller reads, writes and is refused a delete through the gateway, against
// the simulator, with a connection made through the real OAuth2 flow.
func TestEndToEnd(t *testing.T) {
	s := newStack(t, time.Minute)
	r := s.start(nil)
	key := s.connect(r, "alice", "john", "read", "write")

	status, body := call(t, "GET", r.proxyURL+"/api/v1/movies", key, "")
	if status != 200 || !strings.Contains(body, "The Matrix") {
		t.Fatalf("GET movies = %d %s", status, body)
	}
	status, body = call(t, "POST", r.proxyURL+"/api/v1/movies", key, `{"name":"Alien"}`)
	if status != 201 || !strings.Contains(body, `"owned":true`) {
		t.Fatalf("POST movie = %d %s", status, body)
	}
	var created struct{ ID string }
	_ = json.Unmarshal([]byte(body), &created)
	status, body = call(t, "DELETE", r.proxyURL+"/api/v1/movies/"+created.ID, key, "")
	if status != 403 || !strings.Contains(body, `"insufficient_scope"`) {
		t.Fatalf("DELETE with a read,write key = %d %s", status, body)
	}
	status, body = call(t, "GET", r.proxyURL+"/api/v1/info", key, "")
	if status != 200 || !strings.Contains(body, "John Doe") {
		t.Fatalf("GET info = %d %s", status, body)
	}
}

// TestRefreshesAcrossReplicasUnderLoad: tokens live 5 s; two replicas serve 200 concurrent
// requests right after the token needs refreshing; the simulator sees exactly one refresh and
// no reuse of a spent refresh token, and every request succeeds.
func TestRefreshesAcrossReplicasUnderLoad(t *testing.T) {
	s := newStack(t, time.Second) // expires_in 5 → 5 s; refresh_before capped at 2.5 s
	a := s.start(nil)
	b := s.start(nil)
	key := s.connect(a, "bob", "jane", "read")
	s.sim.ExpireAccessTokens(s.sim.Users()[1].ID) // Jane's current token is refused upstream now
	conn, err := a.app.store.Connection(t.Context(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	before := s.sim.Stats()

	var wg sync.WaitGroup
	statuses := make([]int, 200)
	for i := range statuses {
		url := []string{a.proxyURL, b.proxyURL}[i%2] + "/api/v1/movies"
		wg.Go(func() { statuses[i], _ = call(t, "GET", url, key, "") })
	}
	wg.Wait()
	for i, st := range statuses {
		if st != http.StatusOK {
			t.Fatalf("request %d: status %d", i, st)
		}
	}
	after := s.sim.Stats()
	if n := after.Refreshes - before.Refreshes; n != 1 {
		t.Errorf("simulator saw %d refreshes, want exactly 1", n)
	}
	if after.ReusedRefreshTokens != 0 {
		t.Errorf("simulator saw %d reused refresh tokens, want 0", after.ReusedRefreshTokens)
	}
	now, _ := a.app.store.Connection(t.Context(), "bob")
	if now.Version != conn.Version+1 || now.AccessToken == conn.AccessToken {
		t.Errorf("stored version %d → %d, want one new token", conn.Version, now.Version)
	}
}

// TestAdminNeverOnProxyListener: the admin API answers only on the ops listener; on the proxy
// listener /admin/ is an ordinary path that needs an API key, and the admin token opens nothing.
func TestAdminNeverOnProxyListener(t *testing.T) {
	s := newStack(t, time.Minute)
	s.cfg.Security.AdminToken = "admin-secret-token"
	r := s.start(nil)
	for _, base := range []string{r.proxyURL, r.opsURL} {
		req, _ := http.NewRequest("GET", base+"/admin/connections", nil)
		req.Header.Set("Authorization", "Bearer admin-secret-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		_, listed := body["connections"]
		switch {
		case base == r.opsURL && (resp.StatusCode != 200 || !listed):
			t.Errorf("ops listener: %d %v, want the admin answer", resp.StatusCode, body)
		case base == r.proxyURL && (resp.StatusCode != 401 || listed):
			t.Errorf("proxy listener: %d %v, want 401 invalid_api_key", resp.StatusCode, body)
		}
	}
}

// TestLegacyKeyWorksUnchanged: `keys create --key EXISTING` registers a caller's existing v1
// key, and that caller's unchanged request goes through.
func TestLegacyKeyWorksUnchanged(t *testing.T) {
	s := newStack(t, time.Minute)
	r := s.start(nil)
	s.connect(r, "lee", "john", "read")
	const legacy = "3a9f1c0e-legacy-v1-key"
	if st, _ := call(t, "GET", r.proxyURL+"/api/v1/movies", legacy, ""); st != 401 {
		t.Fatalf("before registration: %d, want 401", st)
	}
	cfgPath := writeConfig(t, string(s.cfg.YAML()))
	if err := run(t.Context(), []string{"keys", "create", "--user", "lee", "--key", legacy, "--config", cfgPath},
		func(string) string { return "" }, io.Discard, io.Discard); err != nil {
		t.Fatalf("keys create --key: %v", err)
	}
	// The 401 above was cached as unknown; the registration's invalidation clears it on every
	// replica well within the 1 s cache TTL.
	testutil.Eventually(t, time.Second, func() error {
		st, body := call(t, "GET", r.proxyURL+"/api/v1/movies", legacy, "")
		if st == 200 && strings.Contains(body, "movies") {
			return nil
		}
		return fmt.Errorf("legacy key after registration: %d %s", st, body)
	})
}

// TestRedisClientFailsFast: the Redis client gives up within about a second (one dial attempt,
// one retry, 1 s timeouts) unless the URL says otherwise, so a Redis outage turns into cached
// answers and 503s instead of requests hanging on go-redis's defaults.
func TestRedisClientFailsFast(t *testing.T) {
	tests := []struct {
		url         string
		dial        time.Duration
		retries     int
		dialRetries int
	}{
		{"redis://127.0.0.1:1/0", time.Second, 1, 1},
		{"redis://127.0.0.1:1/0?dial_timeout=3s&max_retries=4", 3 * time.Second, 4, 1},
	}
	for _, tt := range tests {
		cfg := demoConfig("http://127.0.0.1:1", "http://127.0.0.1:2", time.Minute)
		cfg.Redis.URL = tt.url
		a, err := newApp(cfg, zap.NewNop(), appOptions{})
		if err != nil {
			t.Fatal(err)
		}
		o := a.rdb.(*redis.Client).Options()
		a.Close()
		if o.DialTimeout != tt.dial || o.ReadTimeout != time.Second || o.WriteTimeout != time.Second ||
			o.MaxRetries != tt.retries || o.DialerRetries != tt.dialRetries {
			t.Errorf("%s: dial %v read %v write %v retries %d dial retries %d, want %v 1s 1s %d %d", tt.url,
				o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries, o.DialerRetries, tt.dial, tt.retries, tt.dialRetries)
		}
	}
}
