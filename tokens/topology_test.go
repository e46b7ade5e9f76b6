package tokens_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	eventually "github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// deployment is one running Redis topology as the gateway reaches it: through a
// redis.UniversalClient.
type deployment struct {
	// client returns a new client of the deployment, closed when the test ends; each replica of
	// a test gets its own, as separate processes would.
	client func(t *testing.T) redis.UniversalClient
	// cluster is a cluster client when the deployment is a Redis Cluster, else nil.
	cluster *redis.ClusterClient
	// nodes are the addresses of the Cluster's masters (nil unless a Cluster).
	nodes []string
}

// topologies are the Redis deployments docs/reference.md §6 promises to work with.
var topologies = []struct {
	name  string
	start func(t *testing.T) deployment
}{
	{"single", func(t *testing.T) deployment {
		rs := redistest.Start(t)
		return deployment{client: func(t *testing.T) redis.UniversalClient { return rs.Client(t) }}
	}},
	{"cluster", func(t *testing.T) deployment {
		rc := redistest.StartCluster(t)
		return deployment{
			client:  func(t *testing.T) redis.UniversalClient { return rc.Client(t) },
			cluster: rc.Client(t),
			nodes:   rc.Addrs,
		}
	}},
	{"sentinel", func(t *testing.T) deployment {
		rs := redistest.StartSentinel(t)
		return deployment{client: func(t *testing.T) redis.UniversalClient { return rs.Client(t) }}
	}},
}

// TestStoreTopologies runs the store conformance suite against a single Redis, a Cluster and a
// Sentinel-managed master.
func TestStoreTopologies(t *testing.T) {
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			t.Parallel() // the topologies start (the Cluster takes seconds) side by side
			runStoreConformance(t, tp.start(t))
		})
	}
}

// pair is two replicas over one deployment: separate clients, stores and managers, the same
// key prefix, encryption key and Academy.
type pair struct {
	a, b    instance
	academy *rotatingAcademy
	prefix  string
}

// newPair builds two replicas whose keys live under prefix (each subtest uses its own, so the
// subtests share a deployment without seeing each other's keys).
func newPair(t *testing.T, d deployment, prefix string, opts tokens.ManagerOptions) pair {
	t.Helper()
	f := newRotatingAcademy(t)
	key := testKey(t)
	return pair{
		a:       newClientInstance(t, d.client(t), prefix, key, f, opts),
		b:       newClientInstance(t, d.client(t), prefix, key, f, opts),
		academy: f,
		prefix:  prefix,
	}
}

// newClientInstance is newInstance over any client and prefix.
func newClientInstance(t *testing.T, rdb redis.UniversalClient, prefix, key string, academy *rotatingAcademy, opts tokens.ManagerOptions) instance {
	t.Helper()
	kr, err := tokens.NewKeyring([]string{key})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry(), "test")
	store := tokens.NewStore(rdb, prefix, kr, m, nil)
	ac := tokens.NewAcademy(academy.Client(), tokens.AcademyConfig{
		ClientID: "c", ClientSecret: "s", RefreshURL: academy.URL + "/refresh", Backoff: time.Millisecond,
	})
	return instance{store: store, mgr: tokens.NewManager(store, ac, m, opts), m: m}
}

// runStoreConformance checks every Store and Manager behaviour that depends on Redis against
// deployment d, writing through one replica and reading through the other.
func runStoreConformance(t *testing.T, d deployment) {
	ctx := context.Background()

	t.Run("connection round trip", func(t *testing.T) {
		t.Parallel()
		p := newPair(t, d, "agw-conn:", tokens.ManagerOptions{})
		now := time.Now().UTC().Truncate(time.Millisecond)
		want := tokens.Connection{
			User: "alice@example.com", Status: tokens.StatusActive, Scopes: []string{"connect", "read"},
			AccessToken: "at_x", RefreshToken: "rt_x",
			IssuedAt: now, AccessExpiresAt: now.Add(time.Hour), RefreshExpiresAt: now.Add(24 * time.Hour),
			AcademyID: "42", AcademyUser: "john", UpdatedAt: now,
		}
		put, err := p.a.store.PutConnection(ctx, want)
		if err != nil {
			t.Fatalf("PutConnection: %v", err)
		}
		want.Version = 1
		if diff := cmp.Diff(want, put); diff != "" {
			t.Errorf("PutConnection returned (-want +got):\n%s", diff)
		}
		got, err := p.b.store.Connection(ctx, want.User)
		if err != nil {
			t.Fatalf("Connection: %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Connection read through the other replica (-want +got):\n%s", diff)
		}
		if _, err := p.b.store.Connection(ctx, "nobody"); !errors.Is(err, tokens.ErrNotConnected) {
			t.Errorf("Connection(nobody) = %v, want ErrNotConnected", err)
		}
	})

	t.Run("compare and swap", func(t *testing.T) {
		t.Parallel()
		p := newPair(t, d, "agw-cas:", tokens.ManagerOptions{})
		c := seed(t, p.a.store, p.academy, "erin")
		next := c
		next.AccessToken = "at_a"
		saved, ok, err := p.a.store.CompareAndSwap(ctx, next, c.Version)
		if !ok || err != nil || saved.Version != c.Version+1 {
			t.Fatalf("CompareAndSwap at v%d = v%d, %v, %v; want v%d, true, nil", c.Version, saved.Version, ok, err, c.Version+1)
		}
		next.AccessToken = "at_b"
		if _, ok, err := p.b.store.CompareAndSwap(ctx, next, c.Version); ok || err != nil {
			t.Fatalf("stale CompareAndSwap = %v, %v; want refused without error", ok, err)
		}
		got, err := p.b.store.Connection(ctx, "erin")
		if err != nil || got.AccessToken != "at_a" || got.Version != saved.Version {
			t.Fatalf("stored = %q v%d (%v), want at_a v%d", got.AccessToken, got.Version, err, saved.Version)
		}
	})

	t.Run("lease", func(t *testing.T) {
		t.Parallel()
		p := newPair(t, d, "agw-lease:", tokens.ManagerOptions{})
		held, ok, err := p.a.store.AcquireLease(ctx, "gus", time.Minute)
		if !ok || err != nil {
			t.Fatalf("AcquireLease = %v, %v; want the lease", ok, err)
		}
		if _, ok, err := p.b.store.AcquireLease(ctx, "gus", time.Minute); ok || err != nil {
			t.Fatalf("second AcquireLease while held = %v, %v; want refused without error", ok, err)
		}
		if ok, err := p.a.store.RenewLease(ctx, held, time.Minute); !ok || err != nil {
			t.Fatalf("RenewLease of the held lease = %v, %v; want renewed", ok, err)
		}
		if err := p.a.store.ReleaseLease(ctx, held); err != nil {
			t.Fatalf("ReleaseLease: %v", err)
		}
		if ok, err := p.a.store.RenewLease(ctx, held, time.Minute); ok || err != nil {
			t.Fatalf("RenewLease of a released lease = %v, %v; want false without error", ok, err)
		}
		other, ok, err := p.b.store.AcquireLease(ctx, "gus", time.Minute)
		if !ok || err != nil {
			t.Fatalf("AcquireLease after release = %v, %v; want the lease", ok, err)
		}
		// The first owner's release must not drop the second owner's lease.
		if err := p.a.store.ReleaseLease(ctx, held); err != nil {
			t.Fatalf("stale ReleaseLease: %v", err)
		}
		if _, ok, _ := p.a.store.AcquireLease(ctx, "gus", time.Minute); ok {
			t.Fatal("a stale release dropped another owner's lease")
		}
		if err := p.b.store.ReleaseLease(ctx, other); err != nil {
			t.Fatalf("ReleaseLease: %v", err)
		}
	})

	t.Run("keys", func(t *testing.T) {
		t.Parallel()
		p := newPair(t, d, "agw-keys:", tokens.ManagerOptions{})
		ignore := cmpopts.IgnoreUnexported(tokens.APIKey{})
		created := time.Now().UTC().Truncate(time.Second)
		secrets := []string{tokens.NewAPIKey(), tokens.NewAPIKey(), tokens.NewAPIKey()}
		var recs []tokens.APIKey
		for i, key := range secrets {
			user := []string{"hal", "hal", "ivy"}[i]
			k, err := p.a.store.CreateKey(ctx, key, tokens.APIKey{User: user, Scopes: []string{"read"}, Name: fmt.Sprint("k", i),
				CreatedAt: created.Add(time.Duration(i) * time.Second)})
			if err != nil {
				t.Fatalf("CreateKey %d: %v", i, err)
			}
			recs = append(recs, k)
		}
		if _, err := p.b.store.CreateKey(ctx, secrets[0], tokens.APIKey{User: "hal"}); !errors.Is(err, tokens.ErrKeyExists) {
			t.Fatalf("second CreateKey = %v, want ErrKeyExists", err)
		}
		got, err := p.b.store.KeyByHash(ctx, tokens.HashKey(secrets[0]))
		if err != nil {
			t.Fatalf("KeyByHash: %v", err)
		}
		if diff := cmp.Diff(recs[0], got, ignore); diff != "" {
			t.Errorf("KeyByHash (-want +got):\n%s", diff)
		}
		if _, err := p.b.store.KeyByHash(ctx, tokens.HashKey("unknown")); !errors.Is(err, tokens.ErrUnknownKey) {
			t.Errorf("KeyByHash(unknown) = %v, want ErrUnknownKey", err)
		}

		// One pipeline touching keys that live in different Cluster slots.
		used := time.Now().UTC().Truncate(time.Millisecond)
		if err := p.b.store.TouchKeys(ctx, map[string]time.Time{recs[0].ID: used, recs[2].ID: used}); err != nil {
			t.Fatalf("TouchKeys: %v", err)
		}
		recs[0].LastUsedAt, recs[2].LastUsedAt = used, used
		for _, tc := range []struct {
			user string
			want []tokens.APIKey
		}{
			{"hal", recs[:2]},
			{"ivy", recs[2:]},
			{"", recs},
			{"nobody", []tokens.APIKey{}},
		} {
			got, err := p.a.store.Keys(ctx, tc.user)
			if err != nil {
				t.Fatalf("Keys(%q): %v", tc.user, err)
			}
			if diff := cmp.Diff(tc.want, got, ignore); diff != "" {
				t.Errorf("Keys(%q) (-want +got):\n%s", tc.user, diff)
			}
		}

		deleted, err := p.b.store.DeleteKey(ctx, recs[0].ID)
		if err != nil || deleted.ID != recs[0].ID {
			t.Fatalf("DeleteKey = %q, %v", deleted.ID, err)
		}
		if _, err := p.a.store.KeyByHash(ctx, tokens.HashKey(secrets[0])); !errors.Is(err, tokens.ErrUnknownKey) {
			t.Errorf("KeyByHash of a deleted key = %v, want ErrUnknownKey", err)
		}
		if _, err := p.a.store.DeleteKey(ctx, recs[0].ID); !errors.Is(err, tokens.ErrNotFound) {
			t.Errorf("second DeleteKey = %v, want ErrNotFound", err)
		}
		// A late last-use write must not bring a revoked key back.
		if err := p.a.store.TouchKeys(ctx, map[string]time.Time{recs[0].ID: used}); err != nil {
			t.Fatalf("TouchKeys of a deleted key: %v", err)
		}
		left, err := p.a.store.Keys(ctx, "hal")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(recs[1:2], left, ignore); diff != "" {
			t.Errorf("Keys(hal) after delete and touch (-want +got):\n%s", diff)
		}
	})

	t.Run("tickets", func(t *testing.T) {
		t.Parallel()
		p := newPair(t, d, "agw-tickets:", tokens.ManagerOptions{})
		ticket, exp, err := p.a.store.CreateTicket(ctx, "ivy", 10*time.Minute)
		if err != nil || time.Until(exp) < 9*time.Minute {
			t.Fatalf("CreateTicket = %v, %v", exp, err)
		}
		state, _, err := p.b.store.BindState(ctx, ticket)
		if err != nil {
			t.Fatalf("BindState: %v", err)
		}
		if user, err := p.a.store.ConsumeState(ctx, state); err != nil || user != "ivy" {
			t.Fatalf("ConsumeState = %q, %v; want ivy", user, err)
		}
		if _, err := p.b.store.ConsumeState(ctx, state); !errors.Is(err, tokens.ErrTicketUsed) {
			t.Errorf("reused state = %v, want ErrTicketUsed", err)
		}
		if _, _, err := p.b.store.BindState(ctx, ticket); !errors.Is(err, tokens.ErrTicketUsed) {
			t.Errorf("reused ticket = %v, want ErrTicketUsed", err)
		}
		if _, _, err := p.a.store.BindState(ctx, "unknown"); !errors.Is(err, tokens.ErrTicketInvalid) {
			t.Errorf("unknown ticket = %v, want ErrTicketInvalid", err)
		}
		if _, err := p.a.store.ConsumeState(ctx, "unknown"); !errors.Is(err, tokens.ErrTicketInvalid) {
			t.Errorf("unknown state = %v, want ErrTicketInvalid", err)
		}
	})

	t.Run("connections listing", func(t *testing.T) {
		t.Parallel()
		p := newPair(t, d, "agw-list:", tokens.ManagerOptions{})
		users := []string{"zoe", "amy", "max", "bea"}
		for _, u := range users {
			seed(t, p.a.store, p.academy, u)
		}
		names := func(cs []tokens.Connection) []string {
			out := []string{}
			for _, c := range cs {
				out = append(out, c.User)
			}
			return out
		}
		got, err := p.b.store.Connections(ctx)
		if err != nil {
			t.Fatalf("Connections: %v", err)
		}
		want := slices.Sorted(slices.Values(users))
		if diff := cmp.Diff(want, names(got)); diff != "" {
			t.Errorf("Connections (-want +got):\n%s", diff)
		}
		if err := p.b.store.DeleteConnection(ctx, "max"); err != nil {
			t.Fatalf("DeleteConnection: %v", err)
		}
		got, err = p.a.store.Connections(ctx)
		if err != nil {
			t.Fatalf("Connections: %v", err)
		}
		if diff := cmp.Diff([]string{"amy", "bea", "zoe"}, names(got)); diff != "" {
			t.Errorf("Connections after delete (-want +got):\n%s", diff)
		}
		for _, c := range got {
			if c.Status != tokens.StatusActive {
				t.Errorf("%s: status %q, want active", c.User, c.Status)
			}
		}
	})

	t.Run("single flight", func(t *testing.T) {
		t.Parallel()
		p := newPair(t, d, "agw-flight:", tokens.ManagerOptions{RefreshBefore: time.Minute})
		release := p.academy.holdRefreshes()
		defer release()
		seed(t, p.a.store, p.academy, "alice")
		const n = 50
		var wg sync.WaitGroup
		got := make([]string, n)
		errs := make([]error, n)
		for i := range n {
			inst := []instance{p.a, p.b}[i%2]
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				c, err := inst.mgr.Connection(ctx, "alice")
				if err == nil {
					c, _, err = inst.mgr.Token(ctx, c)
				}
				got[i], errs[i] = c.AccessToken, err
			})
		}
		waitContended(t, p.academy, p.a, p.b)
		release()
		wg.Wait()
		if refreshes, reused := p.academy.counts(); refreshes != 1 || reused != 0 {
			t.Fatalf("academy saw %d refreshes and %d reused refresh tokens, want 1 and 0", refreshes, reused)
		}
		for i := range n {
			if errs[i] != nil || got[i] != got[0] || got[i] == "at_1" {
				t.Fatalf("request %d = %q, %v; request 0 got %q; want one new token for all", i, got[i], errs[i], got[0])
			}
		}
		if stored, err := p.b.store.Connection(ctx, "alice"); err != nil || stored.AccessToken != got[0] || stored.Version != 2 {
			t.Fatalf("stored connection = %q v%d (%v), want %q v2", stored.AccessToken, stored.Version, err, got[0])
		}
	})

	t.Run("refresh marker", func(t *testing.T) {
		t.Parallel()
		p := newPair(t, d, "agw-marker:", tokens.ManagerOptions{})
		c := seed(t, p.a.store, p.academy, "hana")
		held, ok, err := p.a.store.AcquireLease(ctx, "hana", time.Minute)
		if !ok || err != nil {
			t.Fatalf("AcquireLease = %v, %v", ok, err)
		}
		marker := func() *tokens.RefreshMarker {
			t.Helper()
			_, got, err := p.b.store.RefreshState(ctx, "hana")
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		if ok, err := p.a.store.MarkRefreshing(ctx, held, c.Version+1); ok || err != nil {
			t.Errorf("MarkRefreshing on another version = %v, %v; want refused", ok, err)
		}
		other := tokens.Lease{User: "hana", Owner: "someone-else"}
		if ok, err := p.b.store.MarkRefreshing(ctx, other, c.Version); ok || err != nil {
			t.Errorf("MarkRefreshing without the lease = %v, %v; want refused", ok, err)
		}
		if m := marker(); !m.IsZero() {
			t.Fatalf("marker after refused marks = %+v, want none", m)
		}
		if ok, err := p.a.store.MarkRefreshing(ctx, held, c.Version); !ok || err != nil {
			t.Fatalf("MarkRefreshing = %v, %v; want set", ok, err)
		}
		if m := marker(); m.IsZero() || m.Owner != held.Owner || m.Since.IsZero() {
			t.Errorf("marker = %+v, want one owned by %s", m, held.Owner)
		}
		if err := p.b.store.ClearRefreshing(ctx, other); err != nil || marker().IsZero() {
			t.Errorf("ClearRefreshing by another owner: %v; the marker must stay", err)
		}
		if err := p.a.store.ClearRefreshing(ctx, held); err != nil || !marker().IsZero() {
			t.Errorf("ClearRefreshing by its owner: %v, marker %+v; want none", err, marker())
		}
		// Any compare-and-set clears it.
		if ok, err := p.a.store.MarkRefreshing(ctx, held, c.Version); !ok || err != nil {
			t.Fatalf("MarkRefreshing again = %v, %v", ok, err)
		}
		next, ok, err := p.a.store.CompareAndSwap(ctx, c, c.Version)
		if !ok || err != nil || !marker().IsZero() {
			t.Errorf("CompareAndSwap = %v, %v, marker %+v; want written and no marker", ok, err, marker())
		}
		// A writer that does not know markers (an older gateway) bumps the version without
		// clearing it: the marker is stale and ignored.
		if ok, err := p.a.store.MarkRefreshing(ctx, held, next.Version); !ok || err != nil {
			t.Fatalf("MarkRefreshing on v%d = %v, %v", next.Version, ok, err)
		}
		if err := d.client(t).HIncrBy(ctx, "agw-marker:{u:hana}:conn", "ver", 1).Err(); err != nil {
			t.Fatal(err)
		}
		if m := marker(); !m.IsZero() {
			t.Errorf("marker of an older version = %+v, want ignored", m)
		}
	})

	t.Run("refresher", func(t *testing.T) {
		t.Parallel()
		runRefresherConformance(t, func(t *testing.T, prefix string) refreshBackend {
			return storeBackend(t, prefix, d.client, nil) // leases expire in real time
		})
	})

	t.Run("cache invalidation", func(t *testing.T) {
		t.Parallel()
		p := newPair(t, d, "agw-inval:", tokens.ManagerOptions{CacheTTL: time.Hour})
		// Created before anyone listens, so the only message the watcher hears is the revocation.
		key := tokens.NewAPIKey()
		k, err := p.b.store.CreateKey(ctx, key, tokens.APIKey{User: "hal", Scopes: []string{"read"}})
		if err != nil {
			t.Fatal(err)
		}
		wctx, stop := context.WithCancel(ctx)
		ready := make(chan struct{})
		var once sync.Once
		var watching sync.WaitGroup
		watching.Go(func() { p.a.mgr.Watch(wctx, func() { once.Do(func() { close(ready) }) }) })
		defer watching.Wait()
		defer stop()
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Fatal("Watch did not subscribe within 10 s")
		}

		if _, err := p.a.mgr.LookupKey(ctx, key); err != nil {
			t.Fatalf("LookupKey before revocation: %v", err)
		}
		// On a Cluster, also listen on every node directly, from now on (so the creation's message
		// is not heard): PUBLISH must reach subscribers wherever they are connected, not only on
		// the node the publisher used.
		var direct []*redis.PubSub
		for _, addr := range d.nodes {
			node := redis.NewClient(&redis.Options{Addr: addr})
			defer node.Close()
			sub := node.Subscribe(ctx, p.prefix+"invalidate")
			defer sub.Close()
			if _, err := sub.Receive(ctx); err != nil {
				t.Fatalf("subscribe on node %s: %v", addr, err)
			}
			direct = append(direct, sub)
		}
		if _, err := p.b.store.DeleteKey(ctx, k.ID); err != nil {
			t.Fatalf("DeleteKey: %v", err)
		}
		eventually.Eventually(t, time.Second, func() error {
			if _, err := p.a.mgr.LookupKey(ctx, key); !errors.Is(err, tokens.ErrUnknownKey) {
				return fmt.Errorf("LookupKey after DeleteKey on the other replica = %v, want ErrUnknownKey (cache TTL is 1 h)", err)
			}
			return nil
		})
		for i, sub := range direct {
			if !receives(t, sub, "k:"+k.ID) {
				t.Errorf("subscriber on cluster node %s did not receive the revocation of %s", d.nodes[i], k.ID)
			}
		}
	})

	runKeyIndexConformance(t, d) // keyindex_test.go

	if d.cluster != nil {
		t.Run("one slot per user", func(t *testing.T) {
			t.Parallel()
			p := newPair(t, d, "agw:", tokens.ManagerOptions{})
			for _, user := range []string{"alice", "bob@example.com", "x.y+z"} {
				conn, lock := "agw:{u:"+user+"}:conn", "agw:{u:"+user+"}:lock"
				if ks, err := d.cluster.ClusterKeySlot(ctx, "agw:{u:"+user+"}:keys").Result(); err != nil || ks != mustSlot(t, d.cluster, conn) {
					t.Errorf("the key index of %s is in slot %d (%v), its connection in %d; want one slot", user, ks, err, mustSlot(t, d.cluster, conn))
				}
				cs, err := d.cluster.ClusterKeySlot(ctx, conn).Result()
				if err != nil {
					t.Fatal(err)
				}
				ls, err := d.cluster.ClusterKeySlot(ctx, lock).Result()
				if err != nil {
					t.Fatal(err)
				}
				if cs != ls {
					t.Errorf("CLUSTER KEYSLOT %s = %d, %s = %d; want one slot", conn, cs, lock, ls)
				}
				// And these are the names the store really uses.
				seed(t, p.a.store, p.academy, user)
				lease, ok, err := p.a.store.AcquireLease(ctx, user, time.Minute)
				if !ok || err != nil {
					t.Fatalf("AcquireLease: %v, %v", ok, err)
				}
				if n, err := d.cluster.Exists(ctx, conn).Result(); err != nil || n != 1 {
					t.Errorf("EXISTS %s = %d, %v; want 1", conn, n, err)
				}
				if n, err := d.cluster.Exists(ctx, lock).Result(); err != nil || n != 1 {
					t.Errorf("EXISTS %s = %d, %v; want 1", lock, n, err)
				}
				if err := p.a.store.ReleaseLease(ctx, lease); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// mustSlot returns the Cluster slot of key.
func mustSlot(t *testing.T, c *redis.ClusterClient, key string) int64 {
	t.Helper()
	n, err := c.ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// receives reports whether sub delivers a message with payload want within a second (other
// messages are skipped).
func receives(t *testing.T, sub *redis.PubSub, want string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for {
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			return false
		}
		if msg.Payload == want {
			return true
		}
	}
}
