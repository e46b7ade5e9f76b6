package tokens_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	eventually "github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// rotatingAcademy is an httptest Academy whose /refresh rotates refresh tokens and refuses a spent
// one with 400, counting what it saw.
type rotatingAcademy struct {
	*httptest.Server
	mu        sync.Mutex
	live      map[string]bool // refresh tokens not yet spent
	n         int             // access/refresh token counter
	refreshes int             // successful refreshes
	reused    int             // refreshes with a spent or unknown token
	hold      chan struct{}   // when set, a refresh waits for it to close before answering
	onRefresh func()          // called inside a refresh, before answering
	reject    bool            // answer every refresh with 400
	down      bool            // answer every refresh with 503
	calls     int             // every refresh request
}

func newRotatingAcademy(t *testing.T) *rotatingAcademy {
	f := &rotatingAcademy{live: map[string]bool{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

// grant issues a fresh pair, as the code exchange would.
func (f *rotatingAcademy) grant() (access, refresh string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	access, refresh = fmt.Sprintf("at_%d", f.n), fmt.Sprintf("rt_%d", f.n)
	f.live[refresh] = true
	return access, refresh
}

func (f *rotatingAcademy) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/refresh" {
		http.NotFound(w, r)
		return
	}
	var body map[string]string
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body["grant_type"] != "refresh_token" {
		http.Error(w, `{"error":{"message":"bad body"}}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.calls++
	down, hold := f.down, f.hold
	f.mu.Unlock()
	if down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if hold != nil { // the test keeps the refresh in flight until it has seen what it wants
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	if f.onRefresh != nil {
		f.onRefresh()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reject || !f.live[body["refresh_token"]] {
		f.reused++
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":{"message":"Refresh token is invalid or expired.","code":400}}`)
		return
	}
	delete(f.live, body["refresh_token"])
	f.refreshes++
	f.n++
	f.live[fmt.Sprintf("rt_%d", f.n)] = true
	fmt.Fprintf(w, `{"access_token":"at_%d","expires_in":5,"refresh_token":"rt_%d","refresh_expires_in":60}`, f.n, f.n)
}

func (f *rotatingAcademy) counts() (refreshes, reused int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshes, f.reused
}

// holdRefreshes makes refreshes wait until the returned release is called.
func (f *rotatingAcademy) holdRefreshes() (release func()) {
	hold := make(chan struct{})
	f.mu.Lock()
	f.hold = hold
	f.mu.Unlock()
	return sync.OnceFunc(func() { close(hold) })
}

func (f *rotatingAcademy) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// leaseTries is how many times inst asked Redis for a refresh lease.
func leaseTries(inst instance) float64 {
	return testutil.ToFloat64(inst.m.StoreOperations.WithLabelValues("acquire_lease", "ok"))
}

// waitContended returns once a refresh reached the Academy (and is held there) and both
// replicas asked for the lease: the one in the Academy holds it, so the other was refused and
// is waiting. That is the race the single-flight tests are about, without widening it by
// sleeping.
func waitContended(t *testing.T, f *rotatingAcademy, a, b instance) {
	t.Helper()
	eventually.Eventually(t, 10*time.Second, func() error {
		if n, ta, tb := f.requests(), leaseTries(a), leaseTries(b); n < 1 || ta < 1 || tb < 1 {
			return fmt.Errorf("%d refreshes at the Academy, %v and %v lease requests", n, ta, tb)
		}
		return nil
	})
}

func testKey(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// instance is one replica's token stack: its own Redis client, store and manager.
type instance struct {
	store *tokens.Store
	mgr   *tokens.Manager
	m     *metrics.Metrics
}

func newInstance(t *testing.T, rs *redistest.Server, key string, academy *rotatingAcademy, opts tokens.ManagerOptions) instance {
	t.Helper()
	kr, err := tokens.NewKeyring([]string{key})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry(), "test")
	store := tokens.NewStore(rs.Client(t), "agw:", kr, m, nil)
	ac := tokens.NewAcademy(academy.Client(), tokens.AcademyConfig{
		ClientID: "c", ClientSecret: "s", RefreshURL: academy.URL + "/refresh", Backoff: time.Millisecond,
	})
	return instance{store: store, mgr: tokens.NewManager(store, ac, m, opts), m: m}
}

// seed stores a connection for user whose access token has expired.
func seed(t *testing.T, s *tokens.Store, f *rotatingAcademy, user string) tokens.Connection {
	t.Helper()
	access, refresh := f.grant()
	now := time.Now()
	c, err := s.PutConnection(context.Background(), tokens.Connection{
		User: user, Status: tokens.StatusActive, Scopes: []string{"connect", "read"},
		AccessToken: access, RefreshToken: refresh,
		IssuedAt: now.Add(-5 * time.Minute), AccessExpiresAt: now.Add(-time.Second),
		RefreshExpiresAt: now.Add(time.Hour), UpdatedAt: now,
	})
	if err != nil {
		t.Fatalf("seed connection: %v", err)
	}
	return c
}

// TestRefreshIsSingleFlightAcrossReplicas: 200 concurrent requests over two instances sharing
// Redis find the token expired; exactly one refresh reaches the Academy and everyone uses its
// result. The spent refresh token is never replayed.
func TestRefreshIsSingleFlightAcrossReplicas(t *testing.T) {
	rs := redistest.Start(t)
	f := newRotatingAcademy(t)
	release := f.holdRefreshes()
	defer release()
	key := testKey(t)
	a := newInstance(t, rs, key, f, tokens.ManagerOptions{RefreshBefore: time.Minute})
	b := newInstance(t, rs, key, f, tokens.ManagerOptions{RefreshBefore: time.Minute})
	seed(t, a.store, f, "alice")

	const n = 200
	var wg sync.WaitGroup
	got := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		inst := a
		if i%2 == 1 {
			inst = b
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := inst.mgr.Connection(ctx, "alice")
			if err == nil {
				c, _, err = inst.mgr.Token(ctx, c)
			}
			got[i], errs[i] = c.AccessToken, err
		})
	}
	waitContended(t, f, a, b)
	release()
	wg.Wait()
	refreshes, reused := f.counts()
	if refreshes != 1 || reused != 0 {
		t.Fatalf("academy saw %d refreshes and %d reused tokens, want 1 and 0", refreshes, reused)
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if got[i] != got[0] || got[i] == "at_1" {
			t.Fatalf("request %d got token %q, request 0 got %q; want one new token for all", i, got[i], got[0])
		}
	}
	stored, err := a.store.Connection(context.Background(), "alice")
	if err != nil || stored.AccessToken != got[0] || stored.Version != 2 {
		t.Fatalf("stored connection = %q v%d (%v), want %q v2", stored.AccessToken, stored.Version, err, got[0])
	}
	total := testutil.ToFloat64(a.m.TokenRefreshes.WithLabelValues(metrics.TriggerProactive, metrics.ResultSuccess)) +
		testutil.ToFloat64(b.m.TokenRefreshes.WithLabelValues(metrics.TriggerProactive, metrics.ResultSuccess))
	if total != 1 {
		t.Errorf("refresh metric total = %v, want 1", total)
	}
}

// TestRejectedRefreshesOnce: many requests whose token the upstream refused trigger one refresh;
// a request holding an already-replaced token gets the newer one without another refresh.
func TestRejectedRefreshesOnce(t *testing.T) {
	rs := redistest.Start(t)
	f := newRotatingAcademy(t)
	release := f.holdRefreshes()
	defer release()
	key := testKey(t)
	a := newInstance(t, rs, key, f, tokens.ManagerOptions{})
	b := newInstance(t, rs, key, f, tokens.ManagerOptions{})
	stale := seed(t, a.store, f, "bob")
	stale.AccessExpiresAt = time.Now().Add(time.Hour) // believed valid, refused upstream

	var wg sync.WaitGroup
	for i := range 50 {
		inst := []instance{a, b}[i%2]
		wg.Go(func() {
			c, err := inst.mgr.Rejected(context.Background(), stale)
			if err != nil || c.AccessToken == stale.AccessToken {
				t.Errorf("Rejected = %q, %v; want a new token", c.AccessToken, err)
			}
		})
	}
	waitContended(t, f, a, b)
	release()
	wg.Wait()
	if refreshes, reused := f.counts(); refreshes != 1 || reused != 0 {
		t.Fatalf("academy saw %d refreshes and %d reused tokens, want 1 and 0", refreshes, reused)
	}
}

func TestInvalidGrantMarksReauthRequired(t *testing.T) {
	rs := redistest.Start(t)
	f := newRotatingAcademy(t)
	f.reject = true
	a := newInstance(t, rs, testKey(t), f, tokens.ManagerOptions{})
	c := seed(t, a.store, f, "carol")

	if _, _, err := a.mgr.Token(context.Background(), c); !errors.Is(err, tokens.ErrReauthRequired) {
		t.Fatalf("Token error = %v, want ErrReauthRequired", err)
	}
	stored, err := a.store.Connection(context.Background(), "carol")
	if err != nil || stored.Status != tokens.StatusReauthRequired {
		t.Fatalf("stored status = %q (%v), want reauth_required", stored.Status, err)
	}
	if got := testutil.ToFloat64(a.m.TokenRefreshes.WithLabelValues(metrics.TriggerProactive, metrics.ResultInvalidGrant)); got != 1 {
		t.Errorf("invalid_grant metric = %v, want 1", got)
	}
	// The next request is refused without asking the Academy again.
	a.mgr.Forget("carol", "")
	c, err = a.mgr.Connection(context.Background(), "carol")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.mgr.Token(context.Background(), c); !errors.Is(err, tokens.ErrReauthRequired) {
		t.Fatalf("second Token error = %v, want ErrReauthRequired", err)
	}
	if _, reused := f.counts(); reused != 1 {
		t.Errorf("academy saw %d rejected refreshes, want 1", reused)
	}
}

// TestInvalidGrantNeverClobbersNewerConnection: the user re-onboards while a refresh with the old
// refresh token is in flight; the rejection must not mark the new connection.
func TestInvalidGrantNeverClobbersNewerConnection(t *testing.T) {
	rs := redistest.Start(t)
	f := newRotatingAcademy(t)
	f.reject = true
	a := newInstance(t, rs, testKey(t), f, tokens.ManagerOptions{})
	c := seed(t, a.store, f, "dave")
	var fresh tokens.Connection
	f.onRefresh = func() {
		fresh = c
		fresh.AccessToken, fresh.RefreshToken = "at_new", "rt_new"
		fresh.AccessExpiresAt = time.Now().Add(time.Hour)
		var err error
		if fresh, err = a.store.PutConnection(context.Background(), fresh); err != nil {
			t.Errorf("replace connection: %v", err)
		}
	}
	got, _, err := a.mgr.Token(context.Background(), c)
	if err != nil || got.AccessToken != "at_new" {
		t.Fatalf("Token = %q, %v; want the newer connection's token", got.AccessToken, err)
	}
	stored, err := a.store.Connection(context.Background(), "dave")
	if err != nil || stored.Status != tokens.StatusActive || stored.AccessToken != "at_new" {
		t.Fatalf("stored = %q %q (%v), want active at_new", stored.Status, stored.AccessToken, err)
	}
}

func TestCompareAndSwapRefusesStaleVersion(t *testing.T) {
	rs := redistest.Start(t)
	f := newRotatingAcademy(t)
	a := newInstance(t, rs, testKey(t), f, tokens.ManagerOptions{})
	c := seed(t, a.store, f, "erin")
	ctx := context.Background()
	next := c
	next.AccessToken = "at_a"
	if _, ok, err := a.store.CompareAndSwap(ctx, next, c.Version); !ok || err != nil {
		t.Fatalf("first CAS = %v, %v; want success", ok, err)
	}
	next.AccessToken = "at_b"
	if _, ok, err := a.store.CompareAndSwap(ctx, next, c.Version); ok || err != nil {
		t.Fatalf("stale CAS = %v, %v; want refused without error", ok, err)
	}
	if stored, _ := a.store.Connection(ctx, "erin"); stored.AccessToken != "at_a" {
		t.Fatalf("stored token = %q, want at_a", stored.AccessToken)
	}
}

// TestStoreDownServesCachedTokens: with Redis gone, a user whose cached token is valid is still
// served; one whose token needs a refresh gets ErrStoreUnavailable, and nothing refreshes
// without the shared lock.
func TestStoreDownServesCachedTokens(t *testing.T) {
	rs := redistest.Start(t)
	f := newRotatingAcademy(t)
	var now time.Time
	clock := func() time.Time { return now }
	now = time.Now()
	a := newInstance(t, rs, testKey(t), f, tokens.ManagerOptions{Now: clock, CacheTTL: time.Second})
	ctx := context.Background()
	access, refresh := f.grant()
	if _, err := a.store.PutConnection(ctx, tokens.Connection{User: "fay", Status: tokens.StatusActive,
		AccessToken: access, RefreshToken: refresh, IssuedAt: now, AccessExpiresAt: now.Add(5 * time.Minute),
		RefreshExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.mgr.Connection(ctx, "fay"); err != nil {
		t.Fatal(err)
	}
	rs.Stop()
	now = now.Add(2 * time.Second) // the cache entry is stale now

	c, err := a.mgr.Connection(ctx, "fay")
	if err != nil {
		t.Fatalf("Connection with Redis down = %v, want the cached connection", err)
	}
	if got, _, err := a.mgr.Token(ctx, c); err != nil || got.AccessToken != access {
		t.Fatalf("Token with Redis down = %q, %v; want the cached token", got.AccessToken, err)
	}
	// Right after a failure, stale entries are served without asking Redis again.
	failures := testutil.ToFloat64(a.m.StoreOperations.WithLabelValues("get_connection", "error"))
	if _, err := a.mgr.Connection(ctx, "fay"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(a.m.StoreOperations.WithLabelValues("get_connection", "error")); got != failures || failures != 1 {
		t.Errorf("failed Redis reads = %v then %v, want 1 and no new one within the back-off", failures, got)
	}
	now = now.Add(10 * time.Minute) // expired: it would need Redis
	if _, _, err := a.mgr.Token(ctx, c); !errors.Is(err, tokens.ErrStoreUnavailable) {
		t.Fatalf("Token of an expired token with Redis down = %v, want ErrStoreUnavailable", err)
	}
	if refreshes, _ := f.counts(); refreshes != 0 {
		t.Fatalf("academy saw %d refreshes with Redis down, want 0", refreshes)
	}
	if _, err := a.mgr.Connection(ctx, "nobody"); !errors.Is(err, tokens.ErrStoreUnavailable) {
		t.Fatalf("Connection of an uncached user with Redis down = %v, want ErrStoreUnavailable", err)
	}
}

// TestStoreBackoffCoversUncachedLookups: README "Behaviour in detail". Within the store
// backoff (500 ms) of a failed Redis read, a key or a user with nothing cached is answered
// ErrStoreUnavailable without asking Redis, so a caller whose key was never looked up cannot
// cost one Redis timeout per request (issue 14, Redis paused with SIGSTOP); after the backoff
// Redis is asked again.
func TestStoreBackoffCoversUncachedLookups(t *testing.T) {
	rs := redistest.Start(t)
	f := newRotatingAcademy(t)
	now := time.Now()
	a := newInstance(t, rs, testKey(t), f, tokens.ManagerOptions{Now: func() time.Time { return now }})
	ctx := context.Background()
	_, key, err := a.store.IssueKey(ctx, "gus", []string{"read"}, "test", "")
	if err != nil {
		t.Fatal(err)
	}
	rs.Stop()
	failed := func() float64 {
		return testutil.ToFloat64(a.m.StoreOperations.WithLabelValues("get_key", "error")) +
			testutil.ToFloat64(a.m.StoreOperations.WithLabelValues("get_connection", "error"))
	}
	if _, err := a.mgr.LookupKey(ctx, key); !errors.Is(err, tokens.ErrStoreUnavailable) {
		t.Fatalf("LookupKey with Redis down = %v, want ErrStoreUnavailable", err)
	}
	if got := failed(); got != 1 {
		t.Fatalf("failed Redis reads = %v, want 1", got)
	}
	for range 10 {
		if _, err := a.mgr.LookupKey(ctx, key); !errors.Is(err, tokens.ErrStoreUnavailable) {
			t.Fatalf("LookupKey within the backoff = %v, want ErrStoreUnavailable", err)
		}
		if _, err := a.mgr.Connection(ctx, "gus"); !errors.Is(err, tokens.ErrStoreUnavailable) {
			t.Fatalf("Connection within the backoff = %v, want ErrStoreUnavailable", err)
		}
	}
	if got := failed(); got != 1 {
		t.Errorf("failed Redis reads after 20 lookups within the backoff = %v, want still 1", got)
	}
	now = now.Add(600 * time.Millisecond) // past the backoff: Redis is asked again
	if _, err := a.mgr.LookupKey(ctx, key); !errors.Is(err, tokens.ErrStoreUnavailable) {
		t.Fatalf("LookupKey after the backoff = %v, want ErrStoreUnavailable", err)
	}
	if got := failed(); got != 2 {
		t.Errorf("failed Redis reads after the backoff = %v, want 2", got)
	}
}

// TestStaleNegativeAnswersWhileStoreDown: a cached "no connection" is the last known answer for
// a user, served like a cached connection while Redis is away (expired cache, failed read, then
// within the backoff), never a Redis read per request and never mistaken for an outage.
func TestStaleNegativeAnswersWhileStoreDown(t *testing.T) {
	rs := redistest.Start(t)
	f := newRotatingAcademy(t)
	now := time.Now()
	a := newInstance(t, rs, testKey(t), f, tokens.ManagerOptions{Now: func() time.Time { return now }})
	ctx := context.Background()
	if _, err := a.mgr.Connection(ctx, "ida"); !errors.Is(err, tokens.ErrNotConnected) {
		t.Fatalf("Connection of a user never connected = %v, want ErrNotConnected", err)
	}
	rs.Stop()
	now = now.Add(2 * time.Second) // past the 1 s cache: the next lookup asks Redis and fails
	failed := func() float64 {
		return testutil.ToFloat64(a.m.StoreOperations.WithLabelValues("get_connection", "error"))
	}
	for i := range 10 {
		if _, err := a.mgr.Connection(ctx, "ida"); !errors.Is(err, tokens.ErrNotConnected) {
			t.Fatalf("lookup %d with Redis down = %v, want the cached ErrNotConnected", i, err)
		}
	}
	if got := failed(); got != 1 {
		t.Errorf("failed Redis reads for 10 lookups = %v, want 1 (then the backoff serves the cache)", got)
	}
}

// TestRecordBoundToUser: a sealed record copied under another user fails to decrypt.
func TestRecordBoundToUser(t *testing.T) {
	rs := redistest.Start(t)
	f := newRotatingAcademy(t)
	a := newInstance(t, rs, testKey(t), f, tokens.ManagerOptions{})
	seed(t, a.store, f, "gus")
	rdb := rs.Client(t)
	ctx := context.Background()
	rec, err := rdb.HGetAll(ctx, "agw:{u:gus}:conn").Result()
	if err != nil || rec["rec"] == "" {
		t.Fatalf("read raw record: %v %v", rec, err)
	}
	if err := rdb.HSet(ctx, "agw:{u:mallory}:conn", "ver", "1", "rec", rec["rec"]).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.Connection(ctx, "mallory"); !errors.Is(err, tokens.ErrDecrypt) {
		t.Fatalf("copied record: %v, want ErrDecrypt", err)
	}
	if _, err := a.store.Connection(ctx, "gus"); err != nil {
		t.Fatalf("original record: %v", err)
	}
}

func TestKeys(t *testing.T) {
	rs := redistest.Start(t)
	f := newRotatingAcademy(t)
	a := newInstance(t, rs, testKey(t), f, tokens.ManagerOptions{})
	ctx := context.Background()
	key := tokens.NewAPIKey()
	k, err := a.store.CreateKey(ctx, key, tokens.APIKey{User: "hal", Scopes: []string{"read"}, Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.CreateKey(ctx, key, tokens.APIKey{User: "hal"}); !errors.Is(err, tokens.ErrKeyExists) {
		t.Fatalf("second CreateKey = %v, want ErrKeyExists", err)
	}
	got, err := a.mgr.LookupKey(ctx, key)
	if err != nil || got.ID != k.ID || got.User != "hal" || !got.Allows("read") || got.Allows("write") {
		t.Fatalf("LookupKey = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "nope", key[:len(key)-1] + "x"} {
		if _, err := a.mgr.LookupKey(ctx, bad); !errors.Is(err, tokens.ErrUnknownKey) {
			t.Errorf("LookupKey(%q) = %v, want ErrUnknownKey", bad, err)
		}
	}
	raw, err := rs.Client(t).HGet(ctx, "agw:key:"+k.ID, "rec").Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, key) {
		t.Fatal("the stored key record contains the key in clear")
	}
	if _, err := a.store.DeleteKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	a.mgr.Forget("", k.ID)
	if _, err := a.mgr.LookupKey(ctx, key); !errors.Is(err, tokens.ErrUnknownKey) {
		t.Fatalf("LookupKey after revoke = %v, want ErrUnknownKey", err)
	}
	if _, err := a.store.DeleteKey(ctx, k.ID); !errors.Is(err, tokens.ErrNotFound) {
		t.Fatalf("second DeleteKey = %v, want ErrNotFound", err)
	}
}

func TestTickets(t *testing.T) {
	rs := redistest.Start(t)
	f := newRotatingAcademy(t)
	a := newInstance(t, rs, testKey(t), f, tokens.ManagerOptions{})
	ctx := context.Background()
	ticket, exp, err := a.store.CreateTicket(ctx, "ivy", 10*time.Minute)
	if err != nil || time.Until(exp) < 9*time.Minute {
		t.Fatalf("CreateTicket = %v, %v", exp, err)
	}
	state, _, err := a.store.BindState(ctx, ticket)
	if err != nil {
		t.Fatal(err)
	}
	if user, err := a.store.ConsumeState(ctx, state); err != nil || user != "ivy" {
		t.Fatalf("ConsumeState = %q, %v", user, err)
	}
	if _, err := a.store.ConsumeState(ctx, state); !errors.Is(err, tokens.ErrTicketUsed) {
		t.Fatalf("reused state = %v, want ErrTicketUsed", err)
	}
	if _, _, err := a.store.BindState(ctx, ticket); !errors.Is(err, tokens.ErrTicketUsed) {
		t.Fatalf("reused ticket = %v, want ErrTicketUsed", err)
	}
	if _, _, err := a.store.BindState(ctx, "unknown"); !errors.Is(err, tokens.ErrTicketInvalid) {
		t.Fatalf("unknown ticket = %v, want ErrTicketInvalid", err)
	}
	if _, err := a.store.ConsumeState(ctx, "unknown"); !errors.Is(err, tokens.ErrTicketInvalid) {
		t.Fatalf("unknown state = %v, want ErrTicketInvalid", err)
	}
}

// TestProactiveRefreshBacksOff: with the Academy down, a user whose token is still valid keeps
// being served with it, and the Academy is asked again only after a pause, not on every request.
func TestProactiveRefreshBacksOff(t *testing.T) {
	rs := redistest.Start(t)
	f := newRotatingAcademy(t)
	f.down = true
	now := time.Now()
	a := newInstance(t, rs, testKey(t), f, tokens.ManagerOptions{RefreshBefore: time.Minute, Now: func() time.Time { return now }})
	ctx := context.Background()
	access, refresh := f.grant()
	c, err := a.store.PutConnection(ctx, tokens.Connection{User: "kim", Status: tokens.StatusActive,
		AccessToken: access, RefreshToken: refresh, IssuedAt: now.Add(-4 * time.Minute),
		AccessExpiresAt: now.Add(30 * time.Second), RefreshExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		got, refreshed, err := a.mgr.Token(ctx, c)
		if err != nil || refreshed || got.AccessToken != access {
			t.Fatalf("request %d: Token = %q, %v, %v; want the current token", i, got.AccessToken, refreshed, err)
		}
	}
	f.mu.Lock()
	calls := f.calls
	f.mu.Unlock()
	if calls != 1 { // Refresh is never retried after the request was written
		t.Fatalf("the Academy was asked %d times for 5 requests, want 1", calls)
	}
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
	now = now.Add(3 * time.Second)
	got, refreshed, err := a.mgr.Token(ctx, c)
	if err != nil || !refreshed || got.AccessToken == access {
		t.Fatalf("after the pause: Token = %q, %v, %v; want a refreshed token", got.AccessToken, refreshed, err)
	}
}
