package sim

import (
	"crypto/rand"
	"encoding/base64"
	"slices"
	"strings"
	"time"

	"github.com/academy-gateway/academy-gateway/scope"
)

// splitScopes splits a scope parameter on spaces, commas and plus signs (a
// literal "+" survives when a client encodes spaces as %2B), dropping empty
// items. It does not validate.
func splitScopes(raw string) []string {
	return strings.FieldsFunc(raw, func(r rune) bool {
		return r == ' ' || r == ',' || r == '+' || r == '\t'
	})
}

// parseScopes validates a scope parameter and returns the granted scopes,
// deduplicated, in canonical order. The second result is the name of the
// first unknown scope, when there is one; missingConnect reports a valid list
// that lacks connect.
func parseScopes(raw string) (scopes []string, unknown string, missingConnect bool) {
	items := splitScopes(raw)
	for _, it := range items {
		if _, err := scope.Parse(it); err != nil {
			return nil, it, false
		}
	}
	for _, k := range scope.All {
		if slices.Contains(items, string(k)) {
			scopes = append(scopes, string(k))
		}
	}
	return scopes, "", !slices.Contains(scopes, string(scope.Connect))
}

// authCode is an authorization code handed out by /authorize.
type authCode struct {
	clientID    string
	redirectURI string
	userID      string
	scopes      []string
	expires     time.Time
	used        bool
}

// connection is one grant of one Academy user to the client: the tokens of
// a code exchange and of every refresh that follows it. Revoking it (by a
// newer exchange for the same user, or by /invalidate) kills all its tokens.
type connection struct {
	userID  string
	scopes  []string
	revoked bool
}

// accessToken is a Bearer token for resource calls.
type accessToken struct {
	conn          *connection
	expires       time.Time
	forcedExpired bool // set by ExpireAccessTokens
}

func (t *accessToken) expired(now time.Time) bool {
	return t.forcedExpired || !now.Before(t.expires)
}

// refreshToken is a single-use token for /refresh.
type refreshToken struct {
	conn          *connection
	expires       time.Time
	forcedExpired bool // set by ExpireRefreshTokens
	spent         bool // used by a successful refresh; kept to detect reuse
}

func (t *refreshToken) expired(now time.Time) bool {
	return t.forcedExpired || !now.Before(t.expires)
}

// tokenResponse is the body of a successful /token or /refresh. Lifetimes
// are in Academy minutes, as the Academy documents.
type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	ExpiresIn        int    `json:"expires_in"`
	RefreshToken     string `json:"refresh_token"`
	RefreshExpiresIn int    `json:"refresh_expires_in"`
}

// newSecret returns prefix followed by 256 random bits in unpadded
// base64url, e.g. "at_q3X…".
func newSecret(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// issueTokensLocked issues a fresh access and refresh token on conn. The
// caller holds s.mu.
func (s *Server) issueTokensLocked(conn *connection) tokenResponse {
	now := s.opts.Now()
	res := tokenResponse{
		AccessToken:      newSecret("at_"),
		ExpiresIn:        s.opts.AccessMinutes,
		RefreshToken:     newSecret("rt_"),
		RefreshExpiresIn: s.opts.RefreshMinutes,
	}
	s.access[res.AccessToken] = &accessToken{
		conn:    conn,
		expires: now.Add(s.opts.minutes(s.opts.AccessMinutes)),
	}
	s.refresh[res.RefreshToken] = &refreshToken{
		conn:    conn,
		expires: now.Add(s.opts.minutes(s.opts.RefreshMinutes)),
	}
	return res
}

// connectLocked replaces the user's live connection, if any, by a new one
// with the given scopes: the Academy allows one active connection per user.
// The caller holds s.mu.
func (s *Server) connectLocked(userID string, scopes []string) *connection {
	if old := s.conns[userID]; old != nil {
		old.revoked = true
	}
	c := &connection{userID: userID, scopes: slices.Clone(scopes)}
	s.conns[userID] = c
	s.pruneLocked()
	return c
}

// pruneLocked forgets expired codes and dead access tokens, so
// a long-running demo does not grow without bound. Refresh tokens stay, so
// that reuse of a spent one is still recognised. The caller holds s.mu.
func (s *Server) pruneLocked() {
	now := s.opts.Now()
	for k, c := range s.codes {
		if !now.Before(c.expires) {
			delete(s.codes, k)
		}
	}
	for k, t := range s.access {
		if t.conn.revoked || t.expired(now) {
			delete(s.access, k)
		}
	}
}
