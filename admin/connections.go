package admin

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/audit"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// ConnectionJSON is the external form of a connection (docs/reference.md §5), shared by the admin API and
// `academy-gateway connections … --json`: never a token.
type ConnectionJSON struct {
	User             string    `json:"user"`
	Status           string    `json:"status"`
	Scopes           []string  `json:"scopes"`
	AcademyUser      string    `json:"academy_user"`
	AccessExpiresAt  time.Time `json:"access_expires_at"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at,omitzero"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// ToConnectionJSON returns the external form of c.
func ToConnectionJSON(c tokens.Connection) ConnectionJSON {
	return ConnectionJSON{User: c.User, Status: c.Status, Scopes: orEmpty(c.Scopes), AcademyUser: c.AcademyUser,
		AccessExpiresAt: c.AccessExpiresAt.UTC(), RefreshExpiresAt: c.RefreshExpiresAt.UTC(), UpdatedAt: c.UpdatedAt.UTC()}
}

// authorizeRequest is the optional body of POST /admin/connections/{user}/authorize.
type authorizeRequest struct {
	// AllowNewIdentity lets the link connect another Academy account than the recorded one.
	AllowNewIdentity bool `json:"allow_new_identity"`
}

// authorizeJSON answers POST /admin/connections/{user}/authorize.
type authorizeJSON struct {
	AuthorizeURL string    `json:"authorize_url"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// userVar returns the {user} of the path, or a 400 when it cannot name a user.
func userVar(r *http.Request) (string, error) {
	user := mux.Vars(r)["user"]
	if !tokens.ValidUser(user) {
		return "", badRequest("The user in the path must be 1-128 letters, digits or ._@+-.", fmt.Errorf("user %q", user))
	}
	return user, nil
}

// authorize handles POST /admin/connections/{user}/authorize: a single-use onboarding link.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) error {
	user, err := userVar(r)
	if err != nil {
		return err
	}
	var req authorizeRequest
	if r.ContentLength != 0 { // the body is optional
		if err := decodeBody(w, r, &req); err != nil {
			return err
		}
	}
	link, expiresAt, err := h.auth.Authorize(r.Context(), user, req.AllowNewIdentity)
	if err != nil {
		return err
	}
	// The link is a bearer credential until used: log that it was issued, never the link.
	h.log.Info("onboarding link issued", zap.String("user", user), zap.Time("expires_at", expiresAt))
	h.audit.Record(audit.LinkIssued, r.RemoteAddr, zap.String("user", user), zap.Bool("allow_new_identity", req.AllowNewIdentity))
	writeJSON(w, http.StatusOK, authorizeJSON{AuthorizeURL: link, ExpiresAt: expiresAt.UTC()})
	return nil
}

// listConnections handles GET /admin/connections[?limit=N][&cursor=C].
func (h *Handler) listConnections(w http.ResponseWriter, r *http.Request) error {
	conns, next, err := list(r, h.store.ConnectionsPage)
	if err != nil {
		return err
	}
	out := make([]ConnectionJSON, len(conns))
	for i, c := range conns {
		out[i] = ToConnectionJSON(c)
	}
	writeJSON(w, http.StatusOK, struct {
		Connections []ConnectionJSON `json:"connections"`
		NextCursor  string           `json:"next_cursor,omitempty"`
	}{out, next})
	return nil
}

// showConnection handles GET /admin/connections/{user}.
func (h *Handler) showConnection(w http.ResponseWriter, r *http.Request) error {
	user, err := userVar(r)
	if err != nil {
		return err
	}
	c, err := h.store.Connection(r.Context(), user)
	if errors.Is(err, tokens.ErrDecrypt) {
		// Shown as the list shows it (tokens.Store.Connections), so it can be found and revoked.
		h.log.Warn("connection record does not decrypt", zap.String("user", user), zap.Error(err))
		c, err = tokens.Connection{User: user, Status: tokens.StatusUndecryptable}, nil
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ToConnectionJSON(c))
	return nil
}

// revokeConnection handles DELETE /admin/connections/{user}: the grant is invalidated at the
// Academy and the tokens deleted on every replica.
func (h *Handler) revokeConnection(w http.ResponseWriter, r *http.Request) error {
	user, err := userVar(r)
	if err != nil {
		return err
	}
	if err := h.revoker.Revoke(r.Context(), user); err != nil {
		return err
	}
	h.log.Info("connection revoked", zap.String("user", user))
	h.audit.Record(audit.ConnectionRevoked, r.RemoteAddr, zap.String("user", user))
	noContent(w)
	return nil
}
