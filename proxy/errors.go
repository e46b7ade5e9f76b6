package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"

	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// Error is a failure with the status, code and safe message the caller sees. Err, the cause,
// goes only to the log.
type Error struct {
	Status  int
	Code    string
	Message string
	Err     error
	// Scope names the missing scope of an insufficient_scope error.
	Scope string
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// statusClientClosed is logged (never sent) when the caller went away first.
const statusClientClosed = 499

// classify maps any error of the request path to the Error the caller sees and the outcome label.
// It is the one place that decides status codes.
func classify(err error) (*Error, string) {
	var e *Error
	if errors.As(err, &e) {
		return e, outcomeOf(e.Code)
	}
	switch {
	case errors.Is(err, tokens.ErrUnknownKey):
		return &Error{Status: 401, Code: "invalid_api_key", Message: "The x-api-key header is missing, repeated or not a valid key.", Err: err}, metrics.OutcomeInvalidAPIKey
	case errors.Is(err, tokens.ErrNotConnected):
		return &Error{Status: 401, Code: "not_connected", Message: "This user has not connected an Academy account yet.", Err: err}, metrics.OutcomeNotConnected
	case errors.Is(err, tokens.ErrReauthRequired):
		return &Error{Status: 401, Code: "reauthorization_required", Message: "The Academy connection expired or was revoked; the user must authorize again.", Err: err}, metrics.OutcomeReauthorization
	case errors.Is(err, tokens.ErrStoreUnavailable), errors.Is(err, tokens.ErrDecrypt):
		return &Error{Status: 503, Code: "token_store_unavailable", Message: "The token store is unavailable; try again shortly.", Err: err}, metrics.OutcomeStoreError
	case errors.Is(err, context.Canceled):
		return &Error{Status: statusClientClosed, Code: "client_closed", Message: "The client closed the request.", Err: err}, metrics.OutcomeUpstreamError
	case isTimeout(err):
		return &Error{Status: 504, Code: "upstream_timeout", Message: "The Academy did not answer in time.", Err: err}, metrics.OutcomeUpstreamError
	default:
		return &Error{Status: 502, Code: "upstream_unavailable", Message: "The Academy could not be reached.", Err: err}, metrics.OutcomeUpstreamError
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func outcomeOf(code string) string {
	switch code {
	case "invalid_api_key":
		return metrics.OutcomeInvalidAPIKey
	case "not_connected":
		return metrics.OutcomeNotConnected
	case "reauthorization_required":
		return metrics.OutcomeReauthorization
	case "insufficient_scope":
		return metrics.OutcomeInsufficientScope
	case "method_not_allowed":
		return metrics.OutcomeMethodNotAllowed
	case "bad_request":
		return metrics.OutcomeBadRequest
	case "token_store_unavailable":
		return metrics.OutcomeStoreError
	}
	return metrics.OutcomeUpstreamError
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// writeError sends e as the JSON error of SPEC §4 step 6.
func writeError(w http.ResponseWriter, e *Error, requestID string) {
	if e.Status == statusClientClosed {
		return // nobody is listening
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	switch e.Code {
	case "insufficient_scope":
		h.Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+e.Scope+`"`)
	case "method_not_allowed":
		h.Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE")
	case "token_store_unavailable":
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(errorBody{errorDetail{Code: e.Code, Message: e.Message, RequestID: requestID}})
}
