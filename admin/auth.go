package admin

import (
	"errors"
	"net/http"

	"github.com/academy-gateway/academy-gateway/credential"
	"github.com/academy-gateway/academy-gateway/httperr"
)

// Why a request was refused; logged, never sent.
var (
	errNoCredentials = errors.New("no Authorization header")
	errManyHeaders   = errors.New("more than one Authorization header")
	errNotBearer     = errors.New("the Authorization header is not a Bearer credential")
	errWrongToken    = errors.New("wrong admin token")
)

// requireToken lets a request through only when it carries the admin token as a Bearer
// credential (RFC 6750 §2.1); otherwise it answers 401 with a Bearer challenge.
func (h *Handler) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.checkToken(r.Header.Values("Authorization")); err != nil {
			e := httperr.Wrap(http.StatusUnauthorized, httperr.Unauthorized,
				"This admin API needs the header Authorization: Bearer <admin token>.", err)
			e.Challenge = `Bearer realm="academy-gateway-admin"`
			h.fail(w, r, e)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkToken reports why the Authorization header values do not carry the admin token (compared
// in constant time).
func (h *Handler) checkToken(values []string) error {
	switch len(values) {
	case 0:
		return errNoCredentials
	case 1:
	default:
		return errManyHeaders
	}
	token, ok := credential.Bearer(values[0])
	if !ok {
		return errNotBearer
	}
	if !h.token.Matches(token) {
		return errWrongToken
	}
	return nil
}
