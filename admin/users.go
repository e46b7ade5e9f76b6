package admin

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/academy-gateway/academy-gateway/tokens"
)

// UserJSON is one user of GET /admin/users (and `connections pending --json`).
type UserJSON struct {
	User string `json:"user"`
	// Status is active, reauth_required or not_connected.
	Status     string    `json:"status"`
	Keys       int       `json:"keys"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// ToUserJSON returns the external form of u.
func ToUserJSON(u tokens.UserSummary) UserJSON {
	return UserJSON{User: u.User, Status: u.Status, Keys: u.Keys, LastUsedAt: u.LastUsedAt.UTC()}
}

// paging reads the limit and cursor parameters of a list endpoint: limit 1 to
// tokens.MaxPageSize (default tokens.DefaultPageSize), cursor as a previous page returned it.
func paging(r *http.Request) (cursor string, limit int, err error) {
	q := r.URL.Query()
	if v := q.Get("limit"); v != "" {
		limit, err = strconv.Atoi(v)
		if err != nil || limit < 1 || limit > tokens.MaxPageSize {
			return "", 0, badRequest(fmt.Sprintf(`"limit" must be a whole number from 1 to %d.`, tokens.MaxPageSize), fmt.Errorf("limit %q", v))
		}
	}
	return q.Get("cursor"), limit, nil
}

// listUsers handles GET /admin/users[?limit=N][&cursor=C]: every user that holds a key or a
// connection, with status, key count and last use.
func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) error {
	cursor, limit, err := paging(r)
	if err != nil {
		return err
	}
	users, next, err := h.store.UsersPage(r.Context(), cursor, limit)
	if err != nil {
		return err
	}
	out := make([]UserJSON, len(users))
	for i, u := range users {
		out[i] = ToUserJSON(u)
	}
	writeJSON(w, http.StatusOK, struct {
		Users      []UserJSON `json:"users"`
		NextCursor string     `json:"next_cursor,omitempty"`
	}{out, next})
	return nil
}
