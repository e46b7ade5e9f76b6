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

	"github.com/academy-gateway/academy-gateway/tokens"
)

// httpError is a failure with the status, code and safe message the caller sees. Err, the
// cause, goes only to the log.
type httpError struct {
	Status  int
	Code    string
	Message string
	Err     error
	// Allow lists the methods of the path, for a 405.
	Allow []string
}

func (e *httpError) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *httpError) Unwrap() error { return e.Err }

// Error codes of the admin API (docs/admin-api.yaml, ErrorCode).
const (
	codeUnauthorized          = "unauthorized"
	codeBadRequest            = "bad_request"
	codeNotFound              = "not_found"
	codeConflict              = "conflict"
	codeMethodNotAllowed      = "method_not_allowed"
	codeTokenStoreUnavailable = "token_store_unavailable"
	codeInternal              = "internal"
)

// statusClientClosed is logged (never sent) when the caller went away first.
const statusClientClosed = 499

// errDisabled is the logged cause of every answer of a disabled admin API.
var errDisabled = errors.New("admin API disabled: no admin token configured")

func badRequest(msg string, err error) *httpError {
	return &httpError{Status: http.StatusBadRequest, Code: codeBadRequest, Message: msg, Err: err}
}

func notFound(msg string, err error) *httpError {
	return &httpError{Status: http.StatusNotFound, Code: codeNotFound, Message: msg, Err: err}
}

// candidateMethods are the methods a 405's Allow header may list.
var candidateMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions}

// methodNotAllowed answers a known path asked with a method it does not serve, listing the
// methods it does.
func methodNotAllowed(router *mux.Router, r *http.Request) *httpError {
	var allow []string
	for _, m := range candidateMethods {
		probe := r.Clone(r.Context())
		probe.Method = m
		var match mux.RouteMatch
		if router.Match(probe, &match) && match.MatchErr == nil {
			allow = append(allow, m)
		}
	}
	return &httpError{Status: http.StatusMethodNotAllowed, Code: codeMethodNotAllowed, Allow: allow,
		Message: "This path does not serve " + r.Method + "; see the Allow header."}
}

// classify maps any error of a handler to the httpError the caller sees. It is the one place that
// decides status codes.
func classify(err error) *httpError {
	var e *httpError
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, tokens.ErrStoreUnavailable):
		return &httpError{Status: http.StatusServiceUnavailable, Code: codeTokenStoreUnavailable,
			Message: "The token store is unavailable; try again shortly.", Err: err}
	case errors.Is(err, tokens.ErrNotConnected):
		return notFound("This user has no connection.", err)
	case errors.Is(err, tokens.ErrNotFound):
		return notFound("No API key has this id.", err)
	case errors.Is(err, tokens.ErrKeyExists):
		return &httpError{Status: http.StatusConflict, Code: codeConflict, Message: "This API key is already registered.", Err: err}
	case errors.Is(err, tokens.ErrMalformedKey):
		return badRequest(`"key" is not a usable API key: empty, over 512 bytes, or an agw_ key whose checksum does not match.`, err)
	case errors.Is(err, context.Canceled):
		return &httpError{Status: statusClientClosed, Code: "client_closed", Message: "The client closed the request.", Err: err}
	default:
		return &httpError{Status: http.StatusInternalServerError, Code: codeInternal,
			Message: "The request failed on the gateway; the details are in its log.", Err: err}
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
			zap.Int("status", e.Status), zap.String("code", e.Code), zap.Error(err))
	}
	if e.Status == statusClientClosed {
		return // nobody is listening
	}
	hdr := w.Header()
	switch e.Code {
	case codeUnauthorized:
		hdr.Set("WWW-Authenticate", `Bearer realm="academy-gateway-admin"`)
	case codeMethodNotAllowed:
		hdr.Set("Allow", strings.Join(e.Allow, ", "))
	case codeTokenStoreUnavailable:
		hdr.Set("Retry-After", "1")
	}
	writeJSON(w, e.Status, errorBody{errorDetail{Code: e.Code, Message: e.Message}})
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
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
