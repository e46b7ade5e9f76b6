// Package httperr is the one error vocabulary of every HTTP surface the gateway owns: the proxy
// listener, forward-auth, onboarding pages and the admin API. A handler returns an *Error (or an
// error its package maps to one); Write sends the JSON body of docs/reference.md §4 step 6 with the headers the
// code calls for. The message is safe for the caller; the wrapped cause goes only to the log.
package httperr

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// Code is the machine-readable error code in a JSON error body.
type Code string

// The codes of docs/reference.md §4 step 6 (proxy and forward-auth), §4.1 and §5 (admin API).
const (
	InvalidAPIKey           Code = "invalid_api_key"
	NotConnected            Code = "not_connected"
	ReauthorizationRequired Code = "reauthorization_required"
	InsufficientScope       Code = "insufficient_scope"
	MethodNotAllowed        Code = "method_not_allowed"
	BadRequest              Code = "bad_request"
	PayloadTooLarge         Code = "payload_too_large"
	UpstreamUnavailable     Code = "upstream_unavailable"
	UpstreamTimeout         Code = "upstream_timeout"
	TokenStoreUnavailable   Code = "token_store_unavailable"
	Forbidden               Code = "forbidden" // forward-auth: missing X-Gateway-Auth
	Unauthorized            Code = "unauthorized"
	NotFound                Code = "not_found"
	Conflict                Code = "conflict"
	Internal                Code = "internal"
	ClientClosed            Code = "client_closed" // logged only: the caller went away
)

// StatusClientClosed is logged (never sent) when the caller went away first (nginx's 499).
const StatusClientClosed = 499

// Error is a failure with the status, code and safe message the caller sees.
type Error struct {
	Status  int
	Code    Code
	Message string
	// Err is the cause, for the log only; nil when there is none.
	Err error
	// Scope names the missing scope of an InsufficientScope error (WWW-Authenticate).
	Scope string
	// Allow lists the methods of the path for a 405; empty: Allow is not sent.
	Allow string
	// Challenge is the WWW-Authenticate header of a 401; empty: none is sent.
	Challenge string
	// RetryAfter is the Retry-After header in seconds; zero: 1 for 502, 503 and 504, else none.
	RetryAfter int
}

// New returns an Error without a cause.
func New(status int, code Code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

// Wrap returns an Error whose cause is err.
func Wrap(status int, code Code, msg string, err error) *Error {
	return &Error{Status: status, Code: code, Message: msg, Err: err}
}

func (e *Error) Error() string {
	if e.Err != nil {
		return string(e.Code) + ": " + e.Message + ": " + e.Err.Error()
	}
	return string(e.Code) + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Body is the JSON error body every gateway surface sends.
type Body struct {
	Error Detail `json:"error"`
}

// Detail is the inside of Body. RequestID is empty on surfaces without request ids (admin API).
type Detail struct {
	Code      Code   `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
}

// SetHeaders sets the headers e's code calls for on h: never cached, WWW-Authenticate for 401 and
// 403, Allow for 405, Retry-After for passing failures.
func (e *Error) SetHeaders(h http.Header) {
	h.Set("Cache-Control", "no-store")
	switch {
	case e.Code == InsufficientScope:
		h.Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+e.Scope+`"`)
	case e.Challenge != "":
		h.Set("WWW-Authenticate", e.Challenge)
	}
	if e.Allow != "" {
		h.Set("Allow", e.Allow)
	}
	switch {
	case e.RetryAfter > 0:
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	case e.Status == http.StatusBadGateway || e.Status == http.StatusServiceUnavailable || e.Status == http.StatusGatewayTimeout:
		h.Set("Retry-After", "1")
	}
}

// Write sends e as a JSON error. Nothing is sent for StatusClientClosed: nobody is listening.
func Write(w http.ResponseWriter, e *Error, requestID string) {
	if e.Status == StatusClientClosed {
		return
	}
	h := w.Header()
	e.SetHeaders(h)
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(Body{Detail{Code: e.Code, Message: e.Message, RequestID: requestID}})
}

// JSON is the pre-encoded body of a Write with no request id, for answers written where no
// ResponseWriter exists (a raw connection before a request was parsed).
func JSON(code Code, msg string) string {
	b, _ := json.Marshal(Body{Detail{Code: code, Message: msg}})
	return strings.TrimSpace(string(b))
}
