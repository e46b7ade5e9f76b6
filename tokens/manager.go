package tokens

import (
	"context"
	"encoding/binary"
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
	// Negative answers (unknown key, no connection) are bounded apart, to a tenth of it.
	CacheSize int
	// LeaseTTL is the lifetime of the cross-replica refresh lease, renewed while a refresh runs;
	// zero: 10s (RefresherOptions.LeaseTTL).
	LeaseTTL time.Duration
	// RefreshTimeout bounds a whole refresh, waiting for another refresher included; zero: 30s
	// (RefresherOptions.Timeout).
	RefreshTimeout time.Duration
	// UnknownKeyReads bounds the Redis reads per second for keys the key filter does not know
	// (see keyfilter.go); zero: 100; negative: none (such keys are refused at once).
	UnknownKeyReads int
	// KeepAlive enables refreshing idle connections before their refresh token expires.
	KeepAlive bool
	// Interval is the period of the background work (keep-alive scan, connection count,
	// last-use flush); zero: 30s.
	Interval time.Duration
	// Now is the clock; nil: time.Now.
	Now Clock
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
	if o.Interval == 0 {
		o.Interval = 30 * time.Second
	}
	if o.UnknownKeyReads == 0 {
		o.UnknownKeyReads = 100
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
// from the in-process cache, decides when a token needs a refresh, and has its Refresher make
// it (one refresh per user at a time in the process and across replicas).
type Manager struct {
	store     *Store
	academy   *Academy
	refresher *Refresher
	m         *metrics.Metrics
	opts      ManagerOptions
	log       *zap.Logger

	hits   prometheus.Counter // cache lookups, resolved once: they run on every request
	misses prometheus.Counter
	keys   *cache[APIKey]     // by key id
	conns  *cache[Connection] // by user
	filter keyFilter          // ids of registered keys, once built (Watch)
	// unknownReads bounds the Redis reads for keys the filter does not know.
	unknownReads perSecond

	usedMu sync.Mutex
	used   map[string]time.Time // key id → last use not yet written to Redis

	failMu sync.Mutex
	failed map[string]time.Time // user → when a proactive refresh last failed

	// storeDownUntil (unix ns): until then, stale cache entries are served without asking Redis
	// again, so an unreachable Redis costs one timeout per storeBackoff, not one per request.
	storeDownUntil atomic.Int64
}

// negativeSize bounds the negative answers cached (unknown keys, users without a connection): a
// tenth of the cache size, at least one.
func negativeSize(size int) int { return max(1, size/10) }

// storeBackoff is how long the request path trusts stale cache entries after Redis failed, and
// answers what it has nothing cached for with errStoreBackoff instead of asking Redis again.
const storeBackoff = 500 * time.Millisecond

// errStoreBackoff is the answer, within storeBackoff of a failed Redis operation, for a key or
// user with nothing cached: the store is unavailable, without a Redis operation per request.
var errStoreBackoff = &StoreError{Op: "backoff", Err: errors.New("redis failed less than 500ms ago; not asked again yet")}

// proactiveBackoff is how long a user's still-valid token is used as is after a proactive
// refresh failed, so an unreachable Academy or Redis is not asked again on every request.
const proactiveBackoff = 2 * time.Second

// NewManager returns a Manager over store and academy, with a Refresher over both.
func NewManager(store *Store, academy *Academy, m *metrics.Metrics, opts ManagerOptions) *Manager {
	opts = opts.withDefaults()
	return &Manager{
		store: store, academy: academy, m: m, opts: opts, log: opts.Logger,
		refresher: NewRefresher(store, academy, m, RefresherOptions{
			RefreshBefore: opts.RefreshBefore, LeaseTTL: opts.LeaseTTL, Timeout: opts.RefreshTimeout,
			Now: opts.Now, Logger: opts.Logger, OnReauth: opts.OnReauth,
		}),
		hits:   m.CacheLookups.WithLabelValues("hit"),
		misses: m.CacheLookups.WithLabelValues("miss"),
		keys:   newCache[APIKey](opts.CacheTTL, opts.CacheSize, negativeSize(opts.CacheSize)),
		conns:  newCache[Connection](opts.CacheTTL, opts.CacheSize, negativeSize(opts.CacheSize)),
		used:   make(map[string]time.Time),
		failed: make(map[string]time.Time),

		unknownReads: perSecond{max: max(0, opts.UnknownKeyReads)},
	}
}

// LookupKey returns the record of an API key: ErrUnknownKey when it is malformed, unknown or
// revoked; ErrStoreUnavailable when Redis is down and the key was never seen. A cached record
// is refilled by one Redis read per CacheTTL, shared by all requests that miss meanwhile.
func (mg *Manager) LookupKey(ctx context.Context, key string) (APIKey, error) {
	if !WellFormed(key) {
		return APIKey{}, ErrUnknownKey
	}
	var hexed [64]byte
	sum := hashKey(key, &hexed)
	now := mg.opts.Now.Now()
	bits := binary.BigEndian.Uint64(sum[:8])
	unknown := false
	if known, built := mg.filter.hasBits(bits); built && !known {
		// Not announced yet, or never registered: Redis decides, within the per-second budget
		// (a key created on another replica a moment ago must work at once); beyond it, refused
		// without a Redis read (a flood of random keys).
		if !mg.unknownReads.allow(now) {
			return APIKey{}, ErrUnknownKey
		}
		unknown = true
	}
	// A warm lookup allocates nothing: the conversions below are only looked up or compared.
	e, fresh, ok := mg.keys.get(string(hexed[:16]), now)
	if ok && e.err == nil && e.val.hash != string(hexed[:]) {
		fresh, ok = false, false // another key with the same id prefix
	}
	mg.countLookup(fresh)
	switch down := !fresh && mg.storeDown(now); {
	case fresh || (down && ok):
		// the cache answers: fresh, or the last known answer while Redis is away
	case down:
		return APIKey{}, errStoreBackoff // nothing to serve, and Redis is not asked again yet
	default:
		hash := string(hexed[:])
		id := keyID(hash)
		k, err := mg.keys.fill(ctx, hash, func() (APIKey, error, bool) {
			e, fresh, _ := mg.keys.get(id, now)
			return e.val, e.err, fresh && (e.err != nil || e.val.hash == hash)
		}, func() (APIKey, error) {
			k, err := mg.store.KeyByHash(context.WithoutCancel(ctx), hash)
			mg.noteStore(err)
			if err == nil || errors.Is(err, ErrUnknownKey) {
				mg.keys.put(id, k, err, now)
			}
			return k, err
		})
		switch {
		case errors.Is(err, ErrStoreUnavailable) && ok:
			// serve the last known answer while Redis is away
		case err == nil || errors.Is(err, ErrUnknownKey):
			e = cacheEntry[APIKey]{val: k, err: err}
		default:
			return APIKey{}, err
		}
	}
	if e.err != nil {
		return APIKey{}, e.err
	}
	if unknown {
		mg.filter.add(e.val.ID) // registered after all: its announcement was late or lost
	}
	mg.usedMu.Lock()
	mg.used[e.val.ID] = now
	mg.usedMu.Unlock()
	return e.val, nil
}

// Connection returns the user's connection, from the cache when fresh (one Redis read per
// user per CacheTTL refills it, shared by all requests that miss meanwhile): ErrNotConnected
// when there is none; a stale cached copy when Redis is down; ErrReauthRequired (matching
// ErrDecrypt too) when the stored record is corrupt.
func (mg *Manager) Connection(ctx context.Context, user string) (Connection, error) {
	now := mg.opts.Now.Now()
	e, fresh, ok := mg.conns.get(user, now)
	mg.countLookup(fresh)
	switch down := !fresh && mg.storeDown(now); {
	case fresh || (down && ok):
		return e.val, e.err // fresh, or the last known answer while Redis is away
	case down:
		return Connection{}, errStoreBackoff
	}
	c, err := mg.conns.fill(ctx, user, func() (Connection, error, bool) {
		e, fresh, _ := mg.conns.get(user, now)
		return e.val, e.err, fresh
	}, func() (Connection, error) {
		c, err := mg.store.Connection(context.WithoutCancel(ctx), user)
		mg.noteStore(err)
		if err == nil || errors.Is(err, ErrNotConnected) {
			mg.conns.put(user, c, err, now)
		}
		return c, err
	})
	if errors.Is(err, ErrStoreUnavailable) && ok {
		return e.val, e.err // the last known answer, as LookupKey serves it
	}
	if errors.Is(err, ErrDecrypt) {
		return Connection{}, mg.corrupt(user, err, now)
	}
	return c, err
}

func (mg *Manager) storeDown(now time.Time) bool { return now.UnixNano() < mg.storeDownUntil.Load() }

// noteStore opens the store backoff after a failed Redis operation, counted from when it failed
// (not from when its request began: a read against an unanswering Redis takes its timeouts to
// fail, longer than the backoff itself).
func (mg *Manager) noteStore(err error) {
	if errors.Is(err, ErrStoreUnavailable) {
		mg.storeDownUntil.Store(mg.opts.Now.Now().Add(storeBackoff).UnixNano())
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
// has not expired, the current token is used; for an expired token the error is returned
// (*RefreshError for the Academy, *StoreError for Redis).
func (mg *Manager) Token(ctx context.Context, c Connection) (_ Connection, refreshed bool, err error) {
	if c.Status == StatusReauthRequired {
		return Connection{}, false, ErrReauthRequired
	}
	now := mg.opts.Now.Now()
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
// with another access token (refreshing unless another request already did). When that cannot
// be had for a passing reason the error is a *RefreshError (or *StoreError), which the caller
// answers instead of the Academy's 401 (docs/reference.md §4 step 5).
func (mg *Manager) Rejected(ctx context.Context, c Connection) (Connection, error) {
	return mg.refresh(ctx, c, metrics.TriggerReactive)
}

// refresh runs seen's refresh through the Refresher and caches what it learnt: the new
// connection, or the reauth_required record. A corrupt record is answered as corrupt.
func (mg *Manager) refresh(ctx context.Context, seen Connection, trigger string) (Connection, error) {
	c, err := mg.refresher.Refresh(ctx, seen, trigger)
	now := mg.opts.Now.Now()
	switch {
	case errors.Is(err, ErrDecrypt):
		return Connection{}, mg.corrupt(seen.User, err, now)
	case err == nil, errors.Is(err, ErrReauthRequired) && c.Status == StatusReauthRequired:
		mg.conns.put(seen.User, c, nil, now)
	}
	return c, err
}

// corrupt answers a connection record that does not decode or decrypt (docs/reference.md §6): refused, never
// forwarded, never taken for a Redis outage. The cached copy is replaced by the refusal, so
// the stale token is not served even while Redis is flagged down, and the caller gets
// ErrReauthRequired (401 reauthorization_required: a new authorization overwrites the record)
// that also matches ErrDecrypt.
func (mg *Manager) corrupt(user string, err error, now time.Time) error {
	mg.log.Error("connection record is corrupt: refused", zap.String("user", user), zap.Error(err))
	err = fmt.Errorf("%w: %w", ErrReauthRequired, err)
	mg.conns.put(user, Connection{}, err, now)
	return err
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
	if err == nil && mg.opts.Now.Now().Before(c.AccessExpiresAt) {
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
