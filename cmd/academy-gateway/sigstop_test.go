package main

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/google/go-cmp/cmp"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// sigstopBackoff is the store backoff of README "Behaviour in detail" (tokens.storeBackoff):
// after a failed Redis read the request path trusts its cache, and asks Redis nothing, for
// 500 ms.
const sigstopBackoff = 500 * time.Millisecond

// TestRedisPausedWithSIGSTOP: issue 14, faults. Redis is paused with SIGSTOP, so every TCP
// connection stays open (the kernel even completes new handshakes into the listen backlog) but
// nothing is ever answered: the gateway learns of the outage only through its own timeouts,
// which TestRedisRestartRecovers (connections refused) never reaches.
//
// A gateway serves user A (warm: key and connection cached before the pause) and user B (a key
// never looked up before). During the pause A keeps being answered 200 from the cache (README:
// cached users keep working until their token needs a refresh; after a failed Redis read the
// cache is trusted for 500 ms before Redis is tried again); B gets 503 token_store_unavailable
// with Retry-After, every answer within the client's own timeout; B's requests do not each cost
// a Redis operation (the store backoff bounds them); /readyz says 503 naming the timeout. After
// SIGCONT, without a restart, /readyz turns 200, B and A are served, and a revocation still
// reaches a replica whose caches live an hour, which only the invalidation subscription explains.
func TestRedisPausedWithSIGSTOP(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	// Both users are onboarded through a replica of their own before g and w subscribe, so the
	// invalidations of that onboarding cannot drop what g and w cache afterwards.
	onboarder := s.startWith(nil, appOptions{managerInterval: time.Hour})
	keyA := s.connect(onboarder, "ada", "john", "read")
	keyB := s.connect(onboarder, "bea", "jane", "read")
	g := s.startWith(nil, appOptions{managerInterval: time.Hour})                      // 1 s cache TTL
	w := s.startWith(nil, appOptions{managerInterval: time.Hour, cacheTTL: time.Hour}) // pub/sub only
	const movies = "/api/v1/movies"
	for name, r := range map[string]*replica{"g": g, "w": w} {
		if got, _ := resAsk(t, r.proxyURL+movies, keyA); got.Status != http.StatusOK {
			t.Fatalf("A on %s before the pause: %+v, want 200", name, got)
		}
	}

	// The invalidation channel's subscribers, as Redis sees them (asked only while it runs).
	rc := s.redis.Client(t)
	chans, err := rc.PubSubChannels(t.Context(), "*").Result()
	if err != nil || len(chans) != 1 {
		t.Fatalf("PUBSUB CHANNELS = %v, %v; want the one invalidation channel", chans, err)
	}
	channel := chans[0]
	const subscribed = 3 // onboarder, g, w
	subscribers := func() error {
		n, err := rc.PubSubNumSub(t.Context(), channel).Result()
		if err != nil || n[channel] != subscribed {
			return fmt.Errorf("%s has %d subscribers (%v), want %d", channel, n[channel], err, subscribed)
		}
		return nil
	}
	if err := subscribers(); err != nil {
		t.Fatal(err)
	}

	pid := s.redis.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP redis-server (pid %d): %v", pid, err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT redis-server (pid %d): %v", pid, err)
			}
		}
	}
	t.Cleanup(resume) // runs before the replicas' and Redis's own cleanups: nothing is left stopped

	// The request path's Redis reads that failed: of keys and of connections, read in process.
	// Other operations are left out: the connections gauge asks Redis on every scrape of
	// /metrics (count_status, each a timeout while Redis is paused), and /readyz pings.
	storeErrors := func() float64 {
		var sum float64
		for _, op := range []string{"get_key", "get_connection"} {
			sum += promtest.ToFloat64(g.app.m.StoreOperations.WithLabelValues(op, "error"))
		}
		return sum
	}

	// 1. A: every answer 200; poll until one went past the 1 s cache (a miss answered from the
	// stale entry because the Redis read failed).
	misses := func() float64 {
		return promtest.ToFloat64(g.app.m.CacheLookups.WithLabelValues("miss"))
	}
	errorsBefore := storeErrors()
	testutil.Eventually(t, 15*time.Second, func() error {
		before := misses()
		if got, _ := resAsk(t, g.proxyURL+movies, keyA); got.Status != http.StatusOK {
			t.Fatalf("A with Redis paused: %+v, want 200 from the cache", got)
		}
		if misses() > before && storeErrors() > errorsBefore {
			return nil
		}
		return errors.New("no request of A went past the 1 s cache to a failed Redis read yet")
	})
	// And again (within the backoff that read opened, or past it through another failed read:
	// 200 either way), and on the replica whose cache lives an hour.
	if got, _ := resAsk(t, g.proxyURL+movies, keyA); got.Status != http.StatusOK {
		t.Errorf("A right after a failed Redis read: %+v, want 200", got)
	}
	if got, _ := resAsk(t, w.proxyURL+movies, keyA); got.Status != http.StatusOK {
		t.Errorf("A on the 1 h cache replica with Redis paused: %+v, want 200", got)
	}

	// 2 and 3. B: at least n sequential requests (one per poll), each answered (resClient's 10 s
	// timeout fails the test through resAsk otherwise) with 503 token_store_unavailable and
	// Retry-After, until B's own path has asked Redis again at least once: the backoff ends, it
	// does not shut Redis out for good.
	const n = 200
	errorsBefore = storeErrors()
	sent := 0
	took := testutil.Eventually(t, 30*time.Second, func() error {
		got, resp := resAsk(t, g.proxyURL+movies, keyB)
		sent++
		if diff := cmp.Diff(resAnswer{http.StatusServiceUnavailable, "token_store_unavailable"}, got); diff != "" {
			t.Fatalf("B's request %d with Redis paused (-want +got):\n%s", sent, diff)
		}
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra <= 0 {
			t.Fatalf("B's request %d: Retry-After = %q, want a positive number of seconds", sent, resp.Header.Get("Retry-After"))
		}
		if sent < n || storeErrors() == errorsBefore {
			return fmt.Errorf("%d requests of B sent, %v failed Redis reads since the first", sent, storeErrors()-errorsBefore)
		}
		return nil
	})
	failed := storeErrors() - errorsBefore
	// No retry storm. A failed read makes the request path ask Redis nothing for the backoff,
	// counted from the failure, so these sequential requests cost at most one read per backoff
	// window they spanned, plus one. (A read against a paused Redis takes its timeouts to fail,
	// so fewer happen.) The bound follows from the elapsed time; it is not a claim about speed.
	bound := float64(1 + took/sigstopBackoff)
	t.Logf("with Redis paused: %d requests of B in %v cost %v failed Redis reads (%.3f per request; bound %v)",
		sent, took, failed, failed/float64(sent), bound)
	if failed > bound || failed > float64(sent)/10 {
		t.Errorf("%d requests of B cost %v failed Redis reads, want at most %v and far fewer than the requests: a retry storm", sent, failed, bound)
	}

	// 4. /readyz names the timeout.
	resp, body, err := resGet(t, t.Context(), g.opsURL+"/readyz", "")
	if err != nil {
		t.Fatalf("GET /readyz with Redis paused: %v", err)
	}
	if want := regexp.MustCompile(`^not ready: redis: .*(i/o timeout|context deadline exceeded)\n$`); resp.StatusCode != http.StatusServiceUnavailable || !want.MatchString(body) {
		t.Errorf("/readyz with Redis paused = %d %q, want 503 matching %s", resp.StatusCode, body, want)
	}
	t.Logf("/readyz with Redis paused: %d %q", resp.StatusCode, body)

	// 5. SIGCONT, the same gateway processes.
	resume()
	for name, r := range map[string]*replica{"g": g, "w": w} {
		testutil.Eventually(t, 10*time.Second, func() error {
			if got := resReady(t, r); got != http.StatusOK {
				return fmt.Errorf("%s: /readyz = %d after SIGCONT, want 200", name, got)
			}
			return nil
		})
	}
	// B's first read may still fall in a backoff opened just before SIGCONT: poll, every answer
	// a 503 or the 200.
	testutil.Eventually(t, 5*time.Second, func() error {
		got, _ := resAsk(t, g.proxyURL+movies, keyB)
		switch got {
		case resAnswer{http.StatusOK, ""}:
			return nil
		case resAnswer{http.StatusServiceUnavailable, "token_store_unavailable"}:
			return errors.New("B still gets 503 after SIGCONT")
		}
		t.Fatalf("B after SIGCONT: %+v, want 200", got)
		return nil
	})
	for name, r := range map[string]*replica{"g": g, "w": w} {
		if got, _ := resAsk(t, r.proxyURL+movies, keyA); got.Status != http.StatusOK {
			t.Errorf("A on %s after SIGCONT: %+v, want 200", name, got)
		}
	}

	// The subscription survived (or was made again), then a revocation must reach the 1 h cache.
	testutil.Eventually(t, 10*time.Second, subscribers)
	keys, err := g.app.store.Keys(t.Context(), "ada")
	if err != nil || len(keys) != 1 {
		t.Fatalf("A's keys after SIGCONT: %v, %v; want the one key", keys, err)
	}
	revoked := time.Now()
	if _, err := g.app.store.DeleteKey(t.Context(), keys[0].ID); err != nil {
		t.Fatalf("delete A's key: %v", err)
	}
	testutil.Eventually(t, time.Until(revoked.Add(3*time.Second)), func() error {
		if got, _ := resAsk(t, w.proxyURL+movies, keyA); got != (resAnswer{http.StatusUnauthorized, "invalid_api_key"}) {
			return fmt.Errorf("the 1 h cache replica still answers %+v after A's key was revoked: the invalidation subscription did not recover", got)
		}
		return nil
	})
	t.Logf("revocation after SIGCONT reached the 1 h cache replica in %v", time.Since(revoked))
}
