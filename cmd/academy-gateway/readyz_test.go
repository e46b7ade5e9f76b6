package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
)

// TestReadyzNamesTheCause: docs/reference.md §5, issue 8. /readyz's 503 names what failed, as the Redis
// client said it (the runbook's first diagnostic step reads this line), for a Redis that is down
// when the gateway starts and for one that stops later; never "redis: <nil>".
func TestReadyzNamesTheCause(t *testing.T) {
	t.Parallel()
	// A loopback port nobody listens on: taken, then freed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	tests := []struct {
		name string
		// redisURL returns the Redis of the gateway, and stop, called after a first 200 (nil: no
		// first 200 is expected, Redis is down from the start).
		redisURL func(t *testing.T) (url string, stop func())
		want     *regexp.Regexp
	}{
		{
			name:     "down at start",
			redisURL: func(*testing.T) (string, func()) { return "redis://" + closed + "/0", nil },
			want:     regexp.MustCompile(`^not ready: redis: dial tcp ` + regexp.QuoteMeta(closed) + `: connect: connection refused\n$`),
		},
		{
			name: "stopped later",
			redisURL: func(t *testing.T) (string, func()) {
				rs := redistest.Start(t)
				return rs.URL(), rs.Stop
			},
			// The pooled connection breaks first (EOF or reset), the one retry then dials.
			want: regexp.MustCompile(`^not ready: redis: (dial tcp 127\.0\.0\.1:\d+: connect: connection refused|EOF|read tcp .*: connection reset by peer)\n$`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := demoConfig("http://127.0.0.1:1", "http://127.0.0.1:2", time.Minute)
			url, stop := tt.redisURL(t)
			cfg.Redis.URL = url
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			a, err := newApp(cfg, zap.NewNop(), appOptions{})
			if err != nil {
				t.Fatalf("new app: %v", err)
			}
			t.Cleanup(a.Close)
			ops := a.opsHandler()
			readyz := func() (int, string) {
				rec := httptest.NewRecorder()
				ops.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
				body, _ := io.ReadAll(rec.Body)
				return rec.Code, string(body)
			}
			if stop != nil {
				if code, body := readyz(); code != http.StatusOK || body != "ready\n" {
					t.Fatalf("/readyz with Redis up = %d %q, want 200 \"ready\\n\"", code, body)
				}
				stop()
			}
			code, body := readyz()
			if code != http.StatusServiceUnavailable || !tt.want.MatchString(body) {
				t.Errorf("/readyz = %d %q, want 503 matching %s", code, body, tt.want)
			}
		})
	}
}
