package tokens

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/academy-gateway/academy-gateway/metrics"
)

// RefreshStore is what a Refresher needs of the token store: read a connection, write it
// compare-and-set, hold the user's cross-replica lease, and mark a refresh in flight. *Store
// implements it over Redis; tests also run the Refresher over an in-memory fake.
type RefreshStore interface {
	// Connection reads the user's connection: ErrNotConnected if there is none.
	Connection(ctx context.Context, user string) (Connection, error)
	// RefreshState is Connection with the refresh marker on it (nil: none).
	RefreshState(ctx context.Context, user string) (Connection, *RefreshMarker, error)
	// CompareAndSwap writes c if the stored version is still expected (false, nil otherwise),
	// and clears any refresh marker.
	CompareAndSwap(ctx context.Context, c Connection, expected int64) (Connection, bool, error)
	// AcquireLease takes the user's refresh lease for ttl; false when another holds it.
	AcquireLease(ctx context.Context, user string, ttl time.Duration) (Lease, bool, error)
	// RenewLease extends a held lease; false when it was lost.
	RenewLease(ctx context.Context, l Lease, ttl time.Duration) (bool, error)
	// ReleaseLease drops a lease if it is still held by l.
	ReleaseLease(ctx context.Context, l Lease) error
	// MarkRefreshing sets the RefreshMarker of l's holder on the connection at version, if l is
	// still held and the version current; false otherwise.
	MarkRefreshing(ctx context.Context, l Lease, version int64) (bool, error)
	// ClearRefreshing removes the marker that l's holder set.
	ClearRefreshing(ctx context.Context, l Lease) error
}

// TokenEndpoint is what a Refresher needs of the Academy: *Academy implements it.
type TokenEndpoint interface {
	// Refresh spends refreshToken for a new grant. Errors match ErrInvalidGrant when the
	// Academy rejected the token.
	Refresh(ctx context.Context, refreshToken string) (Grant, error)
}

// RefresherOptions tune a Refresher. Zero values get the defaults named on each field.
type RefresherOptions struct {
	// RefreshBefore: a connection with less than this left of its access token (capped at half
	// its lifetime) needs a refresh. Zero: only once expired.
	RefreshBefore time.Duration
	// LeaseTTL is the lifetime of the cross-replica lease, renewed every third of it while a
	// refresh runs; zero: 10s. A replica that dies holding it blocks the user's refreshes for
	// at most this long.
	LeaseTTL time.Duration
	// Timeout bounds a whole refresh, the wait for another replica's included; zero: 30s.
	Timeout time.Duration
	// LeaseWait is how often a replica that did not get the lease looks again; zero: from 5ms,
	// doubled up to 100ms, until Timeout.
	LeaseWait Backoff
	// SaveRetry bounds the retries of a failed write of new tokens, which are made only while
	// the lease is held; zero: from 50ms, doubled up to 1s, 8 tries.
	SaveRetry Backoff
	// Now is the clock; nil: time.Now.
	Now Clock
	// Logger receives refresh events; nil: no logs.
	Logger *zap.Logger
	// OnReauth is called when this Refresher marked a connection reauth_required, before the
	// caller learns it, with the webhook's reason (ReasonInvalidGrant, ReasonRefreshExpired);
	// nil: nothing.
	OnReauth func(ctx context.Context, user, reason string)
}

func (o RefresherOptions) withDefaults() RefresherOptions {
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.LeaseWait == (Backoff{}) {
		o.LeaseWait = Backoff{Initial: 5 * time.Millisecond, Max: 100 * time.Millisecond}
	}
	if o.SaveRetry == (Backoff{}) {
		o.SaveRetry = Backoff{Initial: 50 * time.Millisecond, Max: time.Second, Attempts: 8}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.OnReauth == nil {
		o.OnReauth = func(context.Context, string, string) {}
	}
	return o
}

// Refresher refreshes access tokens with exactly one refresh per user at a time across
// goroutines (single-flight) and replicas (a lease in the store), double-checked: under the
// lease it re-reads the connection and refreshes only if it still needs it (STYLE 12). It
// writes the result compare-and-set, so a slower refresher never overwrites a newer token and a
// request that lost the race uses the winner's token; and it never sends a refresh token that
// may be spent (see RefreshMarker and refreshLocked).
type Refresher struct {
	store   RefreshStore
	academy TokenEndpoint
	m       *metrics.Metrics
	opts    RefresherOptions
	log     *zap.Logger
	flight  singleflight.Group

	// notBefore (unix ns): no refresh is sent before then, because the Academy answered 429
	// with Retry-After. It is process-wide: the limit is the client's, not one user's.
	notBefore atomic.Int64
}

// NewRefresher returns a Refresher over store and academy.
func NewRefresher(store RefreshStore, academy TokenEndpoint, m *metrics.Metrics, opts RefresherOptions) *Refresher {
	opts = opts.withDefaults()
	return &Refresher{store: store, academy: academy, m: m, opts: opts, log: opts.Logger}
}

// errRetryLater is the cause of refreshes not sent because the Academy asked to wait.
var errRetryLater = errors.New("the Academy's refresh endpoint asked to wait (429 Retry-After)")

// errLeaseLost is the cause of a refresh abandoned because the lease expired before the marker
// could be set.
var errLeaseLost = errors.New("the refresh lease was lost before the refresh started")

// Refresh returns a connection whose access token serves trigger: seen's, refreshed, or the
// result of a refresh that another goroutine or replica made meanwhile. Callers for the same
// user share one refresh, which is detached from the caller who started it and bounded by
// Timeout; a caller whose ctx ends stops waiting. Errors: ErrReauthRequired (the connection is
// then returned as stored, reauth_required, when known), *RefreshError (ErrRefreshUnavailable),
// *StoreError (ErrStoreUnavailable), ErrDecrypt for a corrupt record, or ctx's error.
func (r *Refresher) Refresh(ctx context.Context, seen Connection, trigger string) (Connection, error) {
	if wait := time.Duration(r.notBefore.Load() - r.opts.Now.Now().UnixNano()); wait > 0 {
		return Connection{}, &RefreshError{User: seen.User, RetryAfter: wait, Err: errRetryLater}
	}
	ch := r.flight.DoChan(seen.User, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.Timeout)
		defer cancel()
		return r.refreshShared(fctx, seen, trigger)
	})
	select {
	case res := <-ch:
		c, _ := res.Val.(Connection)
		return c, res.Err
	case <-ctx.Done():
		return Connection{}, fmt.Errorf("wait for refresh of %s: %w", seen.User, ctx.Err())
	}
}

// usable reports whether cur, read after seen was found wanting, already serves trigger:
// another goroutine or replica refreshed in between.
func (r *Refresher) usable(cur, seen Connection, trigger string) bool {
	if cur.Status != StatusActive {
		return false
	}
	switch trigger {
	case metrics.TriggerKeepAlive:
		return cur.Version != seen.Version
	case metrics.TriggerReactive:
		return cur.AccessToken != seen.AccessToken && !cur.needsRefresh(r.opts.Now.Now(), r.opts.RefreshBefore)
	default:
		return !cur.needsRefresh(r.opts.Now.Now(), r.opts.RefreshBefore)
	}
}

// refreshShared takes the user's lease (waiting for another replica's refresh if need be),
// re-reads the connection under it, and refreshes only if it still needs it.
func (r *Refresher) refreshShared(ctx context.Context, seen Connection, trigger string) (Connection, error) {
	user := seen.User
	start := r.opts.Now.Now()
	var lease Lease
	for try := 1; ; try++ {
		l, ok, err := r.store.AcquireLease(ctx, user, r.opts.LeaseTTL)
		if err != nil {
			return Connection{}, fmt.Errorf("refresh %s: take the lease: %w", user, err)
		}
		if ok {
			lease = l
			break
		}
		// Another replica refreshes: its result shows up as a newer connection.
		cur, err := r.store.Connection(ctx, user)
		if err != nil {
			return Connection{}, fmt.Errorf("refresh %s: read while waiting: %w", user, err)
		}
		if cur.Status == StatusReauthRequired {
			return cur, fmt.Errorf("refresh %s: marked by another replica: %w", user, ErrReauthRequired)
		}
		if r.usable(cur, seen, trigger) {
			r.m.RefreshLockWait.Observe(r.opts.Now.Now().Sub(start).Seconds())
			return cur, nil
		}
		if err := r.opts.LeaseWait.Wait(ctx, try); err != nil {
			return Connection{}, &RefreshError{User: user, Err: fmt.Errorf("wait for another replica's refresh: %w", err)}
		}
	}
	if waited := r.opts.Now.Now().Sub(start); waited > 0 {
		r.m.RefreshLockWait.Observe(waited.Seconds())
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if err := r.store.ReleaseLease(rctx, lease); err != nil {
			r.log.Warn("release refresh lease", zap.String("user", user), zap.Error(err))
		}
	}()
	held := r.keepLease(ctx, lease)
	defer held.stop()

	cur, marker, err := r.store.RefreshState(ctx, user) // re-read under the lease
	switch {
	case err != nil:
		return Connection{}, fmt.Errorf("refresh %s: re-read under the lease: %w", user, err)
	case cur.Status == StatusReauthRequired:
		return cur, fmt.Errorf("refresh %s: %w", user, ErrReauthRequired)
	case !marker.IsZero():
		// The marker outlived its holder's lease: that replica died or was cut off after it may
		// have sent this refresh token. Sending it again could replay a spent token (which the
		// Academy may treat as theft and answer by revoking the grant), so the connection ends
		// here, cleanly, as reauth_required.
		r.log.Warn("a replica stopped in the middle of a refresh; the refresh token may be spent: connection needs re-authorization",
			zap.String("user", user), zap.Time("refresh_started", marker.Since))
		// docs/reference.md §9 has no reason of its own for this: the refresh token is as good as refused.
		return r.markReauth(ctx, cur, ReasonInvalidGrant, "interrupted refresh")
	case r.usable(cur, seen, trigger):
		return cur, nil
	}
	return r.refreshLocked(ctx, lease, held, cur, trigger)
}

// refreshLocked calls the Academy with cur's refresh token and stores the result; the caller
// holds lease.
//
// The refresh-in-flight marker (issue 14, "Faults"). Before the call, the marker is set in the
// connection's hash, atomically with a check that the lease is still ours and cur still the
// stored version; no marker, no call. A live holder always resolves it: new tokens or a
// reauth_required record replace it (every compare-and-set clears it), and any other outcome
// removes it, since docs/reference.md §4 step 5 counts a failing, hanging or credential-refusing refresh
// endpoint as a passing reason that must not cost the connection (if such a call did rotate
// the token after all, the next refresh is rejected and ends the connection as
// reauth_required, a clean end). So a marker that a new lease holder finds was left by a holder
// that died, or lost Redis, while its refresh token was at the Academy: whether the Academy
// rotated it cannot be known, and sending it again could replay a spent token, which the
// Academy may take for theft. refreshShared then ends the connection as reauth_required
// without calling the Academy: one re-authorization in the rare case that the dead holder's
// request never arrived, instead of a replay in the likely case that it did.
func (r *Refresher) refreshLocked(ctx context.Context, lease Lease, held *heldLease, cur Connection, trigger string) (Connection, error) {
	user := cur.User
	var grant Grant
	var err error
	reason := ReasonInvalidGrant
	if !cur.RefreshExpiresAt.IsZero() && !r.opts.Now.Now().Before(cur.RefreshExpiresAt) {
		reason = ReasonRefreshExpired
		err = fmt.Errorf("refresh token expired at %s: %w", cur.RefreshExpiresAt.Format(time.RFC3339), ErrInvalidGrant)
	} else {
		ok, merr := r.store.MarkRefreshing(ctx, lease, cur.Version)
		if merr != nil {
			return Connection{}, fmt.Errorf("refresh %s: mark the refresh in flight: %w", user, merr)
		}
		if !ok {
			return Connection{}, &RefreshError{User: user, Err: errLeaseLost}
		}
		began := r.opts.Now.Now()
		grant, err = r.academy.Refresh(ctx, cur.RefreshToken)
		r.m.TokenRefreshDuration.Observe(r.opts.Now.Now().Sub(began).Seconds())
	}
	switch {
	case errors.Is(err, ErrInvalidGrant):
		r.m.TokenRefreshes.WithLabelValues(trigger, metrics.ResultInvalidGrant).Inc()
		r.log.Warn("refresh token rejected; connection needs re-authorization", zap.String("user", user), zap.String("trigger", trigger), zap.Error(err))
		return r.markReauth(ctx, cur, reason, "refresh token rejected")
	case err != nil:
		r.m.TokenRefreshes.WithLabelValues(trigger, metrics.ResultError).Inc()
		if errors.Is(err, ErrClientCredentials) { // the operator's mistake, not the user's: no refresh can work
			r.log.Error("the Academy refused the gateway's client credentials: check oauth.client_id and oauth.client_secret",
				zap.String("user", user), zap.String("trigger", trigger), zap.Error(err))
		}
		rerr := &RefreshError{User: user, Err: err}
		var api *APIError
		if errors.As(err, &api) && api.RetryAfter > 0 {
			rerr.RetryAfter = api.RetryAfter
			if api.Status == 429 {
				r.notBefore.Store(r.opts.Now.Now().Add(api.RetryAfter).UnixNano())
			}
		}
		r.clearMarker(ctx, lease)
		return Connection{}, rerr
	}
	r.m.TokenRefreshes.WithLabelValues(trigger, metrics.ResultSuccess).Inc()
	return r.save(ctx, held, cur, cur.WithGrant(grant), trigger)
}

// save writes next over cur. The old refresh token is spent now, so a failed write is retried
// (SaveRetry) while the lease is held. If it never lands, next is still returned for this
// process to use; the marker stays in Redis, so other replicas end the connection as
// reauth_required instead of replaying the spent token.
func (r *Refresher) save(ctx context.Context, held *heldLease, cur, next Connection, trigger string) (Connection, error) {
	user := cur.User
	for try := 1; ; try++ {
		saved, ok, err := r.store.CompareAndSwap(ctx, next, cur.Version)
		if err == nil && ok {
			r.log.Debug("token refreshed", zap.String("user", user), zap.String("trigger", trigger), zap.Int64("version", saved.Version))
			return saved, nil
		}
		if err == nil {
			// Replaced meanwhile (a new authorization, or a replica that took over an expired
			// lease): the stored connection wins.
			latest, err := r.store.Connection(ctx, user)
			if err != nil {
				return Connection{}, fmt.Errorf("refresh %s: read after a lost race: %w", user, err)
			}
			if latest.Status != StatusActive {
				return latest, fmt.Errorf("refresh %s: replaced meanwhile: %w", user, ErrReauthRequired)
			}
			return latest, nil
		}
		if r.opts.SaveRetry.Last(try) || !held.held() || r.opts.SaveRetry.Wait(ctx, try) != nil {
			r.log.Error("refreshed tokens could not be saved; this replica serves them, the others will need re-authorization",
				zap.String("user", user), zap.Int("tries", try), zap.Error(err))
			return next, nil
		}
	}
}

// markReauth records that cur can no longer be refreshed, unless a newer connection replaced it
// meanwhile (which is then returned), and reports it to OnReauth with reason. why goes into the
// error.
func (r *Refresher) markReauth(ctx context.Context, cur Connection, reason, why string) (Connection, error) {
	marked := cur
	marked.Status, marked.UpdatedAt = StatusReauthRequired, r.opts.Now.Now()
	saved, ok, err := r.store.CompareAndSwap(ctx, marked, cur.Version)
	if err != nil {
		return Connection{}, fmt.Errorf("mark %s for re-authorization: %w", cur.User, err)
	}
	if !ok {
		latest, err := r.store.Connection(ctx, cur.User)
		if err == nil && latest.Status == StatusActive {
			return latest, nil
		}
		return latest, fmt.Errorf("refresh %s: %s: %w", cur.User, why, ErrReauthRequired)
	}
	r.opts.OnReauth(ctx, cur.User, reason)
	return saved, fmt.Errorf("refresh %s: %s: %w", cur.User, why, ErrReauthRequired)
}

// clearMarker removes this holder's marker after a failure that left the token unspent. If
// that write fails too, the marker stays and the next holder takes it for an interrupted
// refresh: the connection then needs re-authorization, which is the safe side.
func (r *Refresher) clearMarker(ctx context.Context, lease Lease) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := r.store.ClearRefreshing(cctx, lease); err != nil {
		r.log.Warn("clear the refresh marker", zap.String("user", lease.User), zap.Error(err))
	}
}
