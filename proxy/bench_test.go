package proxy_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/proxy"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// staticUpstream answers every request in memory with the bench harness's 312-byte body, so the
// benchmark measures the gateway alone.
type staticUpstream struct{ body string }

func (s staticUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(s.body)), ContentLength: int64(len(s.body)), Request: r}, nil
}

// discardWriter is a ResponseWriter that allocates nothing per request.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkWarmPath measures a request for a known key whose user has a valid token: the real
// token manager (cache warm, so no Redis round trip), the real proxy, an in-memory upstream.
func BenchmarkWarmPath(b *testing.B) {
	for _, tc := range []struct {
		name string
		log  *zap.Logger
	}{
		{"nolog", zap.NewNop()},
		{"accesslog", zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h, key := warmHandler(b, tc.log)
			req := httptest.NewRequest(http.MethodGet, "/api/v1/movies", nil)
			req.Header.Set("X-Api-Key", key)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
			}
		})
	}
}

func warmHandler(b *testing.B, log *zap.Logger) (http.Handler, string) {
	mr := miniredis.RunT(b)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	b.Cleanup(func() { rdb.Close() })
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	kr, err := tokens.NewKeyring([]string{base64.StdEncoding.EncodeToString(raw)})
	if err != nil {
		b.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry(), "bench")
	store := tokens.NewStore(rdb, "agw:", kr, m, nil)
	mgr := tokens.NewManager(store, nil, m, tokens.ManagerOptions{CacheTTL: time.Hour})
	ctx := context.Background()
	_, key, err := store.IssueKey(ctx, "alice", nil, "bench", "")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	if _, err := store.PutConnection(ctx, tokens.Connection{User: "alice", Status: tokens.StatusActive,
		Scopes: []string{"connect", "read"}, AccessToken: "tok", RefreshToken: "rt",
		IssuedAt: now, AccessExpiresAt: now.Add(time.Hour), RefreshExpiresAt: now.Add(24 * time.Hour)}); err != nil {
		b.Fatal(err)
	}
	base, _ := url.Parse("http://academy.invalid/api/v2")
	h := proxy.New(mgr, proxy.Options{Upstream: base, StripPrefixes: []string{"/api/v1"}, Metrics: m, Logger: log,
		Transport: staticUpstream{body: strings.Repeat("x", 312)}})
	// Warm the caches.
	req := httptest.NewRequest(http.MethodGet, "/api/v1/movies", nil)
	req.Header.Set("X-Api-Key", key)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		b.Fatalf("warm-up request: %d %s", rec.Code, rec.Body)
	}
	return h, key
}
