// Package onboard connects a gateway user to their Academy account through the OAuth2
// authorization-code flow (docs/reference.md §4, onboarding): an operator issues a single-use link, the user
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

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/httperr"
	"github.com/academy-gateway/academy-gateway/tokens"
	"github.com/academy-gateway/academy-gateway/webhooks"
)

// TicketTTL is how long an onboarding link stays valid.
const TicketTTL = 10 * time.Minute

// cookieName carries the OAuth2 state for an Academy that does not echo it.
const cookieName = "agw_onboarding"

// Store is what onboarding needs of the token store.
type Store interface {
	CreateTicketFor(ctx context.Context, t tokens.Ticket, ttl time.Duration) (string, time.Time, error)
	BindState(ctx context.Context, ticket string) (string, time.Time, error)
	ConsumeTicket(ctx context.Context, state string) (tokens.Ticket, error)
	Connection(ctx context.Context, user string) (tokens.Connection, error)
	PutConnection(ctx context.Context, c tokens.Connection) (tokens.Connection, error)
	// PinIdentity records user as the holder of an Academy account, returning the previous one.
	PinIdentity(ctx context.Context, academyID, user string) (string, error)
	// UnpinIdentity drops the index entry of an Academy account if it still names user.
	UnpinIdentity(ctx context.Context, academyID, user string) error
	// IdentityHolder names the user the index holds for an Academy account (a hint).
	IdentityHolder(ctx context.Context, academyID string) (string, error)
	// MarkReplaced marks user reauth_required if it is active as the Academy account.
	MarkReplaced(ctx context.Context, user, academyID string) (bool, error)
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
	// Publish records a lifecycle event (webhooks.Queue.Publish) before the page answers; nil:
	// events are not recorded.
	Publish func(ctx context.Context, e webhooks.Event) error
	// Now is the clock of event timestamps; nil: time.Now.
	Now func() time.Time
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
	if opts.Publish == nil {
		opts.Publish = func(context.Context, webhooks.Event) error { return nil }
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{store: store, academy: academy, opts: opts}
}

// StartPath is the route of onboarding links on the proxy listener (config refuses it as the
// redirect URL's path).
const StartPath = config.OnboardingStartPath

// CallbackPath is the route the Academy redirects back to.
func (s *Service) CallbackPath() string { return s.opts.RedirectURL.Path }

// Authorize issues the single-use onboarding link of user. With allowNewIdentity the link may
// connect an Academy account other than the one the user's connection recorded
// (`--new-identity`); without it such a consent is refused.
func (s *Service) Authorize(ctx context.Context, user string, allowNewIdentity bool) (link string, expiresAt time.Time, err error) {
	if !tokens.ValidUser(user) {
		return "", time.Time{}, fmt.Errorf("authorize %q: user ids are 1-128 letters, digits or ._@+-", user)
	}
	ticket, expiresAt, err := s.store.CreateTicketFor(ctx, tokens.Ticket{User: user, AllowNewIdentity: allowNewIdentity}, TicketTTL)
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
	ticket, err := s.store.ConsumeTicket(r.Context(), state)
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
	return s.connect(r.Context(), ticket, code)
}

// connect exchanges code, looks up the Academy identity, enforces the user's pinned identity and
// stores the connection; a gateway user that held the consenting Academy account is marked
// replaced. Events are recorded before the page answers.
func (s *Service) connect(ctx context.Context, t tokens.Ticket, code string) (tokens.Connection, error) {
	user := t.User
	grant, err := s.academy.Exchange(ctx, code, s.opts.RedirectURL.String())
	if err != nil {
		return tokens.Connection{}, fmt.Errorf("exchange code for %s: %w", user, err)
	}
	info, err := s.academy.Info(ctx, grant.AccessToken)
	if err != nil {
		_ = s.academy.Invalidate(ctx, grant.AccessToken) // nothing is stored: leave nothing behind
		return tokens.Connection{}, fmt.Errorf("read academy identity of %s: %w", user, err)
	}
	prev, prevErr := s.store.Connection(ctx, user)
	switch {
	case prevErr == nil, errors.Is(prevErr, tokens.ErrNotConnected):
	case errors.Is(prevErr, tokens.ErrDecrypt):
		// No configured key opens the old record: a new consent is the remedy, not a refusal.
		s.opts.Logger.Warn("earlier connection does not decrypt; replacing it", zap.String("user", user), zap.Error(prevErr))
	default:
		_ = s.academy.Invalidate(ctx, grant.AccessToken)
		return tokens.Connection{}, fmt.Errorf("read earlier connection of %s: %w", user, prevErr)
	}
	had := prevErr == nil
	switched := had && prev.AcademyID != "" && prev.AcademyID != info.ID
	if switched && !t.AllowNewIdentity {
		// The consent has already ended, at the Academy, whatever connection info's account had:
		// drop the unwanted tokens and tell the gateway user who held that account.
		if err := s.academy.Invalidate(ctx, grant.AccessToken); err != nil {
			s.opts.Logger.Warn("invalidate refused consent's tokens", zap.String("user", user), zap.Error(err))
		}
		if holder, err := s.store.IdentityHolder(ctx, info.ID); err == nil && holder != "" {
			s.replaced(ctx, holder, info.ID)
		}
		return tokens.Connection{}, newLink(fmt.Sprintf("%s is connected as Academy user %s, but this consent came from Academy user %s. "+
			"Nothing was changed. To switch %s to %s, ask for a link issued with --new-identity.",
			user, prev.AcademyUser, info.User, user, info.User), errIdentityMismatch)
	}
	scopes := info.Scopes
	if len(scopes) == 0 {
		scopes = s.opts.Scopes
	}
	conn := tokens.Connection{User: user, Scopes: scopes, AcademyID: info.ID, AcademyUser: info.User}.WithGrant(grant)
	if conn, err = s.store.PutConnection(ctx, conn); err != nil {
		_ = s.academy.Invalidate(ctx, grant.AccessToken)
		return tokens.Connection{}, fmt.Errorf("store connection of %s: %w", user, err)
	}
	s.opts.Connected(user)
	// The index is written after the record: see tokens/identity.go for why that order, and a
	// stale index, are safe.
	holder, err := s.store.PinIdentity(ctx, info.ID, user)
	if err != nil {
		s.opts.Logger.Warn("record academy identity", zap.String("user", user), zap.Error(err))
	}
	if holder != "" && holder != user {
		s.replaced(ctx, holder, info.ID)
	}
	if switched {
		if err := s.store.UnpinIdentity(ctx, prev.AcademyID, user); err != nil {
			s.opts.Logger.Warn("drop earlier academy identity", zap.String("user", user), zap.Error(err))
		}
		// The Academy revokes an earlier grant of the same Academy account itself; one of
		// another account would stay live with nobody holding it.
		if prev.Status == tokens.StatusActive {
			if err := s.academy.Invalidate(ctx, prev.AccessToken); err != nil {
				s.opts.Logger.Warn("invalidate replaced connection", zap.String("user", user), zap.Error(err))
			}
		}
	}
	s.publish(ctx, webhooks.Connected(s.opts.Now(), user, webhooks.AcademyUser{ID: info.ID, User: info.User}, had))
	return conn, nil
}

// errIdentityMismatch: the consent came from another Academy account than the pinned one.
var errIdentityMismatch = errors.New("consent from another academy account than the recorded one")

// replaced marks holder reauth_required (reason replaced) when its record confirms it was
// connected as academyID, and records the event.
func (s *Service) replaced(ctx context.Context, holder, academyID string) {
	marked, err := s.store.MarkReplaced(ctx, holder, academyID)
	if err != nil {
		s.opts.Logger.Warn("mark replaced connection", zap.String("user", holder), zap.Error(err))
		return
	}
	if marked {
		s.opts.Logger.Info("connection replaced by another user's consent", zap.String("user", holder))
		s.publish(ctx, webhooks.ReauthRequired(s.opts.Now(), holder, tokens.ReasonReplaced))
	}
}

// publish records e; a failure is logged (the change it reports is already stored).
func (s *Service) publish(ctx context.Context, e webhooks.Event) {
	if err := s.opts.Publish(ctx, e); err != nil {
		s.opts.Logger.Error("record webhook event", zap.String("type", e.Type), zap.Error(err))
	}
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
