// Package sim is an in-process simulator of the Make App Academy API v2: the
// OAuth 2.0 authorization-code flow (/authorize, /token, /refresh, /info,
// /invalidate) and the v1 resources served under the v2 base (/movies,
// /genres, /people, /organizations, /about), with Bearer authentication and
// the documented scope rules. A [Server] is an [http.Handler] mounted at the
// v2 base, so routes are /authorize, /token, /movies and so on. It keeps all
// state in memory, is safe for concurrent use, and offers test knobs
// (expiring tokens, failing refreshes, delays) that are reachable only from Go,
// never over HTTP. Lifetimes are counted in Academy "minutes" whose real length
// is [Options.Minute], so tests and demos can run the token lifecycle quickly.
package sim

import (
	"net/http"
	"sync"
	"time"
)

// DefaultClientID is the client ID a Server accepts when [Options.ClientID] is empty.
const DefaultClientID = "academy-demo-client"

// DefaultClientSecret is the client secret a Server accepts when [Options.ClientSecret] is empty.
const DefaultClientSecret = "academy-demo-secret"

// Lifetimes, in Academy minutes (see [Options.Minute]).
const (
	// DefaultAccessMinutes is the access-token lifetime, in Academy minutes,
	// used when [Options.AccessMinutes] is zero or negative.
	DefaultAccessMinutes = 5
	// DefaultRefreshMinutes is the refresh-token lifetime, in Academy minutes,
	// used when [Options.RefreshMinutes] is zero or negative.
	DefaultRefreshMinutes = 60
	// CodeMinutes is how many Academy minutes an authorization code stays valid.
	CodeMinutes = 10
)

// Options configure a Server. Zero values get the documented defaults.
type Options struct {
	// Minute is how long one Academy "minute" lasts in real time. Every
	// lifetime (codes, access and refresh tokens) is a number of minutes
	// multiplied by Minute. Zero or negative means time.Minute.
	Minute time.Duration
	// ClientID is the only client ID the Server accepts. Empty means DefaultClientID.
	ClientID string
	// ClientSecret is the secret that goes with ClientID. Empty means DefaultClientSecret.
	ClientSecret string
	// RedirectURI, when set, is the only redirect_uri /authorize and /token
	// accept, like the URI registered through the Academy form. Empty means
	// any absolute URI with a host and no fragment is accepted.
	RedirectURI string
	// AccessMinutes is the expires_in given out with every access token.
	// Zero or negative means DefaultAccessMinutes.
	AccessMinutes int
	// RefreshMinutes is the refresh_expires_in given out with every refresh
	// token. Zero or negative means DefaultRefreshMinutes.
	RefreshMinutes int
	// Now returns the current time. Nil means time.Now. Tests inject a fake
	// clock here to move through expiry without sleeping.
	Now func() time.Time
}

// withDefaults returns a copy of o with every zero value replaced by its default.
func (o Options) withDefaults() Options {
	if o.Minute <= 0 {
		o.Minute = time.Minute
	}
	if o.ClientID == "" {
		o.ClientID = DefaultClientID
	}
	if o.ClientSecret == "" {
		o.ClientSecret = DefaultClientSecret
	}
	if o.AccessMinutes <= 0 {
		o.AccessMinutes = DefaultAccessMinutes
	}
	if o.RefreshMinutes <= 0 {
		o.RefreshMinutes = DefaultRefreshMinutes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// minutes converts a number of Academy minutes into real time.
func (o Options) minutes(n int) time.Duration {
	return time.Duration(n) * o.Minute
}

// User is an Academy demo account that can be chosen on the consent page.
type User struct {
	// ID is the account's fixed 12-hex-character Academy ID.
	ID string
	// Name is the display name, e.g. "John Doe".
	Name string
	// Email is the account's e-mail address.
	Email string
}

// Stats counts what a Server has done since it was created.
type Stats struct {
	// CodesIssued counts authorization codes handed out by /authorize.
	CodesIssued int
	// TokenExchanges counts successful code exchanges at /token.
	TokenExchanges int
	// Refreshes counts successful refreshes at /refresh.
	Refreshes int
	// RefreshFailures counts /refresh requests answered with an error
	// status, including those failed on purpose by [Server.FailRefreshes].
	RefreshFailures int
	// ReusedRefreshTokens counts /refresh requests that presented a refresh
	// token which had already been spent by an earlier refresh.
	ReusedRefreshTokens int
	// Invalidations counts successful GET /invalidate calls.
	Invalidations int
}

// Server simulates the Academy API v2. Create it with [New]; it is an
// [http.Handler] and safe for concurrent use.
type Server struct {
	opts  Options
	users []User
	cat   catalog
	mux   *http.ServeMux

	mu          sync.Mutex
	codes       map[string]*authCode
	access      map[string]*accessToken
	refresh     map[string]*refreshToken
	conns       map[string]*connection // live connection per Academy user ID
	data        map[string]*userData   // records per Academy user ID
	stats       Stats
	failRefresh int
	delay       time.Duration
	echoState   bool
}

// New returns a Server configured by opts, with the two demo users and the
// default records in place and no connections.
func New(opts Options) *Server {
	s := &Server{
		opts:      opts.withDefaults(),
		users:     demoUsers(),
		cat:       newCatalog(),
		codes:     make(map[string]*authCode),
		access:    make(map[string]*accessToken),
		refresh:   make(map[string]*refreshToken),
		conns:     make(map[string]*connection),
		data:      make(map[string]*userData),
		echoState: true,
	}
	s.mux = s.routes()
	return s
}

// ServeHTTP serves the API. Paths are relative to the v2 base, e.g. /token
// or /movies/{id}. When a delay is set with [Server.SetDelay], the response
// waits that long first; if the request context ends meanwhile, nothing is
// written.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	d := s.delay
	s.mu.Unlock()
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// Users returns the demo users, John Doe and Jane Black, with their fixed IDs.
func (s *Server) Users() []User {
	return append([]User(nil), s.users...)
}

// ExpireAccessTokens makes every access token of the given Academy user that
// exists now read as expired, so resource calls with it get 401. Tokens issued
// later are not affected.
func (s *Server) ExpireAccessTokens(academyUserID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.access {
		if t.conn.userID == academyUserID {
			t.forcedExpired = true
		}
	}
}

// ExpireRefreshTokens makes every refresh token of the given Academy user that
// exists now read as expired, so /refresh with it answers 400 (invalid grant).
// Tokens issued later are not affected.
func (s *Server) ExpireRefreshTokens(academyUserID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.refresh {
		if t.conn.userID == academyUserID {
			t.forcedExpired = true
		}
	}
}

// FailRefreshes makes the next n POST /refresh calls answer 500, as a
// transient upstream failure, without spending the refresh token they carry.
// Calls rejected earlier (bad body, grant type or client) do not use up the
// count. n <= 0 turns the knob off.
func (s *Server) FailRefreshes(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failRefresh = max(n, 0)
}

// SetDelay makes every response wait d before it is handled. Zero or
// negative removes the delay.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = max(d, 0)
}

// SetEchoState sets whether /authorize copies the client's state parameter
// into its redirects (the default) or leaves it out, as some providers do.
func (s *Server) SetEchoState(echo bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.echoState = echo
}

// Stats returns a snapshot of the Server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}
