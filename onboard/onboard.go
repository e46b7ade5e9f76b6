// Package onboard connects a gateway user to their Academy account through the OAuth2
// authorization-code flow (SPEC §4, onboarding): an operator issues a single-use link, the user
// opens it, consents at the Academy, and the callback stores the new tokens, replacing any
// earlier connection of that user.
package onboard

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/httperr"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// TicketTTL is how long an onboarding link stays valid.
const TicketTTL = 10 * time.Minute

// cookieName carries the OAuth2 state for an Academy that does not echo it.
const cookieName = "agw_onboarding"

// Store is what onboarding needs of the token store.
type Store interface {
	CreateTicket(ctx context.Context, user string, ttl time.Duration) (string, time.Time, error)
	BindState(ctx context.Context, ticket string) (string, time.Time, error)
	ConsumeState(ctx context.Context, state string) (string, error)
	Connection(ctx context.Context, user string) (tokens.Connection, error)
	PutConnection(ctx context.Context, c tokens.Connection) (tokens.Connection, error)
}

// Academy is what onboarding needs of the Academy client.
type Academy interface {
	Exchange(ctx context.Context, code, redirectURI string) (tokens.Grant, error)
	Info(ctx context.Context, accessToken string) (tokens.Info, error)
	Invalidate(ctx context.Context, accessToken string) error
}

// Options configure a Service.
type Options struct {
	// AuthorizeURL is the Academy's consent endpoint.
	AuthorizeURL string
	// RedirectURL is where the Academy sends the user back; its path is the callback route and
	// its origin the origin of onboarding links.
	RedirectURL *url.URL
	// ClientID is the gateway's Academy client id.
	ClientID string
	// Scopes are requested at the Academy (space-separated in the authorize URL).
	Scopes []string
	// Connected is called after a user's connection was replaced (to drop caches); may be nil.
	Connected func(user string)
	// Logger; nil: no logs.
	Logger *zap.Logger
}

// Service issues onboarding links and serves the start and callback routes.
type Service struct {
	store   Store
	academy Academy
	opts    Options
}

// New returns a Service.
func New(store Store, academy Academy, opts Options) *Service {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Connected == nil {
		opts.Connected = func(string) {}
	}
	return &Service{store: store, academy: academy, opts: opts}
}

// StartPath is the route of onboarding links on the proxy listener.
const StartPath = "/oauth/start"

// CallbackPath is the route the Academy redirects back to.
func (s *Service) CallbackPath() string { return s.opts.RedirectURL.Path }

// Authorize issues the single-use onboarding link of user.
func (s *Service) Authorize(ctx context.Context, user string) (link string, expiresAt time.Time, err error) {
	if !tokens.ValidUser(user) {
		return "", time.Time{}, fmt.Errorf("authorize %q: user ids are 1-128 letters, digits or ._@+-", user)
	}
	ticket, expiresAt, err := s.store.CreateTicket(ctx, user, TicketTTL)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("authorize %s: %w", user, err)
	}
	origin := url.URL{Scheme: s.opts.RedirectURL.Scheme, Host: s.opts.RedirectURL.Host, Path: StartPath,
		RawQuery: url.Values{"ticket": {ticket}}.Encode()}
	return origin.String(), expiresAt, nil
}

// Start handles GET /oauth/start?ticket=…: it binds a state to the ticket, sets the state cookie
// and sends the browser to the Academy's consent page.
func (s *Service) Start(w http.ResponseWriter, r *http.Request) {
	state, expiresAt, err := s.store.BindState(r.Context(), r.URL.Query().Get("ticket"))
	if err != nil {
		s.fail(w, r, "This onboarding link cannot be used", err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: state, Path: s.CallbackPath(),
		MaxAge:   int(time.Until(expiresAt).Seconds()) + 1,
		HttpOnly: true, Secure: s.opts.RedirectURL.Scheme == "https", SameSite: http.SameSiteLaxMode,
	})
	q := url.Values{
		"response_type": {"code"},
		"client_id":     {s.opts.ClientID},
		"redirect_uri":  {s.opts.RedirectURL.String()},
		"scope":         {strings.Join(s.opts.Scopes, " ")},
		"state":         {state},
	}
	sep := "?"
	if strings.Contains(s.opts.AuthorizeURL, "?") {
		sep = "&"
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, s.opts.AuthorizeURL+sep+q.Encode(), http.StatusFound)
}

// Callback handles the Academy's redirect: it spends the ticket, exchanges the code, records the
// Academy identity and replaces the user's connection. On any failure nothing is stored.
func (s *Service) Callback(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: s.CallbackPath(), MaxAge: -1, HttpOnly: true})
	conn, err := s.callback(r)
	if err != nil {
		s.fail(w, r, "Connection failed", err)
		return
	}
	s.opts.Logger.Info("user connected", zap.String("user", conn.User), zap.String("academy_user", conn.AcademyUser))
	s.page(w, http.StatusOK, "Connected",
		fmt.Sprintf("%s is now connected as Academy user %s. You can close this page.", conn.User, conn.AcademyUser))
}

func (s *Service) callback(r *http.Request) (tokens.Connection, error) {
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		if c, err := r.Cookie(cookieName); err == nil {
			state = c.Value
		}
	}
	if state == "" {
		return tokens.Connection{}, newLink("The request carries no state and no onboarding cookie: open the onboarding link again.", nil)
	}
	user, err := s.store.ConsumeState(r.Context(), state)
	if err != nil {
		return tokens.Connection{}, err
	}
	if msg := academyError(q); msg != "" {
		return tokens.Connection{}, newLink("The Academy did not grant access: "+msg, nil)
	}
	code := q.Get("code")
	if code == "" {
		return tokens.Connection{}, newLink("The Academy sent no authorization code.", nil)
	}
	return s.connect(r.Context(), user, code)
}

// connect exchanges code, looks up the Academy identity and stores the connection.
func (s *Service) connect(ctx context.Context, user, code string) (tokens.Connection, error) {
	grant, err := s.academy.Exchange(ctx, code, s.opts.RedirectURL.String())
	if err != nil {
		return tokens.Connection{}, fmt.Errorf("exchange code for %s: %w", user, err)
	}
	info, err := s.academy.Info(ctx, grant.AccessToken)
	if err != nil {
		_ = s.academy.Invalidate(ctx, grant.AccessToken) // nothing is stored: leave nothing behind
		return tokens.Connection{}, fmt.Errorf("read academy identity of %s: %w", user, err)
	}
	scopes := info.Scopes
	if len(scopes) == 0 {
		scopes = s.opts.Scopes
	}
	prev, prevErr := s.store.Connection(ctx, user)
	conn := tokens.Connection{User: user, Scopes: scopes, AcademyID: info.ID, AcademyUser: info.User}.WithGrant(grant)
	if conn, err = s.store.PutConnection(ctx, conn); err != nil {
		_ = s.academy.Invalidate(ctx, grant.AccessToken)
		return tokens.Connection{}, fmt.Errorf("store connection of %s: %w", user, err)
	}
	s.opts.Connected(user)
	// The Academy revokes an earlier grant of the same Academy account itself; one of another
	// account would stay live with nobody holding it.
	if prevErr == nil && prev.AcademyID != "" && prev.AcademyID != info.ID && prev.Status == tokens.StatusActive {
		if err := s.academy.Invalidate(ctx, prev.AccessToken); err != nil {
			s.opts.Logger.Warn("invalidate replaced connection", zap.String("user", user), zap.Error(err))
		}
	}
	return conn, nil
}

// academyError returns the error the Academy put in the callback: its own error.message (or
// error[message]), or the standard error / error_description.
func academyError(q url.Values) string {
	for _, k := range []string{"error.message", "error[message]"} {
		if m := q.Get(k); m != "" {
			return m
		}
	}
	if e := q.Get("error"); e != "" {
		if d := q.Get("error_description"); d != "" {
			return e + ": " + d
		}
		return e
	}
	return ""
}

// newLink is a refusal that only a new onboarding link can mend.
func newLink(msg string, err error) *httperr.Error {
	return httperr.Wrap(http.StatusBadRequest, httperr.BadRequest, msg, err)
}

// classify maps an onboarding failure to the page the user sees: 400 when they need a new link,
// 503 when the gateway is in trouble and trying again (or telling the operator) is the remedy.
func classify(err error) *httperr.Error {
	if e, ok := httperr.As(err); ok {
		return e
	}
	switch {
	case errors.Is(err, tokens.ErrTicketUsed):
		return newLink("This onboarding link was already used. Ask for a new one.", err)
	case errors.Is(err, tokens.ErrTicketInvalid):
		return newLink("This onboarding link is unknown or has expired (links last 10 minutes). Ask for a new one.", err)
	case errors.Is(err, tokens.ErrStoreUnavailable):
		return httperr.Wrap(http.StatusServiceUnavailable, httperr.TokenStoreUnavailable,
			"The gateway's token store is unavailable; try again in a moment.", err)
	case errors.Is(err, tokens.ErrClientCredentials):
		return httperr.Wrap(http.StatusServiceUnavailable, httperr.UpstreamUnavailable,
			"The gateway is misconfigured: the Academy refused its client credentials. Tell the gateway's operator.", err)
	}
	return newLink("The authorization could not be completed with the Academy; ask for a new onboarding link.", err)
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} · academy-gateway</title></head>
<body style="font-family:system-ui,sans-serif;max-width:36em;margin:4em auto">
<h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

// fail answers with the page of err's class; the cause goes to the log, never to the page. A
// misconfiguration is an error for the operator, a refused link only information.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, title string, err error) {
	e := classify(err)
	level := zap.InfoLevel
	if e.Status >= 500 {
		level = zap.ErrorLevel
	}
	if ce := s.opts.Logger.Check(level, "onboarding refused"); ce != nil {
		ce.Write(zap.String("path", r.URL.Path), zap.Int("status", e.Status), zap.String("code", string(e.Code)), zap.Error(err))
	}
	e.SetHeaders(w.Header())
	s.page(w, e.Status, title, e.Message)
}

// page answers with a small HTML page.
func (s *Service) page(w http.ResponseWriter, status int, title, text string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, struct{ Title, Text string }{title, text})
}
