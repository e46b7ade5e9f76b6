package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// proactiveTokens is fakeTokens whose proactive refresh (Token) fails with err.
type proactiveTokens struct {
	*fakeTokens
	err error
}

func (p proactiveTokens) Token(context.Context, tokens.Connection) (tokens.Connection, bool, error) {
	return tokens.Connection{}, false, p.err
}

// refreshFailures are refreshes that cannot complete, and what the caller gets for each (SPEC §4
// steps 3 and 5): the same whether the refresh was due before forwarding or called for by an
// upstream 401.
var refreshFailures = []struct {
	name        string
	err         error
	wantStatus  int
	wantCode    string
	wantRetry   string
	wantOutcome string
}{
	{"endpoint down", &tokens.RefreshError{User: "alice", Err: errors.New("connection refused")},
		502, "upstream_unavailable", "1", metrics.OutcomeUpstreamError},
	{"endpoint hangs", &tokens.RefreshError{User: "alice", Err: context.DeadlineExceeded},
		504, "upstream_timeout", "1", metrics.OutcomeUpstreamError},
	{"rate limited", &tokens.RefreshError{User: "alice", RetryAfter: 1500 * time.Millisecond, Err: errors.New("429")},
		502, "upstream_unavailable", "2", metrics.OutcomeUpstreamError},
	{"client credentials refused", &tokens.RefreshError{User: "alice", Err: tokens.ErrClientCredentials},
		502, "upstream_unavailable", "1", metrics.OutcomeUpstreamError},
	{"grant dead", tokens.ErrReauthRequired, 401, "reauthorization_required", "", metrics.OutcomeReauthorization},
	{"store down", tokens.ErrStoreUnavailable, 503, "token_store_unavailable", "1", metrics.OutcomeStoreError},
}

// TestSpecProactiveRefreshFailure: SPEC §4 steps 3 and 5. A refresh needed before forwarding (an
// expired token) that cannot complete for a passing reason is 502 upstream_unavailable, or 504
// upstream_timeout when it timed out, with Retry-After; only a dead grant is 401
// reauthorization_required; Redis down is 503 token_store_unavailable. The Academy sees no
// request, and forward-auth answers the same (§4.1: steps 1 to 3, same codes).
func TestSpecProactiveRefreshFailure(t *testing.T) {
	for _, tt := range refreshFailures {
		t.Run("proxy/"+tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.h = New(proactiveTokens{f.tok, tt.err}, f.h.opts)
			rec := f.do(http.MethodGet, "/api/v1/movies", nil, keyHeader())
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d (%s), want %d", rec.Code, rec.Body, tt.wantStatus)
			}
			assertErrorBody(t, rec, tt.wantCode)
			if got := rec.Header().Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetry)
			}
			if n := f.up.count(); n != 0 {
				t.Errorf("the upstream saw %d requests, want none", n)
			}
			if n := testutil.ToFloat64(f.m.Requests.WithLabelValues("GET", itoa(tt.wantStatus), tt.wantOutcome)); n != 1 {
				t.Errorf("requests_total{GET,%d,%s} = %v, want 1", tt.wantStatus, tt.wantOutcome, n)
			}
		})
		t.Run("forward-auth/"+tt.name, func(t *testing.T) {
			f := newFAFixture(t, nil)
			fa := NewForwardAuth(proactiveTokens{f.tok, tt.err}, f.fa.opts)
			rec := askWith(fa, http.MethodGet, "/api/v1/movies", keyHeader())
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d (%s), want %d", rec.Code, rec.Body, tt.wantStatus)
			}
			assertErrorBody(t, rec, tt.wantCode)
			if got := rec.Header().Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetry)
			}
			if h := rec.Header().Get("Authorization"); strings.HasPrefix(h, "Bearer") {
				t.Errorf("a refusal carries Authorization %q", h)
			}
			if n := testutil.ToFloat64(f.m.ForwardAuthRequests.WithLabelValues("GET", itoa(tt.wantStatus), tt.wantOutcome)); n != 1 {
				t.Errorf("forward_auth_requests_total{GET,%d,%s} = %v, want 1", tt.wantStatus, tt.wantOutcome, n)
			}
		})
	}
}
