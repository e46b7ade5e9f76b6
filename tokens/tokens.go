// Package tokens keeps the OAuth2 connections of Academy users and the API keys that map legacy
// callers to them. It stores both in Redis (tokens sealed with AES-256-GCM, keys only as hashes),
// serves the request path from a short-lived in-process cache, talks to the Academy's token
// endpoints, and refreshes access tokens single-flight per user across goroutines and replicas.
package tokens

import (
	"errors"
	"slices"
	"time"

	"github.com/academy-gateway/academy-gateway/scope"
)

// Connection statuses.
const (
	StatusActive         = "active"
	StatusReauthRequired = "reauth_required"
	// StatusUndecryptable is how lists show a record no configured key decrypts (it is never
	// stored: see crypto.go).
	StatusUndecryptable = "undecryptable"
)

// Reasons a connection became reauth_required (the webhook's `reason`).
const (
	// ReasonInvalidGrant: the Academy refused the refresh token.
	ReasonInvalidGrant = "invalid_grant"
	// ReasonRefreshExpired: the refresh token had expired by time.
	ReasonRefreshExpired = "refresh_expired"
	// ReasonReplaced: the Academy account consented for another gateway user.
	ReasonReplaced = "replaced"
)

// Errors the request path classifies with errors.Is.
var (
	// ErrNotConnected: the user has no connection.
	ErrNotConnected = errors.New("user has no connection")
	// ErrReauthRequired: the refresh token expired or was rejected; the user must onboard again.
	ErrReauthRequired = errors.New("connection needs re-authorization")
	// ErrUnknownKey: the API key is malformed, unknown or revoked.
	ErrUnknownKey = errors.New("unknown API key")
	// ErrStoreUnavailable: Redis could not be reached and no usable cached value exists. The
	// errors that match it are *StoreError, which carries the cause.
	ErrStoreUnavailable = errors.New("token store unavailable")
	// ErrRefreshUnavailable: a refresh that a request needed could not complete for a passing
	// reason; the connection is kept. The errors that match it are *RefreshError.
	ErrRefreshUnavailable = errors.New("token refresh unavailable")
	// ErrInvalidGrant: the Academy rejected a code or refresh token (expired, spent or revoked).
	ErrInvalidGrant = errors.New("invalid_grant")
	// ErrClientCredentials: the Academy refused the gateway's client id or secret, a
	// misconfiguration that must never cost a user the connection.
	ErrClientCredentials = errors.New("academy refused the client credentials")
	// ErrNotFound: no such record (API key id, ticket).
	ErrNotFound = errors.New("not found")
)

// Connection is one user's OAuth2 connection to the Academy. Tokens are in clear here and only
// here: the store seals them before they leave the process.
type Connection struct {
	User             string    `json:"user"`
	Status           string    `json:"status"`
	Scopes           []string  `json:"scopes"`
	AccessToken      string    `json:"-"`
	RefreshToken     string    `json:"-"`
	IssuedAt         time.Time `json:"issued_at"` // when the current access token was issued
	AccessExpiresAt  time.Time `json:"access_expires_at"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at"`
	AcademyID        string    `json:"academy_id,omitempty"`
	AcademyUser      string    `json:"academy_user,omitempty"`
	UpdatedAt        time.Time `json:"updated_at"`
	// Version increases with every write; writes are compare-and-set on it. Zero: never stored.
	Version int64 `json:"-"`
}

// RefreshMarker records, in Redis beside the connection record and before the Academy is
// called, that a lease holder is spending the connection's refresh token. Only the Refresher
// reads it (Store.RefreshState), so the request path's Connection does not carry it. The holder removes it once the call is over, whatever
// the outcome. A marker that outlives its holder's lease therefore means the holder died or was
// cut off mid-refresh: the Academy may have rotated the token, so the next holder must not
// send it again (see Refresher.refreshLocked).
type RefreshMarker struct {
	// Owner is the lease owner token of the holder that started the refresh.
	Owner string
	// Since is when it started.
	Since time.Time
}

// IsZero reports whether there is no marker (m is nil or empty).
func (m *RefreshMarker) IsZero() bool { return m == nil || m.Owner == "" }

// HasScope reports whether the connection was granted scope.
func (c *Connection) HasScope(s scope.Scope) bool { return slices.Contains(c.Scopes, string(s)) }

// needsRefresh reports whether less than before remains of the access token at now, with before
// capped at half the token's lifetime so short-lived tokens are not refreshed continuously.
func (c *Connection) needsRefresh(now time.Time, before time.Duration) bool {
	if half := c.AccessExpiresAt.Sub(c.IssuedAt) / 2; before > half {
		before = half
	}
	return !now.Before(c.AccessExpiresAt.Add(-before))
}

// WithGrant returns a copy of c, active, carrying the tokens of g.
func (c Connection) WithGrant(g Grant) Connection {
	c.Status = StatusActive
	c.AccessToken, c.RefreshToken = g.AccessToken, g.RefreshToken
	c.IssuedAt, c.AccessExpiresAt, c.RefreshExpiresAt = g.IssuedAt, g.AccessExpiresAt, g.RefreshExpiresAt
	c.UpdatedAt = g.IssuedAt
	return c
}

// APIKey is the stored record of one API key. The key itself is never stored.
type APIKey struct {
	ID         string    `json:"id"`
	User       string    `json:"user"`
	Scopes     []string  `json:"scopes"`
	Name       string    `json:"name"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	hash       string
}

// Allows reports whether the key may use scope. A key with no scopes is bounded only by its
// connection.
func (k *APIKey) Allows(s scope.Scope) bool {
	return len(k.Scopes) == 0 || slices.Contains(k.Scopes, string(s))
}
