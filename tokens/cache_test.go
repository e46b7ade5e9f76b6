package tokens_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// gateHook counts the Redis commands of one name and holds the first one after arm until open
// is closed, so that a test can pile concurrent cache misses onto one refill.
type gateHook struct {
	name  string
	armed atomic.Bool
	n     atomic.Int32
	open  chan struct{}
}

func (h *gateHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *gateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.armed.Load() && cmd.Name() == h.name && h.n.Add(1) == 1 {
			<-h.open
		}
		return next(ctx, cmd)
	}
}

// TestCacheRefillIsSingleFlight: when a warm key's and a warm connection's cache entries expire
// while 200 requests use them, one Redis read refills each and every request gets its answer
// (the stampede of issue 13: one read per request that missed).
func TestCacheRefillIsSingleFlight(t *testing.T) {
	rs := redistest.Start(t)
	kr, err := tokens.NewKeyring([]string{testKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	rdb := rs.Client(t)
	hook := &gateHook{name: "hmget", open: make(chan struct{})}
	rdb.AddHook(hook)
	m := metrics.New(prometheus.NewRegistry(), "test")
	store := tokens.NewStore(rdb, "agw:", kr, m, nil)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	mgr := tokens.NewManager(store, nil, m, tokens.ManagerOptions{Now: clock, CacheTTL: time.Second})
	ctx := context.Background()
	_, key, err := store.IssueKey(ctx, "kim", nil, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutConnection(ctx, tokens.Connection{User: "kim", Status: tokens.StatusActive,
		AccessToken: "at", RefreshToken: "rt", IssuedAt: now, AccessExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		lookup func() error
	}{
		{"key", func() error { _, err := mgr.LookupKey(ctx, key); return err }},
		{"connection", func() error { _, err := mgr.Connection(ctx, "kim"); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.lookup(); err != nil { // warm
				t.Fatal(err)
			}
			mu.Lock()
			now = now.Add(2 * time.Second) // the entry is stale now
			mu.Unlock()
			hook.n.Store(0)
			hook.open = make(chan struct{})
			hook.armed.Store(true)
			defer hook.armed.Store(false)

			const n = 200
			var started atomic.Int32
			errs := make(chan error, n)
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					started.Add(1)
					errs <- tc.lookup()
				})
			}
			testutil.EventuallyTrue(t, 10*time.Second, "every lookup started", func() bool { return started.Load() == n && hook.n.Load() >= 1 })
			close(hook.open)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("lookup during the refill: %v", err)
				}
			}
			if got := hook.n.Load(); got != 1 {
				t.Errorf("%d concurrent lookups of a stale entry made %d Redis reads, want 1", n, got)
			}
		})
	}
}
