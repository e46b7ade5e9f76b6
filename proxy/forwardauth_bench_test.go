package proxy_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
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

// BenchmarkForwardAuthWarm measures one allowed check for a known key whose user has a valid
// token: the real token manager with warm caches (no Redis round trip) and the real handler.
func BenchmarkForwardAuthWarm(b *testing.B) {
	for _, tc := range []struct {
		name string
		log  *zap.Logger
	}{
		{"nolog", zap.NewNop()},
		{"accesslog", zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			mgr, m, key := warmTokens(b)
			fa := proxy.NewForwardAuth(mgr, proxy.ForwardAuthOptions{StripPrefixes: []string{"/api/v1"}, Metrics: m, Logger: tc.log})
			req := httptest.NewRequest(http.MethodGet, proxy.ForwardAuthPath, nil)
			req.Header.Set("X-Api-Key", key)
			req.Header.Set("X-Forwarded-Method", "GET")
			req.Header.Set("X-Forwarded-Uri", "/api/v1/movies?page=2")
			w := &discardWriter{h: http.Header{}}
			fa.ServeHTTP(w, req) // warm the caches
			if w.h.Get("Authorization") != "Bearer tok" {
				b.Fatalf("warm-up check: %v", w.h)
			}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				fa.ServeHTTP(w, req)
			}
		})
	}
}

// warmTokens returns a token manager over miniredis with one key of alice, connected with a
// token valid for an hour.
func warmTokens(b *testing.B) (*tokens.Manager, *metrics.Metrics, string) {
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
	return tokens.NewManager(store, nil, m, tokens.ManagerOptions{CacheTTL: time.Hour}), m, key
}
