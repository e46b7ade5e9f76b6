package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
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
			h.fail(w, r, &httpError{Status: http.StatusUnauthorized, Code: codeUnauthorized,
				Message: "This admin API needs the header Authorization: Bearer <admin token>.", Err: err})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkToken reports why the Authorization header values do not carry the admin token. The
// comparison runs on SHA-256 digests in constant time, so neither the token's bytes nor its
// length show in the timing.
func (h *Handler) checkToken(values []string) error {
	switch len(values) {
	case 0:
		return errNoCredentials
	case 1:
	default:
		return errManyHeaders
	}
	token, ok := bearerToken(values[0])
	if !ok {
		return errNotBearer
	}
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], h.tokenSum[:]) != 1 {
		return errWrongToken
	}
	return nil
}

// bearerToken returns the credential of an Authorization header value of the Bearer scheme.
// The scheme name is case-insensitive (RFC 7235 §2.1); the credential is what follows the
// spaces after it, and must be non-empty and free of spaces.
func bearerToken(header string) (string, bool) {
	scheme, rest, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token := strings.TrimLeft(rest, " ")
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}
