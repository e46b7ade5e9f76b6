package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/academy-gateway/academy-gateway/httperr"
	"github.com/academy-gateway/academy-gateway/scope"

	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// classify maps any error of the request path to the error the caller sees and the outcome
// label. It is the one place that decides the proxy's (and forward-auth's) status codes.
func classify(err error) (*httperr.Error, string) {
	e, ok := asTooLarge(err) // first: a body read error may be wrapped in another *httperr.Error
	if !ok {
		e, ok = httperr.As(err)
	}
	if !ok {
		e = fromTokens(err)
	}
	return e, outcome(e.Code)
}

// fromTokens maps the token layer's sentinel errors and transport failures.
func fromTokens(err error) *httperr.Error {
	switch {
	case errors.Is(err, tokens.ErrUnknownKey):
		return httperr.Wrap(401, httperr.InvalidAPIKey, "The x-api-key header is missing, repeated or not a valid key.", err)
	case errors.Is(err, tokens.ErrNotConnected):
		return httperr.Wrap(401, httperr.NotConnected, "This user has not connected an Academy account yet.", err)
	case errors.Is(err, tokens.ErrReauthRequired), errors.Is(err, tokens.ErrDecrypt):
		// A record no key opens is refused like a dead grant: waiting mends nothing, a new
		// authorization overwrites it (docs/reference.md §6).
		return httperr.Wrap(401, httperr.ReauthorizationRequired, "The Academy connection expired or was revoked; the user must authorize again.", err)
	case errors.Is(err, tokens.ErrRefreshUnavailable):
		return refreshUnavailable(err)
	case errors.Is(err, tokens.ErrStoreUnavailable):
		return httperr.Wrap(503, httperr.TokenStoreUnavailable, "The token store is unavailable; try again shortly.", err)
	case errors.Is(err, context.Canceled):
		return httperr.Wrap(httperr.StatusClientClosed, httperr.ClientClosed, "The client closed the request.", err)
	case isTimeout(err):
		return httperr.Wrap(504, httperr.UpstreamTimeout, "The Academy did not answer in time.", err)
	default:
		return httperr.Wrap(502, httperr.UpstreamUnavailable, "The Academy could not be reached.", err)
	}
}

// refreshUnavailable is the answer to a refresh that failed for a passing reason: 502, or 504 when
// the Academy timed out, with the Academy's own Retry-After when it sent one.
func refreshUnavailable(err error) *httperr.Error {
	e := httperr.Wrap(502, httperr.UpstreamUnavailable, "The Academy could not refresh the access token; try again shortly.", err)
	re, ok := errors.AsType[*tokens.RefreshError](err)
	if ok && re.Timeout() {
		e = httperr.Wrap(504, httperr.UpstreamTimeout, "The Academy did not refresh the access token in time; try again shortly.", err)
	}
	if ok && re.RetryAfter > 0 {
		e.RetryAfter = int((re.RetryAfter + time.Second - 1) / time.Second)
	}
	return e
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// outcome is the metrics outcome of a code: the code itself for refusals, with upstream and
// store failures folded into their two outcomes (docs/reference.md §7).
func outcome(c httperr.Code) string {
	switch c {
	case httperr.UpstreamUnavailable, httperr.UpstreamTimeout, httperr.ClientClosed:
		return metrics.OutcomeUpstreamError
	case httperr.TokenStoreUnavailable:
		return metrics.OutcomeStoreError
	}
	return string(c)
}

func badRequest(msg string, err error) *httperr.Error {
	return httperr.Wrap(400, httperr.BadRequest, msg, err)
}

func methodNotAllowed(method string) *httperr.Error {
	e := httperr.New(405, httperr.MethodNotAllowed, "The method "+method+" is not forwarded; use "+scope.Methods+".")
	e.Allow = scope.Methods
	return e
}

func insufficient(s scope.Scope, whose string) *httperr.Error {
	e := httperr.New(403, httperr.InsufficientScope, fmt.Sprintf("The %s scope is not granted to %s.", s, whose))
	e.Scope = string(s)
	return e
}
