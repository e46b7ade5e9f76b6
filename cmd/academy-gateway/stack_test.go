package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/sim"
)

// stack is a whole deployment for end-to-end tests: a real redis-server, the Academy simulator
// and any number of gateway replicas sharing them, all on loopback.
type stack struct {
	t      *testing.T
	redis  *redistest.Server
	sim    *sim.Server
	simURL string
	cfg    config.Config
	logs   *syncBuffer
}

// replica is one running gateway.
type replica struct {
	app      *app
	proxyURL string
	opsURL   string
	authURL  string             // the forward-auth listener, when the config sets listen.auth
	stop     context.CancelFunc // ends serve (also done when the test ends)
	done     chan struct{}      // closed when serve has returned
	err      error              // what serve returned, once done is closed
}

// syncBuffer collects every replica's logs for redaction checks.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newStack starts Redis and the simulator; minute is the simulator's (and the gateway's) minute.
func newStack(t *testing.T, minute time.Duration) *stack {
	t.Helper()
	s := &stack{t: t, redis: redistest.Start(t), logs: &syncBuffer{}}
	s.sim = sim.New(sim.Options{Minute: minute})
	simSrv := httptest.NewServer(s.sim)
	t.Cleanup(simSrv.Close)
	s.simURL = simSrv.URL
	s.cfg = demoConfig(s.simURL, "http://127.0.0.1:0", minute) // redirect fixed per replica below
	s.cfg.Redis.URL = s.redis.URL()
	s.cfg.Log = config.Log{Level: "info", Format: "json"}
	return s
}

// start runs one gateway replica on free loopback ports until the test ends. The first replica's
// proxy address becomes the OAuth2 redirect URL of all.
func (s *stack) start(mutate func(*config.Config)) *replica {
	return s.startWith(mutate, appOptions{managerInterval: time.Hour})
}

// startWith is start with explicit app options.
func (s *stack) startWith(mutate func(*config.Config), opts appOptions) *replica {
	t := s.t
	t.Helper()
	proxyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{proxyURL: "http://" + proxyLn.Addr().String(), opsURL: "http://" + opsLn.Addr().String()}
	if strings.Contains(s.cfg.OAuth.RedirectURL, "127.0.0.1:0") {
		s.cfg.OAuth.RedirectURL = r.proxyURL + "/oauth/callback"
	}
	cfg := s.cfg
	if mutate != nil {
		mutate(&cfg)
	}
	var authLn net.Listener
	if cfg.Listen.Auth != "" { // any value: a free loopback port
		if authLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		cfg.Listen.Auth = authLn.Addr().String()
		r.authURL = "http://" + cfg.Listen.Auth
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("stack config: %v", err)
	}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(s.logs), zap.DebugLevel))
	r.app, err = newApp(cfg, log, opts)
	if err != nil {
		t.Fatalf("new app: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop, r.done = cancel, make(chan struct{})
	go func() {
		r.err = r.app.serve(ctx, proxyLn, opsLn, authLn)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
		if r.err != nil {
			t.Errorf("serve: %v", r.err)
		}
		r.app.Close()
	})
	select { // revocations are only seen once the replica listens for them
	case <-r.app.watching:
	case <-time.After(10 * time.Second):
		t.Fatal("replica did not subscribe to invalidations within 10 s")
	}
	return r
}

// connect onboards user through the real HTTP flow as the simulator's academyUser and returns
// a new API key with the given scopes.
func (s *stack) connect(r *replica, user, academyUser string, scopes ...string) string {
	t := s.t
	t.Helper()
	ctx := context.Background()
	link, _, err := r.app.onboard.Authorize(ctx, user, false)
	if err != nil {
		t.Fatalf("authorize %s: %v", user, err)
	}
	if err := onboardViaHTTP(ctx, link, academyUser); err != nil {
		t.Fatalf("onboard %s: %v", user, err)
	}
	_, key, err := r.app.store.IssueKey(ctx, user, scopes, "test", "")
	if err != nil {
		t.Fatalf("issue key: %v", err)
	}
	return key
}

// call sends one request through a replica and returns the status and body.
func call(t *testing.T, method, url, key string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
