package tokens

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/academy-gateway/academy-gateway/metrics"
)

// randomLegacyKey returns a never-registered key of the legacy form (no agw_ prefix, so it passes
// WellFormed and only a lookup can refuse it).
func randomLegacyKey(t *testing.T) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func newFilterStore(t *testing.T, rdb redis.UniversalClient) (*Store, *metrics.Metrics) {
	t.Helper()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	kr, err := NewKeyring([]string{base64.StdEncoding.EncodeToString(raw)})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry(), "test")
	return NewStore(rdb, "agw:", kr, m, nil), m
}

// watch runs mg.Watch until the test ends and returns how many times it (re)subscribed.
func watch(t *testing.T, mg *Manager) func() int {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	var mu sync.Mutex
	subscribed := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		mg.Watch(ctx, func() { mu.Lock(); subscribed++; mu.Unlock() })
	})
	t.Cleanup(func() { stop(); wg.Wait() })
	return func() int { mu.Lock(); defer mu.Unlock(); return subscribed }
}

func keyReads(m *metrics.Metrics) float64 {
	return promtest.ToFloat64(m.StoreOperations.WithLabelValues("get_key", "ok"))
}

// TestInvalidKeyFloodIsBounded (issue 14 item 8): random never-registered keys cost bounded
// memory before the key filter is built (the negative cache keeps its bound and never evicts
// the record of a key in use), and once it is built no more Redis reads than the budget for
// unknown keys (10 per second here, on a clock that stands still), nothing cached.
func TestInvalidKeyFloodIsBounded(t *testing.T) {
	rs := redistest.Start(t)
	store, m := newFilterStore(t, rs.Client(t))
	now := time.Now()
	mg := NewManager(store, nil, m, ManagerOptions{CacheSize: 1000, CacheTTL: time.Hour, Interval: time.Hour,
		UnknownKeyReads: 10, Now: func() time.Time { return now }})
	ctx := context.Background()
	_, good, err := store.IssueKey(ctx, "lee", nil, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mg.LookupKey(ctx, good); err != nil {
		t.Fatal(err)
	}
	flood := func(n int) {
		t.Helper()
		for range n {
			if _, err := mg.LookupKey(ctx, randomLegacyKey(t)); !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("LookupKey(random key) = %v, want ErrUnknownKey", err)
			}
		}
	}

	// Before the filter is built: Redis answers (no budget), the negative cache keeps its bound.
	before := keyReads(m)
	flood(3000)
	if got := keyReads(m) - before; got != 3000 {
		t.Errorf("Redis key reads for 3000 random keys before the filter = %v, want 3000", got)
	}
	answers, negative := mg.keys.size()
	if answers != 1 || negative > negativeSize(1000) {
		t.Errorf("key cache after the flood = %d answers, %d negative; want 1 and at most %d", answers, negative, negativeSize(1000))
	}

	// Once built: the budget's reads, then none; no growth beyond the negative cache's bound.
	watch(t, mg)
	testutil.EventuallyTrue(t, 10*time.Second, "key filter built", func() bool { _, built := mg.KeyFilter(); return built })
	if n, _ := mg.KeyFilter(); n != 1 {
		t.Errorf("key filter holds %d ids, want 1", n)
	}
	before = keyReads(m)
	flood(3000)
	if got := keyReads(m) - before; got != 10 {
		t.Errorf("Redis key reads for 3000 random keys with the filter = %v, want the budget of 10", got)
	}
	if _, neg := mg.keys.size(); neg > negativeSize(1000) {
		t.Errorf("negative cache holds %d entries with the filter, want at most %d", neg, negativeSize(1000))
	}
	if n, _ := mg.KeyFilter(); n != 1 {
		t.Errorf("key filter holds %d ids after the flood, want 1", n)
	}
	if _, err := mg.LookupKey(ctx, good); err != nil {
		t.Errorf("registered key after the flood: %v", err)
	}
}

// TestKeyFilterFollowsOtherReplicas: a key created on another replica is accepted as soon as its
// announcement arrives, and refused once revoked there (cache TTL and rebuild interval are an
// hour, so only the invalidation channel can explain either).
func TestKeyFilterFollowsOtherReplicas(t *testing.T) {
	rs := redistest.Start(t)
	store, m := newFilterStore(t, rs.Client(t))
	mg := NewManager(store, nil, m, ManagerOptions{CacheTTL: time.Hour, Interval: time.Hour, UnknownKeyReads: -1})
	other, _ := newFilterStore(t, rs.Client(t))
	ctx := context.Background()
	watch(t, mg)
	testutil.EventuallyTrue(t, 10*time.Second, "key filter built", func() bool { _, built := mg.KeyFilter(); return built })

	for _, form := range []string{"issued", "legacy"} {
		t.Run(form, func(t *testing.T) {
			existing := ""
			if form == "legacy" {
				existing = randomLegacyKey(t)
			}
			k, key, err := other.IssueKey(ctx, "max", nil, "", existing)
			if err != nil {
				t.Fatal(err)
			}
			// No budget for unknown keys here: only the announcement can let the key in.
			testutil.EventuallyTrue(t, 10*time.Second, "new key accepted", func() bool { _, err := mg.LookupKey(ctx, key); return err == nil })
			if _, err := other.DeleteKey(ctx, k.ID); err != nil {
				t.Fatal(err)
			}
			testutil.EventuallyTrue(t, 10*time.Second, "revoked key refused", func() bool {
				_, err := mg.LookupKey(ctx, key)
				return errors.Is(err, ErrUnknownKey)
			})
		})
	}
}

// noPublish swallows PUBLISH: the writes of a replica whose announcements are lost.
type noPublish struct{}

func (noPublish) DialHook(next redis.DialHook) redis.DialHook { return next }
func (noPublish) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (noPublish) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "publish" {
			return nil
		}
		return next(ctx, cmd)
	}
}

// TestKeyFilterRebuiltAfterResubscribe: a key whose announcement was lost is refused until the
// subscription drops and comes back (go-redis resubscribes on its own), which rebuilds the filter.
// A bulk write's KeysChanged rebuilds it too.
func TestKeyFilterRebuiltAfterResubscribe(t *testing.T) {
	rs := redistest.Start(t)
	store, m := newFilterStore(t, rs.Client(t))
	mg := NewManager(store, nil, m, ManagerOptions{CacheTTL: time.Hour, Interval: time.Hour, UnknownKeyReads: -1})
	quiet := rs.Client(t)
	quiet.AddHook(noPublish{})
	silent, _ := newFilterStore(t, quiet)
	ctx := context.Background()
	subscribed := watch(t, mg)
	testutil.EventuallyTrue(t, 10*time.Second, "key filter built", func() bool { _, built := mg.KeyFilter(); return built })

	_, key, err := silent.IssueKey(ctx, "ned", nil, "", randomLegacyKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mg.LookupKey(ctx, key); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unannounced key = %v, want ErrUnknownKey until the filter is rebuilt", err)
	}
	if err := rs.Client(t).ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyTrue(t, 10*time.Second, "resubscribed", func() bool { return subscribed() >= 2 })
	testutil.EventuallyTrue(t, 10*time.Second, "unannounced key accepted after the rebuild", func() bool { _, err := mg.LookupKey(ctx, key); return err == nil })

	_, key2, err := silent.IssueKey(ctx, "ned", nil, "", randomLegacyKey(t))
	if err != nil {
		t.Fatal(err)
	}
	store.KeysChanged(ctx)
	testutil.EventuallyTrue(t, 10*time.Second, "key accepted after KeysChanged", func() bool { _, err := mg.LookupKey(ctx, key2); return err == nil })
}

// TestUnannouncedKeyWithinBudget: a key registered by a replica whose announcement has not
// arrived (here: never will) is accepted at once through the budget for unknown keys, and joins
// the filter, so later requests need no budget.
func TestUnannouncedKeyWithinBudget(t *testing.T) {
	rs := redistest.Start(t)
	store, m := newFilterStore(t, rs.Client(t))
	mg := NewManager(store, nil, m, ManagerOptions{CacheTTL: time.Hour, Interval: time.Hour, UnknownKeyReads: 1})
	quiet := rs.Client(t)
	quiet.AddHook(noPublish{})
	silent, _ := newFilterStore(t, quiet)
	ctx := context.Background()
	watch(t, mg)
	testutil.EventuallyTrue(t, 10*time.Second, "key filter built", func() bool { _, built := mg.KeyFilter(); return built })

	_, key, err := silent.IssueKey(ctx, "ora", nil, "", randomLegacyKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mg.LookupKey(ctx, key); err != nil {
		t.Fatalf("unannounced key within the budget = %v, want accepted", err)
	}
	if n, _ := mg.KeyFilter(); n != 1 {
		t.Errorf("key filter holds %d ids, want the unannounced key's", n)
	}
	for range 5 { // the budget (1 per second) is spent: these must not need it
		if _, err := mg.LookupKey(ctx, key); err != nil {
			t.Fatalf("the key again = %v", err)
		}
	}
}
