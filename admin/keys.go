package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/audit"
	"github.com/academy-gateway/academy-gateway/scope"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// maxBodyBytes bounds a request body.
const maxBodyBytes = 64 << 10

// keyIDPattern matches the ids the store gives keys (the first 16 hex digits of the key's hash).
var keyIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

// createKeyRequest is the body of POST /admin/keys.
type createKeyRequest struct {
	User   string   `json:"user"`
	Scopes []string `json:"scopes"`
	Name   string   `json:"name"`
	// Key, when set, registers this existing (legacy v1) key instead of issuing a new one.
	Key string `json:"key"`
}

// CreatedKeyJSON answers POST /admin/keys (and `keys create --json`): the only answer that
// ever carries the key.
type CreatedKeyJSON struct {
	ID        string    `json:"id"`
	Key       string    `json:"key"`
	User      string    `json:"user"`
	Scopes    []string  `json:"scopes"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// KeyJSON is a listed key, in the admin API and `keys list --json`: never the key or its hash.
type KeyJSON struct {
	ID         string    `json:"id"`
	User       string    `json:"user"`
	Scopes     []string  `json:"scopes"`
	Name       string    `json:"name"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// ToKeyJSON returns the external form of k.
func ToKeyJSON(k tokens.APIKey) KeyJSON {
	return KeyJSON{ID: k.ID, User: k.User, Scopes: orEmpty(k.Scopes), Name: k.Name,
		CreatedAt: k.CreatedAt.UTC(), LastUsedAt: k.LastUsedAt.UTC()}
}

// createKey handles POST /admin/keys.
func (h *Handler) createKey(w http.ResponseWriter, r *http.Request) error {
	var req createKeyRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if !tokens.ValidUser(req.User) {
		return badRequest(`"user" must be 1-128 letters, digits or ._@+-.`, fmt.Errorf("user %q", req.User))
	}
	scopes, err := checkScopes(req.Scopes)
	if err != nil {
		return err
	}
	k, key, err := h.store.IssueKey(r.Context(), req.User, scopes, req.Name, req.Key)
	if err != nil {
		return err
	}
	h.log.Info("api key created", zap.String("id", k.ID), zap.String("user", k.User),
		zap.Strings("scopes", k.Scopes), zap.Bool("registered_existing", req.Key != ""))
	h.audit.Record(audit.KeyCreated, r.RemoteAddr, zap.String("user", k.User), zap.String("key_id", k.ID),
		zap.Strings("scopes", k.Scopes), zap.Bool("registered_existing", req.Key != ""))
	writeJSON(w, http.StatusCreated, CreatedKeyJSON{ID: k.ID, Key: key, User: k.User,
		Scopes: orEmpty(k.Scopes), Name: k.Name, CreatedAt: k.CreatedAt.UTC()})
	return nil
}

// checkScopes returns scopes without repeats, or a 400 if one is not read, write or delete.
func checkScopes(scopes []string) ([]string, error) {
	out, err := scope.ParseList(scopes, scope.KeyScopes)
	if err != nil {
		return nil, badRequest(`"scopes" may hold only `+scope.Join(scope.KeyScopes, ", ")+".", err)
	}
	return out, nil
}

// listKeys handles GET /admin/keys[?user=U][&limit=N][&cursor=C]: the keys of U, or of every
// user (a page of them with limit or cursor).
func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) error {
	user := r.URL.Query().Get("user")
	if user != "" && !tokens.ValidUser(user) {
		return badRequest(`The "user" parameter must be 1-128 letters, digits or ._@+-.`, fmt.Errorf("user %q", user))
	}
	keys, next, err := list(r, func(ctx context.Context, cursor string, limit int) ([]tokens.APIKey, string, error) {
		return h.store.KeysPage(ctx, user, cursor, limit)
	})
	if err != nil {
		return err
	}
	out := make([]KeyJSON, len(keys))
	for i, k := range keys {
		out[i] = ToKeyJSON(k)
	}
	writeJSON(w, http.StatusOK, struct {
		Keys       []KeyJSON `json:"keys"`
		NextCursor string    `json:"next_cursor,omitempty"`
	}{out, next})
	return nil
}

// deleteKey handles DELETE /admin/keys/{id}. An id of the wrong form cannot exist: 404 without
// asking Redis.
func (h *Handler) deleteKey(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["id"]
	if !keyIDPattern.MatchString(id) {
		return notFound("No API key has this id.", fmt.Errorf("key id %q is not 16 hex digits", id))
	}
	k, err := h.store.DeleteKey(r.Context(), id)
	if err != nil {
		return err
	}
	h.log.Info("api key revoked", zap.String("id", k.ID), zap.String("user", k.User))
	h.audit.Record(audit.KeyRevoked, r.RemoteAddr, zap.String("user", k.User), zap.String("key_id", k.ID))
	noContent(w)
	return nil
}

// decodeBody reads one JSON object of at most maxBodyBytes into v, refusing unknown fields and
// trailing data.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.Decode(new(json.RawMessage)) != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooLarge):
		return badRequest(fmt.Sprintf("The request body exceeds %d KiB.", maxBodyBytes>>10), err)
	case errors.Is(err, io.EOF):
		return badRequest("The request needs a JSON object body.", err)
	default:
		return badRequest("The request body is not a JSON object of the documented fields: "+jsonProblem(err), err)
	}
}

// jsonProblem describes a decoding error without quoting the body (which may hold a key).
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d.", syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("%q has the wrong type.", typ.Field)
		}
		return "the body has the wrong type."
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends early."
	default:
		return strings.TrimPrefix(err.Error(), "json: ") + "." // unknown field "x", data after the object
	}
}

// orEmpty returns s, or an empty list for nil so it encodes as [] rather than null.
func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
