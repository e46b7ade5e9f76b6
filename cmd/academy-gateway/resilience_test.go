package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// Resilience end to end (docs/reference.md §4 steps 3, 5, 6 and §6): what callers see while Redis restarts,
// while the Academy is slow, down or refusing refreshes, when a caller hangs up, and while a
// replica shuts down. Everything runs on 127.0.0.1 against real processes; every wait is a
// bounded poll.

// resClient bounds every request of these tests.
var resClient = &http.Client{Timeout: 10 * time.Second}

// ---------------------------------------------------------------------------------------------
// A restartable redis-server.

// resRedis is a redis-server this file controls: it can be killed and started again on the same
// port. With persist, every write is appended and fsynced to an AOF in dir before Redis answers
// it, so a restart from the same dir brings back everything any client saw acknowledged.
type resRedis struct {
	t       *testing.T
	bin     string
	dir     string
	port    int
	persist bool

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	out    *resRedisLog
}

// resRedisStart starts a redis-server on a free loopback port, stopped when the test ends.
// Without the binary the test is skipped, unless CI is set: CI must have it.
func resRedisStart(t *testing.T, persist bool) *resRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found but CI is set: .ci/run must install it (%v)", err)
		}
		t.Skip("redis-server not installed (apt-get install redis-server); skipping")
	}
	r := &resRedis{t: t, bin: bin, dir: t.TempDir(), persist: persist}
	t.Cleanup(r.stop)
	for attempt := 0; attempt < 5; attempt++ {
		if r.port, err = resFreePort(); err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		if err = r.launch(); err == nil {
			return r
		}
		t.Logf("redis-server on port %d: %v (retrying on another port)", r.port, err)
	}
	t.Fatalf("redis-server did not start after 5 attempts: %v", err)
	return nil
}

func (r *resRedis) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }
func (r *resRedis) url() string  { return "redis://" + r.addr() + "/0" }

// launch runs redis-server on r.port with r.dir and waits (at most 10 s) until it accepts
// connections, which is after it loaded its AOF.
func (r *resRedis) launch() error {
	args := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(r.port), "--save", "", "--dir", r.dir}
	if r.persist {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	out := newResRedisLog()
	cmd := exec.Command(r.bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	r.cmd, r.exited, r.out = cmd, exited, out
	select {
	case <-out.ready:
		return resPing(r.addr())
	case <-exited:
		r.cmd = nil
		return fmt.Errorf("redis-server exited before it was ready:\n%s", out.String())
	case <-time.After(10 * time.Second):
		r.stop()
		return fmt.Errorf("redis-server not ready within 10 s:\n%s", out.String())
	}
}

// stop kills redis-server (a crash, not a clean shutdown) and waits for it to exit.
func (r *resRedis) stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
}

// restart starts redis-server again on the same port and from the same directory.
func (r *resRedis) restart() {
	r.t.Helper()
	if err := r.launch(); err != nil {
		r.t.Fatalf("restart redis-server on %s: %v", r.addr(), err)
	}
}

// resRedisLog collects redis-server's output and closes ready once it accepts connections.
type resRedisLog struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	seen  bool
}

func newResRedisLog() *resRedisLog { return &resRedisLog{ready: make(chan struct{})} }

func (l *resRedisLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() < 64<<10 { // enough for a failure message; the rest is dropped
		l.buf.Write(p)
	}
	if !l.seen && strings.Contains(l.buf.String(), "Ready to accept connections") {
		l.seen = true
		close(l.ready)
	}
	return len(p), nil
}

func (l *resRedisLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func resPing(addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping %s: %w", addr, err)
	}
	return nil
}

func resFreePort() (int, error) { return redistest.FreePort() }

// ---------------------------------------------------------------------------------------------
// A simulator front that can be observed and closed.

// resTap serves the stack's simulator from a server of its own, counting the requests that
// reached it by path (sim.Stats counts only OAuth events), so a test can wait for "the Academy
// has received the request" and can take the Academy down with Close.
type resTap struct {
	srv     *httptest.Server
	mu      sync.Mutex
	arrived map[string]int
}

// resUseTap puts a resTap in front of s.sim and points the stack's configuration at it; call it
// before starting replicas.
func resUseTap(t *testing.T, s *stack) *resTap {
	t.Helper()
	tap := &resTap{arrived: map[string]int{}}
	tap.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tap.mu.Lock()
		tap.arrived[r.URL.Path]++
		tap.mu.Unlock()
		s.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(tap.srv.Close)
	u := tap.srv.URL
	s.simURL = u
	s.cfg.Upstream.BaseURL = u
	s.cfg.OAuth.AuthorizeURL = u + "/authorize"
	s.cfg.OAuth.TokenURL = u + "/token"
	s.cfg.OAuth.RefreshURL = u + "/refresh"
	s.cfg.OAuth.InvalidateURL = u + "/invalidate"
	return tap
}

func (tap *resTap) count(path string) int {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return tap.arrived[path]
}

// waitArrived polls until at least n requests for path reached the simulator.
func (tap *resTap) waitArrived(t *testing.T, path string, n int, within time.Duration) {
	t.Helper()
	testutil.Eventually(t, within, func() error {
		if got := tap.count(path); got < n {
			return fmt.Errorf("%d requests for %s reached the simulator, want %d", got, path, n)
		}
		return nil
	})
}

// ---------------------------------------------------------------------------------------------
// Requests, answers and metrics.

// resAnswer is what a caller saw: the status and, for a gateway error, its code.
type resAnswer struct {
	Status int
	Code   string // empty: no gateway error body
}

// resErrorBody is the gateway's JSON error of docs/reference.md §4 step 6.
type resErrorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	} `json:"error"`
}

// resGet sends GET url with key (none when empty) through resClient and returns the response
// (body read and closed) and its body.
func resGet(t *testing.T, ctx context.Context, url, key string) (*http.Response, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	resp, err := resClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	return resp, b.String(), err
}

// resAsk sends GET url and returns the answer; a gateway error (status ≥ 400) must be the JSON
// of docs/reference.md §4 step 6, with a message and a request id.
func resAsk(t *testing.T, url, key string) (resAnswer, *http.Response) {
	t.Helper()
	resp, body, err := resGet(t, context.Background(), url, key)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	a := resAnswer{Status: resp.StatusCode}
	if resp.StatusCode >= 400 {
		var e resErrorBody
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("GET %s = %d with Content-Type %q, want JSON; body %s", url, resp.StatusCode, ct, body)
		}
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" || e.Error.RequestID == "" {
			t.Errorf("GET %s = %d with body %s, want {\"error\":{\"code\",\"message\",\"request_id\"}}", url, resp.StatusCode, body)
		}
		a.Code = e.Error.Code
	}
	return a, resp
}

// resMetric scrapes r's ops listener and sums the series of the counter or gauge name whose
// labels include every pair of want.
func resMetric(t *testing.T, r *replica, name string, want map[string]string) float64 {
	t.Helper()
	resp, body, err := resGet(t, context.Background(), r.opsURL+"/metrics", "")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	var sum float64
	mf := mfs[name]
series:
	for _, m := range mf.GetMetric() {
		for k, v := range want {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == k && lp.GetValue() == v)
			}
			if !found {
				continue series
			}
		}
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum
}

// resRequests is the requests_total series of a GET with status code and outcome.
func resRequests(t *testing.T, r *replica, code int, outcome string) float64 {
	t.Helper()
	return resMetric(t, r, "academy_gateway_requests_total",
		map[string]string{"method": "GET", "code": strconv.Itoa(code), "outcome": outcome})
}

// resReady returns the status of GET /readyz.
func resReady(t *testing.T, r *replica) int {
	t.Helper()
	resp, _, err := resGet(t, context.Background(), r.opsURL+"/readyz", "")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	return resp.StatusCode
}

// resAcademyID returns the simulator's id of the demo user whose name starts with first.
func resAcademyID(t *testing.T, s *stack, first string) string {
	t.Helper()
	for _, u := range s.sim.Users() {
		if strings.HasPrefix(u.Name, first) {
			return u.ID
		}
	}
	t.Fatalf("no simulator user named %s", first)
	return ""
}

// ---------------------------------------------------------------------------------------------
// TestRedisRestartRecovers.

// TestRedisRestartRecovers: docs/reference.md §6. Redis is killed under two replicas and started again on the
// same port. While it is away, the warm user is served from the cache (even past the cache's
// TTL), an unknown key gets 503 token_store_unavailable with Retry-After and /readyz says 503.
// Once it is back, /readyz recovers, the data is still there, and a revocation reaches a replica
// whose caches live an hour, which only a re-established invalidation subscription can explain.
//
// Redis runs with an fsynced AOF (appendfsync always) and is SIGKILLed, then restarted from the
// same directory: a real crash and restart drops every TCP connection, the pub/sub one included,
// which is what the resubscription must survive. Pausing Redis (DEBUG SLEEP, CLIENT PAUSE) would
// keep the subscriber's connection open and so would not exercise it.
func TestRedisRestartRecovers(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	rr := resRedisStart(t, true)
	s.cfg.Redis.URL = rr.url()
	// The user is onboarded through a replica of its own, before a and b subscribe: the
	// invalidations that creating the connection and the key publish can then never reach a or
	// b after their first request and drop what that request cached (a late message would
	// leave nothing cached to serve while Redis is down).
	const user = "rosa"
	onboarder := s.startWith(nil, appOptions{managerInterval: time.Hour})
	key := s.connect(onboarder, user, "john", "read")
	a := s.startWith(nil, appOptions{managerInterval: time.Hour})                      // 1 s cache TTL
	b := s.startWith(nil, appOptions{managerInterval: time.Hour, cacheTTL: time.Hour}) // pub/sub only
	replicas := []*replica{a, b}
	subscribed := int64(len(replicas) + 1) // with the onboarder
	movies := "/api/v1/movies"
	for i, r := range replicas {
		if got, _ := resAsk(t, r.proxyURL+movies, key); got.Status != http.StatusOK {
			t.Fatalf("replica %d before the outage: %+v, want 200", i, got)
		}
	}

	// The invalidation channel and its subscribers, as Redis sees them.
	rc := redis.NewClient(&redis.Options{Addr: rr.addr()})
	t.Cleanup(func() { rc.Close() })
	chans, err := rc.PubSubChannels(t.Context(), "*").Result()
	if err != nil || len(chans) != 1 {
		t.Fatalf("PUBSUB CHANNELS = %v, %v; want the one invalidation channel", chans, err)
	}
	channel := chans[0]
	subscribers := func() int64 {
		n, err := rc.PubSubNumSub(t.Context(), channel).Result()
		if err != nil {
			return -1
		}
		return n[channel]
	}
	if got := subscribers(); got != subscribed {
		t.Fatalf("%s has %d subscribers before the outage, want %d", channel, got, subscribed)
	}

	rr.stop()

	if got := resReady(t, a); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down = %d, want 503", got)
	}
	// The warm user: poll until a request has gone past the 1 s cache (a cache miss, answered
	// from the stale entry because Redis failed); every answer meanwhile must be 200.
	misses := func() float64 {
		return resMetric(t, a, "academy_gateway_token_cache_lookups_total", map[string]string{"result": "miss"})
	}
	var staleTook time.Duration
	testutil.Eventually(t, 5*time.Second, func() error {
		before := misses()
		asked := time.Now()
		got, _ := resAsk(t, a.proxyURL+movies, key)
		staleTook = time.Since(asked)
		if got.Status != http.StatusOK {
			t.Fatalf("warm user with Redis down: %+v, want 200 from the cache", got)
		}
		if misses() > before {
			return nil // served although the cache entry was stale and Redis unreachable
		}
		return errors.New("no request went past the 1 s cache")
	})
	if got, _ := resAsk(t, b.proxyURL+movies, key); got.Status != http.StatusOK {
		t.Errorf("warm user on the 1 h cache replica with Redis down: %+v, want 200", got)
	}
	asked := time.Now()
	got, resp := resAsk(t, a.proxyURL+movies, tokens.NewAPIKey())
	unknownTook := time.Since(asked)
	if diff := cmp.Diff(resAnswer{http.StatusServiceUnavailable, "token_store_unavailable"}, got); diff != "" {
		t.Errorf("unknown key with Redis down (-want +got):\n%s", diff)
	}
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n <= 0 {
		t.Errorf("Retry-After = %q, want a positive number of seconds", resp.Header.Get("Retry-After"))
	}

	// How fast the answers come is a measurement, not an assertion: failFast's settings are
	// checked in TestRedisClientFailsFast.
	t.Logf("with Redis refusing connections: stale-cache 200 in %v, 503 in %v", staleTook, unknownTook)

	rr.restart()

	for i, r := range replicas {
		testutil.Eventually(t, 10*time.Second, func() error {
			if got := resReady(t, r); got != http.StatusOK {
				return fmt.Errorf("replica %d: /readyz = %d after Redis came back, want 200", i, got)
			}
			return nil
		})
	}
	// The data survived the restart (read from Redis, not from a cache).
	if c, err := a.app.store.Connection(t.Context(), user); err != nil || c.Status != tokens.StatusActive {
		t.Fatalf("connection after the restart: %+v, %v", c, err)
	}
	keys, err := a.app.store.Keys(t.Context(), user)
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys after the restart: %v, %v; want the one key", keys, err)
	}
	for i, r := range replicas {
		if got, _ := resAsk(t, r.proxyURL+movies, key); got.Status != http.StatusOK {
			t.Errorf("replica %d after the restart: %+v, want 200", i, got)
		}
	}

	// Every replica subscribes again (bounded), then a revocation must reach the 1 h cache.
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := subscribers(); got != subscribed {
			return fmt.Errorf("%s has %d subscribers after Redis came back, want %d", channel, got, subscribed)
		}
		return nil
	})
	began := time.Now()
	if _, err := a.app.store.DeleteKey(t.Context(), keys[0].ID); err != nil {
		t.Fatalf("delete key: %v", err)
	}
	testutil.Eventually(t, time.Until(began.Add(3*time.Second)), func() error {
		if got, _ := resAsk(t, b.proxyURL+movies, key); got != (resAnswer{http.StatusUnauthorized, "invalid_api_key"}) {
			return fmt.Errorf("the 1 h cache replica still answers %+v after the key was revoked: the invalidation subscription did not come back", got)
		}
		return nil
	})
	t.Logf("revocation after the Redis restart reached the 1 h cache replica in %v", time.Since(began))
}

// ---------------------------------------------------------------------------------------------
// TestAcademyFailuresAreClassified.

// resEnv is one row's deployment: a stack behind a tap, one replica, one connected user.
type resEnv struct {
	s         *stack
	tap       *resTap
	r         *replica
	user      string
	academyID string
	key       string
	conn      tokens.Connection // as stored after the first request
	simBefore struct{ refreshFailures int }
}

// resClientGone sends a request that the caller abandons once the simulator holds it (the
// simulator delays); the caller sees no answer at all (Status 0).
func resClientGone(t *testing.T, e *resEnv) resAnswer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, _, err := resGet(t, ctx, e.r.proxyURL+"/api/v1/movies", e.key)
		errc <- err
	}()
	e.tap.waitArrived(t, "/movies", 2, 5*time.Second) // the first request was the warm-up
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("abandoned request ended with %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("abandoned request did not end within 5 s of its cancellation")
	}
	return resAnswer{}
}

// TestAcademyFailuresAreClassified: docs/reference.md §4 steps 3, 5 and 6. Each way the Academy can fail ends
// in its own answer and metric; none crashes the gateway.
func TestAcademyFailuresAreClassified(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		minute  time.Duration // of the simulator and the gateway
		mutate  func(*config.Config)
		arrange func(t *testing.T, e *resEnv)           // after the first 200
		send    func(t *testing.T, e *resEnv) resAnswer // nil: one GET of movies
		want    resAnswer
		outcome string // of academy_gateway_requests_total
		check   func(t *testing.T, e *resEnv)
	}{
		{
			name:    "slower than upstream.timeout",
			minute:  time.Minute,
			mutate:  func(c *config.Config) { c.Upstream.Timeout = config.Duration(200 * time.Millisecond) },
			arrange: func(t *testing.T, e *resEnv) { e.s.sim.SetDelay(3 * time.Second) },
			want:    resAnswer{http.StatusGatewayTimeout, "upstream_timeout"},
			outcome: "upstream_error", // a 200 after the 3 s delay would mean the timeout did not fire
		},
		{
			name:    "academy down",
			minute:  time.Minute,
			arrange: func(t *testing.T, e *resEnv) { e.tap.srv.Close() },
			want:    resAnswer{http.StatusBadGateway, "upstream_unavailable"},
			outcome: "upstream_error",
		},
		{
			// minute 200ms: tokens live 1 s, refresh_before is capped at half of that.
			name:   "proactive refresh fails while the token is valid",
			minute: 200 * time.Millisecond,
			arrange: func(t *testing.T, e *resEnv) {
				e.s.sim.FailRefreshes(100)
				needAt := e.conn.AccessExpiresAt.Add(-e.conn.AccessExpiresAt.Sub(e.conn.IssuedAt) / 2)
				testutil.Eventually(t, time.Second, func() error { // needAt is at most half a second away
					if time.Now().After(e.conn.AccessExpiresAt) {
						t.Fatal("the token expired before the refresh window was reached")
					}
					if !time.Now().After(needAt) {
						return errors.New("the refresh window was not reached")
					}
					return nil
				})
			},
			want:    resAnswer{http.StatusOK, ""},
			outcome: "forwarded",
			check: func(t *testing.T, e *resEnv) {
				got := resMetric(t, e.r, "academy_gateway_token_refreshes_total", map[string]string{"trigger": "proactive", "result": "error"})
				if got != 1 {
					t.Errorf("token_refreshes_total{trigger=proactive,result=error} = %v, want 1", got)
				}
				if got := e.s.sim.Stats().RefreshFailures - e.simBefore.refreshFailures; got != 1 {
					t.Errorf("the Academy failed %d refreshes, want 1", got)
				}
				c, err := e.r.app.store.Connection(t.Context(), e.user)
				if err != nil || c.AccessToken != e.conn.AccessToken || c.Version != e.conn.Version {
					t.Errorf("stored connection changed (version %d → %d, same token %v, err %v): want the current token kept",
						e.conn.Version, c.Version, c.AccessToken == e.conn.AccessToken, err)
				}
			},
		},
		{
			name:   "refresh token expired",
			minute: time.Minute,
			arrange: func(t *testing.T, e *resEnv) {
				e.s.sim.ExpireRefreshTokens(e.academyID)
				e.s.sim.ExpireAccessTokens(e.academyID)
			},
			want:    resAnswer{http.StatusUnauthorized, "reauthorization_required"},
			outcome: "reauthorization_required",
			check: func(t *testing.T, e *resEnv) {
				req, _ := http.NewRequest(http.MethodGet, e.r.opsURL+"/admin/connections/"+e.user, nil)
				req.Header.Set("Authorization", "Bearer "+e.s.cfg.Security.AdminToken)
				resp, err := resClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var c struct{ User, Status string }
				if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("GET /admin/connections/%s = %d, %v", e.user, resp.StatusCode, err)
				}
				if diff := cmp.Diff(struct{ User, Status string }{e.user, "reauth_required"}, c); diff != "" {
					t.Errorf("admin connection (-want +got):\n%s", diff)
				}
				got := resMetric(t, e.r, "academy_gateway_token_refreshes_total", map[string]string{"trigger": "reactive", "result": "invalid_grant"})
				if got != 1 {
					t.Errorf("token_refreshes_total{trigger=reactive,result=invalid_grant} = %v, want 1", got)
				}
			},
		},
		{
			name:    "client hangs up while the Academy is slow",
			minute:  time.Minute,
			arrange: func(t *testing.T, e *resEnv) { e.s.sim.SetDelay(5 * time.Second) },
			send:    resClientGone,
			want:    resAnswer{},
			outcome: "upstream_error",
			check: func(t *testing.T, e *resEnv) {
				e.s.sim.SetDelay(0)
				if got, _ := resAsk(t, e.r.proxyURL+"/api/v1/movies", e.key); got.Status != http.StatusOK {
					t.Errorf("after the hang-up: %+v, want 200", got)
				}
				if logs := e.s.logs.String(); strings.Contains(logs, "panic") {
					t.Errorf("the gateway logged a panic:\n%s", logs)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := &resEnv{s: newStack(t, tt.minute), user: "una"}
			e.tap = resUseTap(t, e.s)
			e.r = e.s.startWith(tt.mutate, appOptions{managerInterval: time.Hour})
			e.key = e.s.connect(e.r, e.user, "john", "read")
			e.academyID = resAcademyID(t, e.s, "John")
			if got, _ := resAsk(t, e.r.proxyURL+"/api/v1/movies", e.key); got.Status != http.StatusOK {
				t.Fatalf("first request: %+v, want 200", got)
			}
			var err error
			if e.conn, err = e.r.app.store.Connection(t.Context(), e.user); err != nil {
				t.Fatal(err)
			}
			e.simBefore.refreshFailures = e.s.sim.Stats().RefreshFailures
			tt.arrange(t, e)

			wantCode := tt.want.Status
			if wantCode == 0 {
				wantCode = 499 // logged and counted, never sent: the caller is gone
			}
			counted := resRequests(t, e.r, wantCode, tt.outcome)
			var got resAnswer
			if tt.send != nil {
				got = tt.send(t, e)
			} else {
				got, _ = resAsk(t, e.r.proxyURL+"/api/v1/movies", e.key)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			// The request is counted when its handler returns, which may be after the caller
			// has its answer (or, for a hang-up, gave up): poll.
			testutil.Eventually(t, 5*time.Second, func() error {
				if resRequests(t, e.r, wantCode, tt.outcome) < counted+1 {
					return fmt.Errorf("requests_total{method=GET,code=%d,outcome=%s} did not increase", wantCode, tt.outcome)
				}
				return nil
			})
			if got := resRequests(t, e.r, wantCode, tt.outcome) - counted; got != 1 {
				t.Errorf("requests_total{method=GET,code=%d,outcome=%s} rose by %v, want 1", wantCode, tt.outcome, got)
			}
			if tt.check != nil {
				tt.check(t, e)
			}
		})
	}
}

// ---------------------------------------------------------------------------------------------
// TestGracefulShutdownDrains.

// TestGracefulShutdownDrains: a replica told to stop while a request waits on the Academy
// finishes that request (200), then serve returns nil and the listeners refuse connections.
// "The Academy has the request" is observed on the tap in front of the simulator, which counts
// the requests that reached it: sim.Stats has no counter for resource requests.
func TestGracefulShutdownDrains(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	tap := resUseTap(t, s)
	r := s.startWith(nil, appOptions{managerInterval: time.Hour})
	key := s.connect(r, "dora", "jane", "read")
	s.sim.SetDelay(500 * time.Millisecond)

	type result struct {
		status int
		err    error
	}
	answered := make(chan result, 1)
	go func() {
		resp, _, err := resGet(t, context.Background(), r.proxyURL+"/api/v1/movies", key)
		if err != nil {
			answered <- result{err: err}
			return
		}
		answered <- result{status: resp.StatusCode}
	}()
	tap.waitArrived(t, "/movies", 1, 5*time.Second)
	r.stop()

	select {
	case res := <-answered:
		if res.err != nil || res.status != http.StatusOK {
			t.Errorf("in-flight request during shutdown: %d, %v; want 200", res.status, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight request not answered within 10 s of the shutdown")
	}
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("serve = %v, want nil", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return within 10 s of the shutdown")
	}
	for _, u := range []string{r.proxyURL, r.opsURL} {
		addr := strings.TrimPrefix(u, "http://")
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s accepts connections after the shutdown", addr)
		}
	}
}
