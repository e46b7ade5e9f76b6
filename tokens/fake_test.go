package tokens_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/academy-gateway/academy-gateway/tokens"
)

// Compile-time guards: the Redis store and the fakes implement what the Refresher needs.
var (
	_ tokens.RefreshStore  = (*tokens.Store)(nil)
	_ tokens.RefreshStore  = (*fakeStore)(nil)
	_ tokens.RefreshStore  = (*cuttable)(nil)
	_ tokens.TokenEndpoint = (*tokens.Academy)(nil)
	_ tokens.TokenEndpoint = (*fakeAcademy)(nil)
)

// fakeStore is an in-memory RefreshStore with the semantics of the Redis one: versions,
// compare-and-set that clears the refresh marker, leases that expire by the fake's clock.
type fakeStore struct {
	mu      sync.Mutex
	skew    time.Duration // added to the real time: how the test makes leases expire
	conns   map[string]tokens.Connection
	markers map[string]*tokens.RefreshMarker
	leases  map[string]fakeLease
	owners  int
}

type fakeLease struct {
	owner   string
	expires time.Time
}

func newFakeStore() *fakeStore {
	return &fakeStore{conns: map[string]tokens.Connection{}, markers: map[string]*tokens.RefreshMarker{}, leases: map[string]fakeLease{}}
}

func (s *fakeStore) now() time.Time { return time.Now().Add(s.skew) }

// advance moves the fake's clock, which only leases read.
func (s *fakeStore) advance(d time.Duration) {
	s.mu.Lock()
	s.skew += d
	s.mu.Unlock()
}

// put stores c whatever is stored, as PutConnection does.
func (s *fakeStore) put(c tokens.Connection) tokens.Connection {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.Version = s.conns[c.User].Version + 1
	s.conns[c.User] = c
	delete(s.markers, c.User)
	return c
}

func (s *fakeStore) Connection(_ context.Context, user string) (tokens.Connection, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conns[user]
	if !ok {
		return tokens.Connection{}, tokens.ErrNotConnected
	}
	return c, nil
}

func (s *fakeStore) RefreshState(ctx context.Context, user string) (tokens.Connection, *tokens.RefreshMarker, error) {
	c, err := s.Connection(ctx, user)
	if err != nil {
		return tokens.Connection{}, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return c, s.markers[user], nil
}

func (s *fakeStore) CompareAndSwap(_ context.Context, c tokens.Connection, expected int64) (tokens.Connection, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns[c.User].Version != expected {
		return tokens.Connection{}, false, nil
	}
	c.Version = expected + 1
	s.conns[c.User] = c
	delete(s.markers, c.User)
	return c, true, nil
}

func (s *fakeStore) AcquireLease(_ context.Context, user string, ttl time.Duration) (tokens.Lease, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.leases[user]; ok && s.now().Before(l.expires) {
		return tokens.Lease{}, false, nil
	}
	s.owners++
	owner := "owner" + strconv.Itoa(s.owners)
	s.leases[user] = fakeLease{owner: owner, expires: s.now().Add(ttl)}
	return tokens.Lease{User: user, Owner: owner}, true, nil
}

// heldBy reports whether l is the user's unexpired lease; s.mu is held.
func (s *fakeStore) heldBy(l tokens.Lease) bool {
	cur, ok := s.leases[l.User]
	return ok && cur.owner == l.Owner && s.now().Before(cur.expires)
}

func (s *fakeStore) RenewLease(_ context.Context, l tokens.Lease, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.heldBy(l) {
		return false, nil
	}
	s.leases[l.User] = fakeLease{owner: l.Owner, expires: s.now().Add(ttl)}
	return true, nil
}

func (s *fakeStore) ReleaseLease(_ context.Context, l tokens.Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leases[l.User].owner == l.Owner {
		delete(s.leases, l.User)
	}
	return nil
}

func (s *fakeStore) MarkRefreshing(_ context.Context, l tokens.Lease, version int64) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conns[l.User]
	if !s.heldBy(l) || !ok || c.Version != version {
		return false, nil
	}
	s.markers[l.User] = &tokens.RefreshMarker{Owner: l.Owner, Since: s.now()}
	return true, nil
}

func (s *fakeStore) ClearRefreshing(_ context.Context, l tokens.Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.markers[l.User]; !m.IsZero() && m.Owner == l.Owner {
		delete(s.markers, l.User)
	}
	return nil
}

// errCut is what a replica cut off from its store gets.
var errCut = errors.New("connection to the store lost")

// cuttable is one replica's view of a shared RefreshStore: it counts lease requests, can fail
// the next compare-and-set writes, and can be cut off for good (a replica that lost Redis or
// died: nothing it does reaches the store any more).
type cuttable struct {
	next       tokens.RefreshStore
	cut        atomic.Bool
	failCAS    atomic.Int32 // this many next compare-and-set calls fail
	leaseTries atomic.Int32
}

func (c *cuttable) down(op string) error {
	if c.cut.Load() {
		return &tokens.StoreError{Op: op, Err: errCut}
	}
	return nil
}

func (c *cuttable) Connection(ctx context.Context, user string) (tokens.Connection, error) {
	if err := c.down("get_connection"); err != nil {
		return tokens.Connection{}, err
	}
	return c.next.Connection(ctx, user)
}

func (c *cuttable) RefreshState(ctx context.Context, user string) (tokens.Connection, *tokens.RefreshMarker, error) {
	if err := c.down("get_connection"); err != nil {
		return tokens.Connection{}, nil, err
	}
	return c.next.RefreshState(ctx, user)
}

func (c *cuttable) CompareAndSwap(ctx context.Context, conn tokens.Connection, expected int64) (tokens.Connection, bool, error) {
	if err := c.down("cas_connection"); err != nil {
		return tokens.Connection{}, false, err
	}
	if c.failCAS.Add(-1) >= 0 {
		return tokens.Connection{}, false, &tokens.StoreError{Op: "cas_connection", Err: errors.New("write failed")}
	}
	return c.next.CompareAndSwap(ctx, conn, expected)
}

func (c *cuttable) AcquireLease(ctx context.Context, user string, ttl time.Duration) (tokens.Lease, bool, error) {
	c.leaseTries.Add(1)
	if err := c.down("acquire_lease"); err != nil {
		return tokens.Lease{}, false, err
	}
	return c.next.AcquireLease(ctx, user, ttl)
}

func (c *cuttable) RenewLease(ctx context.Context, l tokens.Lease, ttl time.Duration) (bool, error) {
	if err := c.down("renew_lease"); err != nil {
		return false, err
	}
	return c.next.RenewLease(ctx, l, ttl)
}

func (c *cuttable) ReleaseLease(ctx context.Context, l tokens.Lease) error {
	if err := c.down("release_lease"); err != nil {
		return err
	}
	return c.next.ReleaseLease(ctx, l)
}

func (c *cuttable) MarkRefreshing(ctx context.Context, l tokens.Lease, version int64) (bool, error) {
	if err := c.down("mark_refreshing"); err != nil {
		return false, err
	}
	return c.next.MarkRefreshing(ctx, l, version)
}

func (c *cuttable) ClearRefreshing(ctx context.Context, l tokens.Lease) error {
	if err := c.down("clear_refreshing"); err != nil {
		return err
	}
	return c.next.ClearRefreshing(ctx, l)
}

// fakeAcademy is an in-process TokenEndpoint that rotates refresh tokens like the Academy: a
// refresh spends the token it is given; a spent or unknown one is refused with 400.
type fakeAcademy struct {
	mu        sync.Mutex
	live      map[string]bool
	n         int
	calls     int           // every Refresh
	refreshes int           // successful ones
	reused    int           // with a spent or unknown token: what must never happen
	hold      chan struct{} // when set, Refresh waits for it (or its context) before answering
	fail      error         // when set, Refresh answers it without spending the token
}

func newFakeAcademy() *fakeAcademy { return &fakeAcademy{live: map[string]bool{}} }

// grant issues a fresh pair, as the code exchange would.
func (f *fakeAcademy) grant() (access, refresh string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	access, refresh = fmt.Sprintf("at_%d", f.n), fmt.Sprintf("rt_%d", f.n)
	f.live[refresh] = true
	return access, refresh
}

func (f *fakeAcademy) Refresh(ctx context.Context, refreshToken string) (tokens.Grant, error) {
	f.mu.Lock()
	f.calls++
	hold := f.hold
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return tokens.Grant{}, fmt.Errorf("academy refresh: %w", ctx.Err())
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return tokens.Grant{}, f.fail
	}
	if !f.live[refreshToken] {
		f.reused++
		return tokens.Grant{}, &tokens.APIError{Op: "refresh", Status: 400, Message: "Refresh token has already been used."}
	}
	delete(f.live, refreshToken)
	f.refreshes++
	f.n++
	f.live[fmt.Sprintf("rt_%d", f.n)] = true
	now := time.Now()
	return tokens.Grant{
		AccessToken: fmt.Sprintf("at_%d", f.n), RefreshToken: fmt.Sprintf("rt_%d", f.n),
		IssuedAt: now, AccessExpiresAt: now.Add(5 * time.Minute), RefreshExpiresAt: now.Add(time.Hour),
	}, nil
}

// holdRefreshes makes refreshes wait until the returned release is called.
func (f *fakeAcademy) holdRefreshes() (release func()) {
	hold := make(chan struct{})
	f.mu.Lock()
	f.hold = hold
	f.mu.Unlock()
	return sync.OnceFunc(func() { close(hold) })
}

func (f *fakeAcademy) setFail(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

// seen is what the Academy saw so far.
type academySeen struct{ Calls, Refreshes, Reused int }

func (f *fakeAcademy) seen() academySeen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return academySeen{f.calls, f.refreshes, f.reused}
}
