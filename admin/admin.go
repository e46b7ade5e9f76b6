// Package admin serves the admin API of docs/reference.md §5 on the ops listener: issuing, listing and
// revoking API keys, and issuing onboarding links for, listing, showing and revoking Academy
// connections. Every route needs `Authorization: Bearer <admin token>`; with no admin token
// configured the API is disabled and every path answers 404. Requests and answers are JSON,
// errors are {"error":{"code","message"}}, and docs/admin-api.yaml describes it all.
package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/audit"
	"github.com/academy-gateway/academy-gateway/credential"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// Store is what the admin API needs of the token store (*tokens.Store).
type Store interface {
	// IssueKey creates a key for user, or registers existing when it is not empty.
	IssueKey(ctx context.Context, user string, scopes []string, name, existing string) (tokens.APIKey, string, error)
	// DeleteKey revokes the key with id: tokens.ErrNotFound if there is none.
	DeleteKey(ctx context.Context, id string) (tokens.APIKey, error)
	// Connection reads the connection of user: tokens.ErrNotConnected if there is none.
	Connection(ctx context.Context, user string) (tokens.Connection, error)
	// KeysPage lists up to limit keys of user (every user when empty) after cursor, and the
	// next page's cursor ("" after the last); tokens.ErrBadCursor for a cursor it never gave.
	KeysPage(ctx context.Context, user, cursor string, limit int) ([]tokens.APIKey, string, error)
	// ConnectionsPage lists up to limit connections after cursor, by user.
	ConnectionsPage(ctx context.Context, cursor string, limit int) ([]tokens.Connection, string, error)
	// UsersPage lists up to limit users holding a key or a connection after cursor, by user.
	UsersPage(ctx context.Context, cursor string, limit int) ([]tokens.UserSummary, string, error)
	// ImportKeys registers the checked lines of an import (see keyimport).
	ImportKeys(ctx context.Context, entries []tokens.ImportEntry, dryRun bool) ([]tokens.ImportResult, error)
}

// Revoker invalidates a user's grant at the Academy and deletes its tokens (*tokens.Manager).
type Revoker interface {
	// Revoke returns tokens.ErrNotConnected when the user has no connection.
	Revoke(ctx context.Context, user string) error
}

// Authorizer issues single-use onboarding links (*onboard.Service).
type Authorizer interface {
	// Authorize returns the link for user and when it expires; allowNewIdentity lets it connect
	// another Academy account than the recorded one.
	Authorize(ctx context.Context, user string, allowNewIdentity bool) (link string, expiresAt time.Time, err error)
}

// Options configure a Handler.
type Options struct {
	// Token is the admin token callers present as `Authorization: Bearer <Token>`. Empty disables
	// the admin API: every path then answers 404 not_found, authenticated or not.
	Token string
	// Logger receives one entry per refused request and per change made; nil: no logs. Keys,
	// onboarding links and the admin token are never logged.
	Logger *zap.Logger
	// Audit receives one line per change made (key created or revoked, link issued, connection
	// revoked), with the client's address; the zero value: none.
	Audit audit.Logger
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// Handler serves the admin API. Mount it on the ops listener for the /admin/ prefix, e.g.
// router.PathPrefix("/admin/").Handler(h); it never belongs on the proxy listener.
type Handler struct {
	store   Store
	revoker Revoker
	auth    Authorizer
	log     *zap.Logger
	audit   audit.Logger
	enabled bool
	token   credential.Secret
	router  *mux.Router
}

// New returns the admin API over store, rev and auth.
func New(store Store, rev Revoker, auth Authorizer, opts Options) *Handler {
	opts = opts.withDefaults()
	h := &Handler{
		store:   store,
		revoker: rev,
		auth:    auth,
		log:     opts.Logger,
		audit:   opts.Audit,
		enabled: opts.Token != "",
		token:   credential.NewSecret(opts.Token),
	}
	h.router = h.routes()
	return h
}

// ServeHTTP serves one admin request, or answers 404 when the admin API is disabled.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.enabled {
		h.fail(w, r, notFound("No such admin resource.", errDisabled))
		return
	}
	h.router.ServeHTTP(w, r)
}

// Route is one method and path template of the admin API, such as DELETE /admin/keys/{id}.
type Route struct {
	Method string
	Path   string
}

// Routes lists the routes the Handler serves (whether or not it is enabled), in registration
// order, with path variables as {name}.
func (h *Handler) Routes() []Route {
	var out []Route
	_ = h.router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := route.GetPathTemplate()
		if err != nil {
			return nil // a subrouter's prefix, not a route
		}
		methods, err := route.GetMethods()
		if err != nil {
			return nil
		}
		for _, m := range methods {
			out = append(out, Route{Method: m, Path: plainTemplate(path)})
		}
		return nil
	})
	return out
}

// plainTemplate drops the patterns of path variables: /keys/{id:[0-9a-f]+} → /keys/{id}.
func plainTemplate(path string) string {
	out := make([]byte, 0, len(path))
	depth, skipping := 0, false
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c == '{':
			depth++
			if depth == 1 {
				skipping = false
			}
		case c == '}':
			depth--
			if depth == 0 {
				skipping = false
			}
		case c == ':' && depth == 1:
			skipping = true
		}
		if !skipping {
			out = append(out, c)
		}
	}
	return string(out)
}
