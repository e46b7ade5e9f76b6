package tokens_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	eventually "github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// refreshBackend is one shared store as two replicas, a and b, see it.
type refreshBackend struct {
	a, b *cuttable
	// put stores a connection whatever is stored (as a new authorization does).
	put func(t *testing.T, c tokens.Connection) tokens.Connection
	// expireLeases makes the leases held now expire; nil: they expire in real time (real Redis).
	expireLeases func(ttl time.Duration)
}

// newBackend builds a refreshBackend whose keys live under prefix.
type newBackend func(t *testing.T, prefix string) refreshBackend

// fakeBackend is the in-memory store.
func fakeBackend(*testing.T, string) refreshBackend {
	s := newFakeStore()
	return refreshBackend{
		a: &cuttable{next: s}, b: &cuttable{next: s},
		put:          func(_ *testing.T, c tokens.Connection) tokens.Connection { return s.put(c) },
		expireLeases: func(ttl time.Duration) { s.advance(ttl + time.Millisecond) },
	}
}

// storeBackend is two Stores over clients of one Redis deployment.
func storeBackend(t *testing.T, prefix string, client func(t *testing.T) redis.UniversalClient, expire func(time.Duration)) refreshBackend {
	kr, err := tokens.NewKeyring([]string{testKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	newStore := func() *tokens.Store {
		return tokens.NewStore(client(t), prefix, kr, metrics.New(prometheus.NewRegistry(), "test"), nil)
	}
	sa, sb := newStore(), newStore()
	return refreshBackend{
		a: &cuttable{next: sa}, b: &cuttable{next: sb},
		put: func(t *testing.T, c tokens.Connection) tokens.Connection {
			t.Helper()
			c, err := sa.PutConnection(context.Background(), c)
			if err != nil {
				t.Fatalf("put connection: %v", err)
			}
			return c
		},
		expireLeases: expire,
	}
}

// miniredisBackend is a Store over miniredis, whose key TTLs move only when told to.
func miniredisBackend(t *testing.T, prefix string) refreshBackend {
	mr := miniredis.RunT(t)
	client := func(t *testing.T) redis.UniversalClient {
		c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { c.Close() })
		return c
	}
	return storeBackend(t, prefix, client, mr.FastForward)
}

// TestRefresher runs the Refresher conformance suite against the in-memory fake and
// miniredis; TestStoreTopologies runs it against real Redis (single, Sentinel, Cluster).
func TestRefresher(t *testing.T) {
	for _, b := range []struct {
		name string
		new  newBackend
	}{
		{"fake", fakeBackend},
		{"miniredis", miniredisBackend},
	} {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			runRefresherConformance(t, b.new)
		})
	}
}

// replicas are two Refreshers over one backend and one Academy.
type replicas struct {
	be      refreshBackend
	a, b    *tokens.Refresher
	academy *fakeAcademy
	events  *reauthEvents
}

// reauthEvents records OnReauth calls as "user reason".
type reauthEvents struct {
	mu  sync.Mutex
	got []string
}

func (e *reauthEvents) record(_ context.Context, user, reason string) {
	e.mu.Lock()
	e.got = append(e.got, user+" "+reason)
	e.mu.Unlock()
}

func (e *reauthEvents) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string{}, e.got...)
}

func newReplicas(t *testing.T, nb newBackend, prefix string, opts tokens.RefresherOptions) replicas {
	t.Helper()
	be := nb(t, prefix)
	f := newFakeAcademy()
	events := &reauthEvents{}
	opts.OnReauth = events.record
	newRefresher := func(s tokens.RefreshStore) *tokens.Refresher {
		return tokens.NewRefresher(s, f, metrics.New(prometheus.NewRegistry(), "test"), opts)
	}
	return replicas{be: be, a: newRefresher(be.a), b: newRefresher(be.b), academy: f, events: events}
}

// seedExpired stores a connection for user whose access token has expired.
func (r replicas) seedExpired(t *testing.T, user string) tokens.Connection {
	t.Helper()
	access, refresh := r.academy.grant()
	now := time.Now()
	return r.be.put(t, tokens.Connection{
		User: user, Status: tokens.StatusActive, Scopes: []string{"connect", "read"},
		AccessToken: access, RefreshToken: refresh,
		IssuedAt: now.Add(-5 * time.Minute), AccessExpiresAt: now.Add(-time.Second),
		RefreshExpiresAt: now.Add(time.Hour), UpdatedAt: now,
	})
}

// stored reads user's connection and its refresh marker past both replicas' wrappers.
func (r replicas) stored(t *testing.T, user string) storedState {
	t.Helper()
	c, m, err := r.be.b.next.RefreshState(context.Background(), user)
	if err != nil {
		t.Fatalf("read %s: %v", user, err)
	}
	return storedState{c, m}
}

// storedState is a stored connection with the refresh marker on it.
type storedState struct {
	tokens.Connection
	Refreshing *tokens.RefreshMarker
}

// runRefresherConformance checks the refresh guarantees of docs/reference.md §4 steps 3 and 5 and §6 over
// one store implementation: one refresh across replicas, never a replayed refresh token, a
// clean end when a replica dies mid-refresh, passing failures that keep the connection.
func runRefresherConformance(t *testing.T, nb newBackend) {
	ctx := context.Background()

	t.Run("one refresh across replicas", func(t *testing.T) {
		t.Parallel()
		r := newReplicas(t, nb, "rf-flight:", tokens.RefresherOptions{})
		seen := r.seedExpired(t, "alice")
		release := r.academy.holdRefreshes()
		defer release()
		const n = 40
		got := make([]tokens.Connection, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			ref := []*tokens.Refresher{r.a, r.b}[i%2]
			wg.Go(func() { got[i], errs[i] = ref.Refresh(ctx, seen, metrics.TriggerProactive) })
		}
		// One refresh is at the Academy, holding the lease; the other replica asked for it too.
		eventually.Eventually(t, 10*time.Second, func() error {
			if calls, ta, tb := r.academy.seen().Calls, r.be.a.leaseTries.Load(), r.be.b.leaseTries.Load(); calls < 1 || ta < 1 || tb < 1 {
				return fmt.Errorf("%d refreshes at the Academy, %d and %d lease requests", calls, ta, tb)
			}
			return nil
		})
		release()
		wg.Wait()
		if diff := cmp.Diff(academySeen{Calls: 1, Refreshes: 1}, r.academy.seen()); diff != "" {
			t.Errorf("the Academy saw (-want +got):\n%s", diff)
		}
		for i := range n {
			if errs[i] != nil || got[i].AccessToken != got[0].AccessToken || got[i].AccessToken == seen.AccessToken {
				t.Fatalf("caller %d = %q, %v; caller 0 got %q; want one new token for all", i, got[i].AccessToken, errs[i], got[0].AccessToken)
			}
		}
		if st := r.stored(t, "alice"); st.AccessToken != got[0].AccessToken || !st.Refreshing.IsZero() {
			t.Errorf("stored %q with marker %+v, want %q and no marker", st.AccessToken, st.Refreshing, got[0].AccessToken)
		}
	})

	t.Run("a lost race uses the winner's token", func(t *testing.T) {
		t.Parallel()
		r := newReplicas(t, nb, "rf-race:", tokens.RefresherOptions{})
		seen := r.seedExpired(t, "bob")
		won, err := r.a.Refresh(ctx, seen, metrics.TriggerProactive)
		if err != nil {
			t.Fatalf("first refresh: %v", err)
		}
		// b still holds the connection as it was before a refreshed it, for every trigger.
		for _, trigger := range []string{metrics.TriggerProactive, metrics.TriggerReactive, metrics.TriggerKeepAlive} {
			stale := seen
			if trigger == metrics.TriggerReactive { // believed valid, refused upstream
				stale.AccessExpiresAt = time.Now().Add(time.Hour)
			}
			got, err := r.b.Refresh(ctx, stale, trigger)
			if err != nil || got.AccessToken != won.AccessToken {
				t.Errorf("%s refresh with the spent token = %q, %v; want the winner's %q", trigger, got.AccessToken, err, won.AccessToken)
			}
		}
		if diff := cmp.Diff(academySeen{Calls: 1, Refreshes: 1}, r.academy.seen()); diff != "" {
			t.Errorf("the Academy saw (-want +got):\n%s", diff)
		}
	})

	t.Run("a replica dies mid-refresh", func(t *testing.T) {
		t.Parallel()
		const ttl = 300 * time.Millisecond
		r := newReplicas(t, nb, "rf-dies:", tokens.RefresherOptions{LeaseTTL: ttl,
			SaveRetry: tokens.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond}})
		seen := r.seedExpired(t, "carl")
		release := r.academy.holdRefreshes()
		defer release()
		type result struct {
			c   tokens.Connection
			err error
		}
		dead := make(chan result, 1)
		go func() {
			c, err := r.a.Refresh(ctx, seen, metrics.TriggerProactive)
			dead <- result{c, err}
		}()
		eventually.Eventually(t, 10*time.Second, func() error {
			if r.academy.seen().Calls < 1 {
				return errors.New("replica a's refresh has not reached the Academy")
			}
			return nil
		})
		if st := r.stored(t, "carl"); st.Refreshing.IsZero() {
			t.Fatal("no refresh-in-flight marker while a's refresh is at the Academy")
		}
		r.be.a.cut.Store(true) // a dies: no renewal, no write reaches the store any more
		if r.be.expireLeases != nil {
			r.be.expireLeases(ttl)
		}

		got, err := r.b.Refresh(ctx, seen, metrics.TriggerProactive)
		if !errors.Is(err, tokens.ErrReauthRequired) || got.Status != tokens.StatusReauthRequired {
			t.Fatalf("refresh after the takeover = %q, %v; want reauth_required", got.Status, err)
		}
		release() // the dead replica's request completes: the Academy rotates, nobody stores it
		select {
		case res := <-dead:
			// It keeps serving, from its own memory, the tokens it could not save.
			if res.err != nil || res.c.AccessToken == seen.AccessToken {
				t.Errorf("the cut-off replica's refresh = %q, %v; want the new token, kept in memory", res.c.AccessToken, res.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the cut-off replica's refresh did not end within 10 s")
		}
		if st := r.stored(t, "carl"); st.Status != tokens.StatusReauthRequired || !st.Refreshing.IsZero() || st.AccessToken != seen.AccessToken {
			t.Errorf("stored %q %q with marker %+v, want reauth_required, the old token, no marker", st.Status, st.AccessToken, st.Refreshing)
		}
		if _, err := r.b.Refresh(ctx, seen, metrics.TriggerReactive); !errors.Is(err, tokens.ErrReauthRequired) {
			t.Errorf("a later refresh = %v, want ErrReauthRequired", err)
		}
		// The possibly spent refresh token was never sent again.
		if diff := cmp.Diff(academySeen{Calls: 1, Refreshes: 1}, r.academy.seen()); diff != "" {
			t.Errorf("the Academy saw (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"carl invalid_grant"}, r.events.list()); diff != "" {
			t.Errorf("reauth events (-want +got):\n%s", diff)
		}
	})

	t.Run("a passing failure keeps the connection", func(t *testing.T) {
		t.Parallel()
		r := newReplicas(t, nb, "rf-passing:", tokens.RefresherOptions{})
		tests := []struct {
			name    string
			fail    error
			timeout bool
		}{
			{"refresh endpoint 503", &tokens.APIError{Op: "refresh", Status: 503, Message: "(no error message)"}, false},
			{"bad client credentials 401", &tokens.APIError{Op: "refresh", Status: 401, Message: "Invalid client."}, false},
			{"refresh endpoint hangs", fmt.Errorf("academy refresh: %w", context.DeadlineExceeded), true},
			{"200 with garbage", errors.New("academy refresh: decode answer: invalid character '<'"), false},
		}
		for i, tt := range tests {
			user := fmt.Sprint("dora", i)
			seen := r.seedExpired(t, user)
			r.academy.setFail(tt.fail)
			_, err := r.a.Refresh(ctx, seen, metrics.TriggerReactive)
			var re *tokens.RefreshError
			if !errors.As(err, &re) || !errors.Is(err, tokens.ErrRefreshUnavailable) || errors.Is(err, tokens.ErrReauthRequired) || re.Timeout() != tt.timeout {
				t.Errorf("%s: Refresh = %v, want a RefreshError with Timeout() %v", tt.name, err, tt.timeout)
			}
			if st := r.stored(t, user); st.Status != tokens.StatusActive || st.AccessToken != seen.AccessToken || st.Version != seen.Version || !st.Refreshing.IsZero() {
				t.Errorf("%s: stored %q %q v%d marker %+v, want the connection unchanged", tt.name, st.Status, st.AccessToken, st.Version, st.Refreshing)
			}
			r.academy.setFail(nil)
			if got, err := r.b.Refresh(ctx, seen, metrics.TriggerReactive); err != nil || got.AccessToken == seen.AccessToken {
				t.Errorf("%s: the next refresh = %q, %v; want a new token", tt.name, got.AccessToken, err)
			}
		}
		if got := r.academy.seen(); got.Reused != 0 || got.Refreshes != len(tests) {
			t.Errorf("the Academy saw %+v, want %d refreshes and no reused token", got, len(tests))
		}
	})

	t.Run("a rejected refresh token ends the connection", func(t *testing.T) {
		t.Parallel()
		r := newReplicas(t, nb, "rf-reject:", tokens.RefresherOptions{})
		seen := r.seedExpired(t, "emil")
		r.academy.setFail(&tokens.APIError{Op: "refresh", Status: 400, Message: "Refresh token has expired."})
		got, err := r.a.Refresh(ctx, seen, metrics.TriggerProactive)
		if !errors.Is(err, tokens.ErrReauthRequired) || got.Status != tokens.StatusReauthRequired {
			t.Fatalf("Refresh = %q, %v; want reauth_required", got.Status, err)
		}
		if st := r.stored(t, "emil"); st.Status != tokens.StatusReauthRequired || !st.Refreshing.IsZero() {
			t.Errorf("stored %q marker %+v, want reauth_required without marker", st.Status, st.Refreshing)
		}
		if _, err := r.b.Refresh(ctx, seen, metrics.TriggerProactive); !errors.Is(err, tokens.ErrReauthRequired) {
			t.Errorf("second Refresh = %v, want ErrReauthRequired", err)
		}
		if got := r.academy.seen().Calls; got != 1 {
			t.Errorf("the Academy was asked %d times, want 1", got)
		}
		if diff := cmp.Diff([]string{"emil invalid_grant"}, r.events.list()); diff != "" {
			t.Errorf("reauth events (-want +got):\n%s", diff)
		}
	})

	t.Run("a failed write of new tokens is retried under the lease", func(t *testing.T) {
		t.Parallel()
		r := newReplicas(t, nb, "rf-write:", tokens.RefresherOptions{SaveRetry: tokens.Backoff{Initial: time.Millisecond, Attempts: 5}})
		seen := r.seedExpired(t, "fred")
		r.be.a.failCAS.Store(3)
		got, err := r.a.Refresh(ctx, seen, metrics.TriggerProactive)
		if err != nil || got.AccessToken == seen.AccessToken {
			t.Fatalf("Refresh = %q, %v; want a new token", got.AccessToken, err)
		}
		if st := r.stored(t, "fred"); st.AccessToken != got.AccessToken || !st.Refreshing.IsZero() {
			t.Errorf("stored %q marker %+v, want %q, no marker", st.AccessToken, st.Refreshing, got.AccessToken)
		}
		if diff := cmp.Diff(academySeen{Calls: 1, Refreshes: 1}, r.academy.seen()); diff != "" {
			t.Errorf("the Academy saw (-want +got):\n%s", diff)
		}
	})

	t.Run("429 Retry-After is honoured", func(t *testing.T) {
		t.Parallel()
		r := newReplicas(t, nb, "rf-429:", tokens.RefresherOptions{})
		seen := r.seedExpired(t, "gina")
		r.academy.setFail(&tokens.APIError{Op: "refresh", Status: 429, Message: "Slow down.", RetryAfter: time.Hour})
		for i := range 3 {
			_, err := r.a.Refresh(ctx, seen, metrics.TriggerReactive)
			var re *tokens.RefreshError
			if !errors.As(err, &re) || re.RetryAfter < 59*time.Minute || re.RetryAfter > time.Hour {
				t.Errorf("refresh %d = %v, want a RefreshError with Retry-After about 1h", i, err)
			}
			r.academy.setFail(nil)
		}
		if got := r.academy.seen().Calls; got != 1 {
			t.Errorf("the Academy was asked %d times within its Retry-After, want 1", got)
		}
		if st := r.stored(t, "gina"); st.Status != tokens.StatusActive || st.AccessToken != seen.AccessToken || !st.Refreshing.IsZero() {
			t.Errorf("stored %q %q marker %+v, want the connection unchanged", st.Status, st.AccessToken, st.Refreshing)
		}
	})
}
