package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/gorilla/mux"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/academy-gateway/academy-gateway/httperr"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// errDisabled is the logged cause of every answer of a disabled admin API.
var errDisabled = errors.New("admin API disabled: no admin token configured")

func badRequest(msg string, err error) *httperr.Error {
	return httperr.Wrap(http.StatusBadRequest, httperr.BadRequest, msg, err)
}

func notFound(msg string, err error) *httperr.Error {
	return httperr.Wrap(http.StatusNotFound, httperr.NotFound, msg, err)
}

// candidateMethods are the methods a 405's Allow header may list.
var candidateMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions}

// methodNotAllowed answers a known path asked with a method it does not serve, listing the
// methods it does.
func methodNotAllowed(router *mux.Router, r *http.Request) *httperr.Error {
	var allow []string
	for _, m := range candidateMethods {
		probe := r.Clone(r.Context())
		probe.Method = m
		var match mux.RouteMatch
		if router.Match(probe, &match) && match.MatchErr == nil {
			allow = append(allow, m)
		}
	}
	e := httperr.New(http.StatusMethodNotAllowed, httperr.MethodNotAllowed, "This path does not serve "+r.Method+"; see the Allow header.")
	e.Allow = strings.Join(allow, ", ")
	return e
}

// classify maps any error of a handler to the error the caller sees: the admin API's mapping of
// the token layer's sentinels.
func classify(err error) *httperr.Error {
	if e, ok := httperr.As(err); ok {
		return e
	}
	switch {
	case errors.Is(err, tokens.ErrStoreUnavailable):
		return httperr.Wrap(http.StatusServiceUnavailable, httperr.TokenStoreUnavailable,
			"The token store is unavailable; try again shortly.", err)
	case errors.Is(err, tokens.ErrNotConnected):
		return notFound("This user has no connection.", err)
	case errors.Is(err, tokens.ErrNotFound):
		return notFound("No API key has this id.", err)
	case errors.Is(err, tokens.ErrKeyExists):
		return httperr.Wrap(http.StatusConflict, httperr.Conflict, "This API key is already registered.", err)
	case errors.Is(err, tokens.ErrMalformedKey):
		return badRequest(`"key" is not a usable API key: `+tokens.KeyRule+".", err)
	case errors.Is(err, tokens.ErrBadCursor):
		return badRequest(`"cursor" is not one this listing returned; start again without it.`, err)
	case errors.Is(err, context.Canceled):
		return httperr.Wrap(httperr.StatusClientClosed, httperr.ClientClosed, "The client closed the request.", err)
	default:
		return httperr.Wrap(http.StatusInternalServerError, httperr.Internal,
			"The request failed on the gateway; the details are in its log.", err)
	}
}

// handlerFunc is an admin handler: it writes the answer on success and returns the error
// otherwise, leaving status, body and logging to fail.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle adapts f to http.Handler.
func (h *Handler) handle(f handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			h.fail(w, r, err)
		}
	})
}

// fail logs err with its detail and sends the caller the safe JSON form of it.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := classify(err)
	level := zapcore.InfoLevel
	if e.Status >= 500 && e.Status != http.StatusServiceUnavailable {
		level = zapcore.ErrorLevel
	} else if e.Status >= 500 {
		level = zapcore.WarnLevel
	}
	if ce := h.log.Check(level, "admin request failed"); ce != nil {
		ce.Write(zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.Int("status", e.Status), zap.String("code", string(e.Code)), zap.Error(err))
	}
	httperr.Write(w, e, "")
}

// writeJSON sends v as the JSON answer with status. Admin answers carry keys and onboarding
// links, so none is cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// noContent sends 204.
func noContent(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
