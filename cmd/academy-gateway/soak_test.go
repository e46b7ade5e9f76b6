package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/academy-gateway/academy-gateway/internal/testutil"
)

// soakDuration is how long TestSoak loads the gateway: ACADEMY_GATEWAY_SOAK (a Go duration,
// e.g. 5m locally), else 15 s, which keeps CI's run of it well under a minute.
func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("ACADEMY_GATEWAY_SOAK")
	if v == "" {
		return 15 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("ACADEMY_GATEWAY_SOAK=%q: want a positive duration", v)
	}
	return d
}

// resources is what must come back to its baseline after load.
type resources struct {
	goroutines   int
	openFiles    int
	rssKiB       int
	redisClients int
}

func (r resources) String() string {
	return fmt.Sprintf("goroutines %d, open files %d, RSS %d KiB, Redis clients %d", r.goroutines, r.openFiles, r.rssKiB, r.redisClients)
}

func measure(t *testing.T, rdb *redis.Client) resources {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	var r resources
	r.goroutines = runtime.NumGoroutine()
	// Unreadable, /proc would leave zeros that any later measure "returns to": fail instead.
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("open files: %v", err)
	}
	r.openFiles = len(fds)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("RSS: %v", err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			r.rssKiB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	if r.rssKiB <= 0 {
		t.Fatalf("no VmRSS in /proc/self/status:\n%s", status)
	}
	info, err := rdb.Info(t.Context(), "clients").Result()
	if err != nil {
		t.Fatalf("redis INFO: %v", err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "connected_clients:"); ok {
			r.redisClients, _ = strconv.Atoi(v)
			r.redisClients-- // the INFO client itself
		}
	}
	return r
}

// TestSoak: two replicas, two users with three keys each, 64 concurrent callers for
// soakDuration, tokens that live 5 s (proactive refreshes all along) and access tokens revoked
// at the simulator every second (reactive refreshes). Every answer is the caller's own user's
// (the simulator's /info names the Academy account of the token the gateway injected: no
// cross-user leak), nothing but 200 is answered, no spent refresh token is replayed, and
// afterwards goroutines and open files are back near their baseline, RSS within twice its
// baseline (not asserted under the race detector, whose shadow memory only grows) and Redis
// connections within the pools' bound (bounded waits, no timing asserted).
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped with -short")
	}
	s := newStack(t, time.Second)
	// The upstream of the API calls gets a server of its own, so that its connections can be
	// closed at the end: the gateway's upstream pool keeps idle connections for 90 s.
	upstream := httptest.NewServer(s.sim)
	t.Cleanup(upstream.Close)
	s.cfg.Upstream.BaseURL = upstream.URL
	replicas := []*replica{s.start(nil), s.start(nil)}
	rdb := s.redis.Client(t)
	type caller struct{ key, academy string }
	var callers []caller
	users := s.sim.Users()
	for i, u := range []struct{ name, academy string }{{"alice", "john"}, {"bob", "jane"}} {
		callers = append(callers, caller{s.connect(replicas[0], u.name, u.academy, "read"), users[i].Name})
		for range 2 {
			_, key, err := replicas[0].app.store.IssueKey(t.Context(), u.name, []string{"read"}, "soak", "")
			if err != nil {
				t.Fatal(err)
			}
			callers = append(callers, caller{key, users[i].Name})
		}
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	// Warm up every path once, then take the baseline.
	for _, r := range replicas {
		for _, c := range callers {
			if st, body := soakCall(client, r.proxyURL, c.key); st != 200 {
				t.Fatalf("warm-up: %d %s", st, body)
			}
		}
	}
	client.CloseIdleConnections()
	upstream.CloseClientConnections()
	base := measure(t, rdb)

	d := soakDuration(t)
	deadline := time.Now().Add(d)
	var requests, leaks atomic.Int64
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 14))
			for time.Now().Before(deadline) {
				c := callers[rng.IntN(len(callers))]
				st, body := soakCall(client, replicas[rng.IntN(len(replicas))].proxyURL, c.key)
				requests.Add(1)
				if st == 200 && !strings.Contains(body, `"user":"`+c.academy+`"`) {
					leaks.Add(1)
				}
				if st == 401 && strings.Contains(body, `"request_id"`) {
					st = -401 // the gateway's own 401 (with a request id): never right here
				}
				mu.Lock()
				statuses[st]++
				mu.Unlock()
			}
		})
	}
	wg.Go(func() { // the Academy revokes access tokens now and then: reactive refreshes
		for i := 0; time.Now().Before(deadline); i++ {
			s.sim.ExpireAccessTokens(users[i%2].ID)
			dropLogs(s)
			select {
			case <-time.After(time.Second): // pacing of the fault, not a wait for a result
			case <-t.Context().Done():
				return
			}
		}
	})
	wg.Wait()
	stats := s.sim.Stats()
	t.Logf("soak %v: %d requests (%.0f/s), statuses %v, %d refreshes at the simulator, %d reused refresh tokens",
		d, requests.Load(), float64(requests.Load())/d.Seconds(), statuses, stats.Refreshes, stats.ReusedRefreshTokens)
	if leaks.Load() != 0 {
		t.Fatalf("%d answers named another user's Academy account", leaks.Load())
	}
	// The simulator's 401 passes through when the token the gateway refreshed to was revoked
	// again before the one retry (docs/reference.md §4 step 5: one refresh, one retry); anything else is a failure.
	if statuses[200]+statuses[401] != int(requests.Load()) {
		t.Errorf("statuses %v (-401: the gateway's own), want only 200 and the Academy's 401", statuses)
	}
	if stats.ReusedRefreshTokens != 0 {
		t.Errorf("%d spent refresh tokens were replayed", stats.ReusedRefreshTokens)
	}

	client.CloseIdleConnections()
	upstream.CloseClientConnections()
	dropLogs(s)
	var now resources
	// Redis connections are pooled (go-redis keeps idle ones for 30 min): they must stay within
	// the two replicas' pools (10 per CPU each), never grow with the load.
	back := func() bool {
		now = measure(t, rdb)
		pooled := now.redisClients - base.redisClients // Redis connections are open files too
		return now.goroutines <= base.goroutines+8 && now.openFiles <= base.openFiles+8+pooled &&
			(raceDetector || now.rssKiB <= 2*base.rssKiB+64<<10) && now.redisClients <= base.redisClients+2*runtime.GOMAXPROCS(0)*10
	}
	testutil.EventuallyEvery(t, 30*time.Second, 100*time.Millisecond, func() error {
		if back() {
			return nil
		}
		return fmt.Errorf("after the soak: %v; baseline %v", now, base)
	})
	t.Logf("baseline %v; after %v", base, now)
}

// dropLogs empties the stack's log buffer: it keeps every access line, which would be most of
// the RSS after a long soak.
func dropLogs(s *stack) {
	s.logs.mu.Lock()
	defer s.logs.mu.Unlock()
	s.logs.buf = bytes.Buffer{}
}

// soakCall sends GET /api/v1/info with key and returns the status and body.
func soakCall(client *http.Client, base, key string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/info", nil)
	req.Header.Set("X-Api-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var compact map[string]any
	if json.Unmarshal(b, &compact) == nil {
		b, _ = json.Marshal(compact)
	}
	return resp.StatusCode, string(b)
}
