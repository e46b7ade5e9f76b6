package tokens

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/metrics"
)

// ManagerOptions tune a Manager. Zero values get the defaults named on each field.
type ManagerOptions struct {
	// RefreshBefore: refresh when less than this remains of an access token (capped at half its
	// lifetime). Zero means refresh only once expired.
	RefreshBefore time.Duration
	// CacheTTL is how long a cached key or connection is served without asking Redis; zero: 1s.
	// It bounds how long a revocation takes when an invalidation message is missed.
	CacheTTL time.Duration
	// CacheSize bounds the number of cached keys and of cached connections; zero: 100000.
	CacheSize int
	// LeaseTTL is the lifetime of the cross-replica refresh lease, renewed while a refresh runs;
	// zero: 10s.
	LeaseTTL time.Duration
	// RefreshTimeout bounds a whole refresh, waiting for another refresher included; zero: 30s.
	RefreshTimeout time.Duration
	// KeepAlive enables refreshing idle connections before their refresh token expires.
	KeepAlive bool
	// Interval is the period of the background work (keep-alive scan, connection count,
	// last-use flush); zero: 30s.
	Interval time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Logger receives refresh events; nil: no logs.
	Logger *zap.Logger
	// OnReauth is called when this Manager marked a connection reauth_required, before the
	// caller learns it, with reason "invalid_grant" (the Academy refused the refresh token) or
	// "refresh_expired" (known by time); nil: nothing. It records the webhook event.
	OnReauth func(ctx context.Context, user, reason string)
}

func (o ManagerOptions) withDefaults() ManagerOptions {
	if o.CacheTTL == 0 {
		o.CacheTTL = time.Second
	}
	if o.CacheSize == 0 {
		o.CacheSize = 100_000
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.RefreshTimeout == 0 {
		o.RefreshTimeout = 30 * time.Second
	}
	if o.Interval == 0 {
		o.Interval = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.OnReauth == nil {
		o.OnReauth = func(context.Context, string, string) {}
	}
	return o
}

// Manager answers the request path's questions (which user owns this key, which token to send)
// from the in-process cache, and refreshes tokens single-flight: one refresh per user at a time
// in the process (flight) and across replicas (a Redis lease).
type Manager struct {
	store   *Store
	academy *Academy
	m       *metrics.Metrics
	opts    ManagerOptions
	log     *zap.Logger

	hits   prometheus.Counter // cache lookups, resolved once: they run on every request
	misses prometheus.Counter
	keys   *cache[APIKey]     // by key id
	conns  *cache[Connection] // by user
	flight flight

	usedMu sync.Mutex
	used   map[string]time.Time // key id → last use not yet written to Redis

	failMu sync.Mutex
	failed map[string]time.Time // user → when a proactive refresh last failed

	// storeDownUntil (unix ns): until then, stale cache entries are served without asking Redis
	// again, so an unreachable Redis costs one timeout per storeBackoff, not one per request.
	storeDownUntil atomic.Int64
}

// storeBackoff is how long the request path trusts stale cache entries after Redis failed.
const storeBackoff = 500 * time.Millisecond

// proactiveBackoff is how long a user's still-valid token is used as is after a proactive
// refresh failed, so an unreachable Academy or Redis is not asked again on every request.
const proactiveBackoff = 2 * time.Second

// NewManager returns a Manager over store and academy.
func NewManager(store *Store, academy *Academy, m *metrics.Metrics, opts ManagerOptions) *Manager {
	opts = opts.withDefaults()
	return &Manager{
		store: store, academy: academy, m: m, opts: opts, log: opts.Logger,
		hits:   m.CacheLookups.WithLabelValues("hit"),
		misses: m.CacheLookups.WithLabelValues("miss"),
		keys:   newCache[APIKey](opts.CacheTTL, opts.CacheSize),
		conns:  newCache[Connection](opts.CacheTTL, opts.CacheSize),
		used:   make(map[string]time.Time),
		failed: make(map[string]time.Time),
	}
}

// LookupKey returns the record of an API key: ErrUnknownKey when it is malformed, unknown or
// revoked; ErrStoreUnavailable when Redis is down and the key was never seen.
func (mg *Manager) LookupKey(ctx context.Context, key string) (APIKey, error) {
	if !WellFormed(key) {
		return APIKey{}, ErrUnknownKey
	}
	hash := HashKey(key)
	id := keyID(hash)
	now := mg.opts.Now()
	e, fresh, ok := mg.keys.get(id, now)
	if ok && e.err == nil && e.val.hash != hash {
		fresh, ok = false, false // another key with the same id prefix
	}
	mg.countLookup(fresh)
	if !fresh && !(ok && mg.storeDown(now)) {
		k, err := mg.store.KeyByHash(ctx, hash)
		mg.noteStore(err, now)
		switch {
		case errors.Is(err, ErrStoreUnavailable) && ok:
			// serve the last known answer while Redis is away
		case err == nil || errors.Is(err, ErrUnknownKey):
			e = cacheEntry[APIKey]{val: k, err: err}
			mg.keys.put(id, k, err, now)
		default:
			return APIKey{}, err
		}
	}
	if e.err != nil {
		return APIKey{}, e.err
	}
	mg.usedMu.Lock()
	mg.used[e.val.ID] = now
	mg.usedMu.Unlock()
	return e.val, nil
}

// Connection returns the user's connection, from the cache when fresh: ErrNotConnected when
// there is none; a stale cached copy when Redis is down.
func (mg *Manager) Connection(ctx context.Context, user string) (Connection, error) {
	now := mg.opts.Now()
	e, fresh, ok := mg.conns.get(user, now)
	mg.countLookup(fresh)
	if fresh || (ok && e.err == nil && mg.storeDown(now)) {
		return e.val, e.err
	}
	c, err := mg.store.Connection(ctx, user)
	mg.noteStore(err, now)
	switch {
	case errors.Is(err, ErrStoreUnavailable) && ok && e.err == nil:
		return e.val, nil
	case err == nil || errors.Is(err, ErrNotConnected):
		mg.conns.put(user, c, err, now)
	}
	return c, err
}

func (mg *Manager) storeDown(now time.Time) bool { return now.UnixNano() < mg.storeDownUntil.Load() }

func (mg *Manager) noteStore(err error, now time.Time) {
	if errors.Is(err, ErrStoreUnavailable) {
		mg.storeDownUntil.Store(now.Add(storeBackoff).UnixNano())
	}
}

func (mg *Manager) countLookup(hit bool) {
	if hit {
		mg.hits.Inc()
	} else {
		mg.misses.Inc()
	}
}

// Token returns c if its access token is good for a while yet, else a refreshed connection
// (refreshed reports which). A connection that needs re-authorization yields ErrReauthRequired.
// When the refresh fails for a passing reason (Redis or the Academy away) but the current token
// has not expired, the current token is used.
func (mg *Manager) Token(ctx context.Context, c Connection) (_ Connection, refreshed bool, err error) {
	if c.Status == StatusReauthRequired {
		return Connection{}, false, ErrReauthRequired
	}
	now := mg.opts.Now()
	if !c.needsRefresh(now, mg.opts.RefreshBefore) {
		return c, false, nil
	}
	valid := now.Before(c.AccessExpiresAt)
	mg.failMu.Lock()
	backingOff := now.Sub(mg.failed[c.User]) < proactiveBackoff
	mg.failMu.Unlock()
	if valid && backingOff {
		return c, false, nil
	}
	fresh, err := mg.refresh(ctx, c, metrics.TriggerProactive)
	if err != nil {
		if !errors.Is(err, ErrReauthRequired) && valid {
			mg.failMu.Lock()
			mg.failed[c.User] = now
			mg.failMu.Unlock()
			mg.log.Warn("proactive refresh failed; using the current token", zap.String("user", c.User), zap.Error(err))
			return c, false, nil
		}
		return Connection{}, false, err
	}
	mg.failMu.Lock()
	delete(mg.failed, c.User)
	mg.failMu.Unlock()
	return fresh, fresh.AccessToken != c.AccessToken, nil
}

// Rejected is called when the Academy answered 401 to c's access token: it returns a connection
// with another access token (refreshing unless another request already did).
func (mg *Manager) Rejected(ctx context.Context, c Connection) (Connection, error) {
	return mg.refresh(ctx, c, metrics.TriggerReactive)
}

// refresh joins or starts the process-wide refresh of seen.User.
func (mg *Manager) refresh(ctx context.Context, seen Connection, trigger string) (Connection, error) {
	call := mg.flight.do(seen.User, func() (Connection, error) {
		// Detached from the first caller, who may give up while others still wait.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mg.opts.RefreshTimeout)
		defer cancel()
		return mg.refreshShared(fctx, seen, trigger)
	})
	select {
	case <-call.done:
		return call.conn, call.err
	case <-ctx.Done():
		return Connection{}, fmt.Errorf("wait for refresh of %s: %w", seen.User, ctx.Err())
	}
}

// usable reports whether cur, read after seen was found wanting, already serves trigger:
// another goroutine or replica refreshed in between.
func (mg *Manager) usable(cur, seen Connection, trigger string) bool {
	if cur.Status != StatusActive {
		return false
	}
	switch trigger {
	case metrics.TriggerKeepAlive:
		return cur.Version != seen.Version
	case metrics.TriggerReactive:
		return cur.AccessToken != seen.AccessToken && !cur.needsRefresh(mg.opts.Now(), mg.opts.RefreshBefore)
	default:
		return !cur.needsRefresh(mg.opts.Now(), mg.opts.RefreshBefore)
	}
}

// refreshShared takes the user's Redis lease (waiting for another replica's refresh if need
// be), re-reads the connection, and refreshes only if it still needs it.
func (mg *Manager) refreshShared(ctx context.Context, seen Connection, trigger string) (Connection, error) {
	user := seen.User
	start := mg.opts.Now()
	var lease Lease
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		l, ok, err := mg.store.AcquireLease(ctx, user, mg.opts.LeaseTTL)
		if err != nil {
			return Connection{}, fmt.Errorf("refresh %s: %w", user, err)
		}
		if ok {
			lease = l
			break
		}
		// Another replica refreshes: its result shows up as a newer connection.
		cur, err := mg.store.Connection(ctx, user)
		if err != nil {
			return Connection{}, fmt.Errorf("refresh %s: %w", user, err)
		}
		if mg.usable(cur, seen, trigger) {
			mg.m.RefreshLockWait.Observe(mg.opts.Now().Sub(start).Seconds())
			mg.conns.put(user, cur, nil, mg.opts.Now())
			return cur, nil
		}
		select {
		case <-ctx.Done():
			return Connection{}, fmt.Errorf("refresh %s: wait for lease: %w", user, ctx.Err())
		case <-time.After(wait):
		}
	}
	if waited := mg.opts.Now().Sub(start); waited > 0 {
		mg.m.RefreshLockWait.Observe(waited.Seconds())
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if err := mg.store.ReleaseLease(rctx, lease); err != nil {
			mg.log.Warn("release refresh lease", zap.String("user", user), zap.Error(err))
		}
	}()
	stop := mg.keepLease(ctx, lease)
	defer stop()

	cur, err := mg.store.Connection(ctx, user) // re-read under the lease
	if err != nil {
		return Connection{}, fmt.Errorf("refresh %s: %w", user, err)
	}
	if cur.Status == StatusReauthRequired {
		mg.conns.put(user, cur, nil, mg.opts.Now())
		return Connection{}, ErrReauthRequired
	}
	if mg.usable(cur, seen, trigger) {
		mg.conns.put(user, cur, nil, mg.opts.Now())
		return cur, nil
	}
	return mg.refreshLocked(ctx, cur, trigger)
}

// refreshLocked calls the Academy with cur's refresh token and stores the result; the caller
// holds the lease.
func (mg *Manager) refreshLocked(ctx context.Context, cur Connection, trigger string) (Connection, error) {
	user := cur.User
	var grant Grant
	var err error
	reason := ReasonInvalidGrant
	if !cur.RefreshExpiresAt.IsZero() && !mg.opts.Now().Before(cur.RefreshExpiresAt) {
		reason = ReasonRefreshExpired
		err = fmt.Errorf("refresh token expired at %s: %w", cur.RefreshExpiresAt.Format(time.RFC3339), ErrInvalidGrant)
	} else {
		began := mg.opts.Now()
		grant, err = mg.academy.Refresh(ctx, cur.RefreshToken)
		mg.m.TokenRefreshDuration.Observe(mg.opts.Now().Sub(began).Seconds())
	}
	switch {
	case errors.Is(err, ErrInvalidGrant):
		mg.m.TokenRefreshes.WithLabelValues(trigger, metrics.ResultInvalidGrant).Inc()
		mg.log.Warn("refresh token rejected; connection needs re-authorization", zap.String("user", user), zap.String("trigger", trigger), zap.Error(err))
		return mg.markReauth(ctx, cur, reason)
	case err != nil:
		mg.m.TokenRefreshes.WithLabelValues(trigger, metrics.ResultError).Inc()
		if errors.Is(err, ErrClientCredentials) { // the operator's mistake, not the user's: no refresh can work
			mg.log.Error("the Academy refused the gateway's client credentials: check oauth.client_id and oauth.client_secret",
				zap.String("user", user), zap.String("trigger", trigger), zap.Error(err))
		}
		return Connection{}, fmt.Errorf("refresh %s: %w", user, err)
	}
	mg.m.TokenRefreshes.WithLabelValues(trigger, metrics.ResultSuccess).Inc()
	next := cur.WithGrant(grant)
	// The old refresh token is spent now: the new one must reach Redis, so try a few times.
	for attempt, wait := 0, 50*time.Millisecond; ; attempt, wait = attempt+1, wait*2 {
		saved, ok, err := mg.store.CompareAndSwap(ctx, next, cur.Version)
		if err == nil && !ok {
			// Replaced meanwhile (a new authorization): the stored connection wins.
			latest, err := mg.store.Connection(ctx, user)
			if err != nil {
				return Connection{}, fmt.Errorf("refresh %s: read after lost race: %w", user, err)
			}
			mg.conns.put(user, latest, nil, mg.opts.Now())
			return latest, nil
		}
		if err == nil {
			mg.conns.put(user, saved, nil, mg.opts.Now())
			mg.log.Debug("token refreshed", zap.String("user", user), zap.String("trigger", trigger), zap.Int64("version", saved.Version))
			return saved, nil
		}
		if attempt == 2 || ctx.Err() != nil {
			// Keep serving from this process; other replicas will need re-authorization.
			mg.log.Error("refreshed tokens could not be saved", zap.String("user", user), zap.Error(err))
			mg.conns.put(user, next, nil, mg.opts.Now())
			return next, nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// markReauth records that cur's refresh token was rejected, unless a newer connection replaced
// it meanwhile (which is then returned).
func (mg *Manager) markReauth(ctx context.Context, cur Connection, reason string) (Connection, error) {
	marked := cur
	marked.Status, marked.UpdatedAt = StatusReauthRequired, mg.opts.Now()
	saved, ok, err := mg.store.CompareAndSwap(ctx, marked, cur.Version)
	if err != nil {
		return Connection{}, fmt.Errorf("mark %s for re-authorization: %w", cur.User, err)
	}
	if !ok {
		latest, err := mg.store.Connection(ctx, cur.User)
		if err == nil && latest.Status == StatusActive {
			mg.conns.put(cur.User, latest, nil, mg.opts.Now())
			return latest, nil
		}
		return Connection{}, ErrReauthRequired
	}
	mg.conns.put(cur.User, saved, nil, mg.opts.Now())
	mg.opts.OnReauth(ctx, cur.User, reason)
	return Connection{}, ErrReauthRequired
}

// keepLease renews the lease every third of its TTL until the returned stop is called.
func (mg *Manager) keepLease(ctx context.Context, l Lease) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(mg.opts.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if ok, err := mg.store.RenewLease(ctx, l, mg.opts.LeaseTTL); err != nil || !ok {
					mg.log.Warn("refresh lease lost", zap.String("user", l.user), zap.Error(err))
					return
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// Forget drops the cached connection of user and the cached record of the key with id
// (either may be empty), so the next request reads Redis.
func (mg *Manager) Forget(user, keyID string) {
	if user != "" {
		mg.conns.delete(user)
	}
	if keyID != "" {
		mg.keys.delete(keyID)
	}
}

// Revoke invalidates the user's grant at the Academy, then deletes the tokens everywhere
// (other replicas drop their caches through the invalidation channel). An Academy failure is
// logged, not fatal: the tokens are deleted either way. ErrNotConnected if there is nothing.
func (mg *Manager) Revoke(ctx context.Context, user string) error {
	c, err := mg.store.Connection(ctx, user)
	if errors.Is(err, ErrNotConnected) || errors.Is(err, ErrStoreUnavailable) {
		return fmt.Errorf("revoke %s: %w", user, err)
	}
	// A connection marked reauth_required may still hold a live access token: invalidate it too.
	if err == nil && mg.opts.Now().Before(c.AccessExpiresAt) {
		if err := mg.academy.Invalidate(ctx, c.AccessToken); err != nil {
			mg.log.Warn("academy invalidate failed; deleting the tokens anyway", zap.String("user", user), zap.Error(err))
		}
	}
	if err := mg.store.DeleteConnection(ctx, user); err != nil {
		return fmt.Errorf("revoke %s: %w", user, err)
	}
	mg.Forget(user, "")
	return nil
}
