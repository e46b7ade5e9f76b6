package admin

import (
	"context"
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

// list answers a list endpoint from page: one page (and the cursor of the next) when the
// caller pages with limit or cursor, else the whole list, read page by page (docs/reference.md
// §5: a list asked for without paging holds every item).
func list[T any](r *http.Request, page func(ctx context.Context, cursor string, limit int) ([]T, string, error)) ([]T, string, error) {
	cursor, limit, err := paging(r)
	if err != nil {
		return nil, "", err
	}
	if q := r.URL.Query(); q.Has("limit") || q.Has("cursor") {
		return page(r.Context(), cursor, limit)
	}
	var all []T
	for {
		items, next, err := page(r.Context(), cursor, tokens.MaxPageSize)
		if err != nil {
			return nil, "", err
		}
		all = append(all, items...)
		if next == "" {
			return all, "", nil
		}
		cursor = next
	}
}

// listUsers handles GET /admin/users[?limit=N][&cursor=C]: every user that holds a key or a
// connection (a page of them with limit or cursor), with status, key count and last use.
func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) error {
	users, next, err := list(r, h.store.UsersPage)
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
