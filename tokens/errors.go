package tokens

import (
	"context"
	"errors"
	"net"
	"time"
)

// StoreError is a failure to reach Redis: it matches ErrStoreUnavailable, and Err is the cause
// (the dial, timeout or I/O error), which is what /readyz reports.
type StoreError struct {
	// Op names the store operation, as in the store_operations metric.
	Op string
	// Err is what go-redis returned.
	Err error
}

func (e *StoreError) Error() string { return "token store unavailable: " + e.Op + ": " + e.Err.Error() }

// Is makes a StoreError match ErrStoreUnavailable.
func (e *StoreError) Is(target error) bool { return target == ErrStoreUnavailable }

// Unwrap returns the cause.
func (e *StoreError) Unwrap() error { return e.Err }

// RefreshError is a refresh that could not complete for a passing reason: the Academy's refresh
// endpoint failed, timed out, asked to wait (429) or refused the client credentials (401), or
// the wait for another replica's refresh ran out. The connection is kept; the caller of a
// request that needed the refresh gets 502 upstream_unavailable (504 upstream_timeout when
// Timeout reports true) with Retry-After, never the Academy's own 401. It matches
// ErrRefreshUnavailable, and Err is the cause. A Redis failure during a refresh is a StoreError
// instead, a rejected refresh token ErrReauthRequired.
type RefreshError struct {
	// User whose refresh failed.
	User string
	// RetryAfter is how long the Academy asked to wait (Retry-After of a 429 or 503); zero:
	// it did not say.
	RetryAfter time.Duration
	// Err is the cause.
	Err error
}

func (e *RefreshError) Error() string { return "refresh " + e.User + ": " + e.Err.Error() }

// Is makes a RefreshError match ErrRefreshUnavailable.
func (e *RefreshError) Is(target error) bool { return target == ErrRefreshUnavailable }

// Unwrap returns the cause.
func (e *RefreshError) Unwrap() error { return e.Err }

// Timeout reports whether the refresh failed because something did not answer in time.
func (e *RefreshError) Timeout() bool {
	var ne net.Error
	return errors.Is(e.Err, context.DeadlineExceeded) || (errors.As(e.Err, &ne) && ne.Timeout())
}
