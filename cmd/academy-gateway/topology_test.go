package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/internal/redistest"
)

// TestGatewayOverTopologies: a replica configured with redis.addrs (and redis.master_name) runs
// the real flow over a Redis Cluster and over a Sentinel-managed master: a user connects, a GET
// goes through, /readyz is ready, and a token the Academy refuses is refreshed through that
// store. Lifecycle state that lives beside the records in other hash slots works too: a consent
// for alice's Academy account by carol marks alice replaced through the identity index, and the
// webhooks go out through the stream.
func TestGatewayOverTopologies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// start runs the deployment and returns the redis.addrs and redis.master_name that reach
		// it, and a client to inspect it with.
		start func(t *testing.T) (addrs []string, masterName string, rdb redis.UniversalClient)
	}{
		{"cluster", func(t *testing.T) ([]string, string, redis.UniversalClient) {
			rc := redistest.StartCluster(t)
			return rc.Addrs, "", rc.Client(t)
		}},
		{"cluster with one seed address",
			func(t *testing.T) ([]string, string, redis.UniversalClient) {
				rc := redistest.StartCluster(t)
				return rc.Addrs[:1], "", rc.Client(t) // e.g. one Kubernetes Service name in front of the nodes
			}},
		{"sentinel", func(t *testing.T) ([]string, string, redis.UniversalClient) {
			rs := redistest.StartSentinel(t)
			return rs.Addrs, rs.MasterName, rs.Client(t)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addrs, masterName, rdb := tc.start(t)
			s := newStack(t, time.Minute) // its single redis-server stays unused
			hooks := newHookReceiver(t)
			withWebhooks(s, hooks)
			r := s.startWith(func(c *config.Config) {
				c.Redis.URL, c.Redis.Addrs, c.Redis.MasterName = "", addrs, masterName
			}, fastHooks)
			key := s.connect(r, "alice", "john", "read")
			john := s.sim.Users()[0]

			// The connection lives in the deployment under test, not in the stack's own Redis.
			const connKey = "agw:{u:alice}:conn"
			if n, err := rdb.Exists(t.Context(), connKey).Result(); err != nil || n != 1 {
				t.Fatalf("EXISTS %s in the %s = %d, %v; want 1", connKey, tc.name, n, err)
			}
			if n, err := s.redis.Client(t).Exists(t.Context(), connKey).Result(); err != nil || n != 0 {
				t.Fatalf("EXISTS %s in the stack's single Redis = %d, %v; want 0", connKey, n, err)
			}

			if status, body := call(t, "GET", r.proxyURL+"/api/v1/movies", key, ""); status != http.StatusOK || !strings.Contains(body, "The Matrix") {
				t.Fatalf("GET movies = %d %s", status, body)
			}
			if status, body := call(t, "GET", r.opsURL+"/readyz", "", ""); status != http.StatusOK {
				t.Fatalf("GET /readyz = %d %s", status, body)
			}

			before, err := r.app.store.Connection(t.Context(), "alice")
			if err != nil {
				t.Fatal(err)
			}
			refreshes := s.sim.Stats().Refreshes
			s.sim.ExpireAccessTokens(john.ID) // the stored access token is refused upstream now
			if status, body := call(t, "GET", r.proxyURL+"/api/v1/movies", key, ""); status != http.StatusOK {
				t.Fatalf("GET movies after the access token expired = %d %s", status, body)
			}
			after, err := r.app.store.Connection(t.Context(), "alice")
			if err != nil {
				t.Fatal(err)
			}
			if after.Version != before.Version+1 || after.AccessToken == before.AccessToken || after.RefreshToken == before.RefreshToken {
				t.Errorf("stored connection v%d → v%d, tokens changed: %v; want one refresh saved", before.Version, after.Version,
					after.AccessToken != before.AccessToken)
			}
			if stats := s.sim.Stats(); stats.Refreshes != refreshes+1 || stats.ReusedRefreshTokens != 0 {
				t.Errorf("simulator saw %d refreshes and %d reused refresh tokens, want 1 and 0",
					stats.Refreshes-refreshes, stats.ReusedRefreshTokens)
			}

			s.connect(r, "carol", "john", "read")
			if c := mustConnection(t, r, "alice"); c.Status != "reauth_required" {
				t.Errorf("alice after carol consented as John = %q, want reauth_required", c.Status)
			}
			hooks.waitFor("connection.reauth_required", map[string]any{"user": "alice", "reason": "replaced"})
			hooks.waitFor("connection.connected", map[string]any{"user": "carol", "replaced": false,
				"academy_user": map[string]any{"id": john.ID, "user": "John Doe"}})
		})
	}
}
