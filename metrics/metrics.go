// Package metrics holds the gateway's Prometheus collectors. The names, types and labels are
// part of the product contract (docs/reference.md §7): dashboards and alert rules in deploy/ depend on them.
// Collectors are created by New on a caller-supplied registry, so tests use fresh registries and
// nothing is registered globally. No label ever carries a user, key, token or raw path.
package metrics

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Outcomes of a proxied request, the values of the `outcome` label.
const (
	OutcomeForwarded         = "forwarded"
	OutcomeInvalidAPIKey     = "invalid_api_key"
	OutcomeNotConnected      = "not_connected"
	OutcomeReauthorization   = "reauthorization_required"
	OutcomeInsufficientScope = "insufficient_scope"
	OutcomeMethodNotAllowed  = "method_not_allowed"
	OutcomeBadRequest        = "bad_request"
	OutcomePayloadTooLarge   = "payload_too_large"
	OutcomeUpstreamError     = "upstream_error"
	OutcomeStoreError        = "store_error"
)

// Outcomes of a forward-auth check (docs/reference.md §4.1) besides the refusal outcomes above.
const (
	OutcomeAllowed   = "allowed"   // the ingress may forward, with the Bearer of the answer
	OutcomeForbidden = "forbidden" // the check lacked the right X-Gateway-Auth
)

// Refresh triggers and results, the values of the `trigger` and `result` labels.
const (
	TriggerProactive = "proactive"
	TriggerReactive  = "reactive"
	TriggerKeepAlive = "keep_alive"

	ResultSuccess      = "success"
	ResultInvalidGrant = "invalid_grant"
	ResultError        = "error"
)

// Metrics is the set of collectors the gateway updates. Every field is non-nil after New.
type Metrics struct {
	// Requests counts proxied requests by method, status code and outcome.
	Requests *prometheus.CounterVec
	// RequestDuration is the time from the first byte read to the last byte written.
	RequestDuration *prometheus.HistogramVec
	// UpstreamDuration is the time until the upstream's response headers arrived.
	UpstreamDuration *prometheus.HistogramVec
	// TokenRefreshes counts refresh attempts by what triggered them and how they ended.
	TokenRefreshes *prometheus.CounterVec
	// TokenRefreshDuration is the duration of refresh calls to the Academy.
	TokenRefreshDuration prometheus.Histogram
	// RefreshLockWait is how long a request waited for another refresher (in this or another replica).
	RefreshLockWait prometheus.Histogram
	// Connections is the number of stored connections by status: read from shared counters at
	// every scrape once SetConnectionsSource was called, and recounted by the background round.
	Connections *prometheus.GaugeVec
	// StoreOperations counts token-store operations by operation and result (ok, error).
	StoreOperations *prometheus.CounterVec
	// CacheLookups counts in-process cache lookups on the request path by result (hit, miss).
	CacheLookups *prometheus.CounterVec
	// ForwardAuthRequests counts forward-auth checks by the checked method (X-Forwarded-Method),
	// status code and outcome.
	ForwardAuthRequests *prometheus.CounterVec
	// WebhookDeliveries counts webhook delivery attempts by event type and result (success,
	// retry, failed).
	WebhookDeliveries *prometheus.CounterVec

	webhookPending *pendingGauge
	connections    *connectionsCollector
}

// latencyBuckets span sub-millisecond gateway overhead up to the default 30 s upstream timeout.
var latencyBuckets = []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// New creates the collectors and registers them, the Go and process collectors and
// academy_gateway_build_info on reg. It panics if a name is already registered, which is a
// programming error caught by every test that builds a gateway.
func New(reg prometheus.Registerer, version string) *Metrics {
	opts := func(name, help string) prometheus.HistogramOpts {
		return prometheus.HistogramOpts{
			Name:                            name,
			Help:                            help,
			Buckets:                         latencyBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}
	}
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "academy_gateway_requests_total",
			Help: "Requests handled by the proxy listener, by method, status code and outcome.",
		}, []string{"method", "code", "outcome"}),
		RequestDuration: prometheus.NewHistogramVec(opts("academy_gateway_request_duration_seconds",
			"Time to serve a proxied request, including the upstream."), []string{"method", "outcome"}),
		UpstreamDuration: prometheus.NewHistogramVec(opts("academy_gateway_upstream_duration_seconds",
			"Time until the upstream answered with response headers."), []string{"method", "code"}),
		TokenRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "academy_gateway_token_refreshes_total",
			Help: "OAuth2 token refreshes against the Academy, by trigger and result.",
		}, []string{"trigger", "result"}),
		TokenRefreshDuration: prometheus.NewHistogram(opts("academy_gateway_token_refresh_duration_seconds",
			"Duration of refresh calls to the Academy.")),
		RefreshLockWait: prometheus.NewHistogram(opts("academy_gateway_token_refresh_lock_wait_seconds",
			"Time a request waited for a refresh run by another goroutine or replica.")),
		Connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "academy_gateway_connections",
			Help: "Stored user connections by status.",
		}, []string{"status"}),
		StoreOperations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "academy_gateway_token_store_operations_total",
			Help: "Token-store (Redis) operations by operation and result.",
		}, []string{"op", "result"}),
		CacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "academy_gateway_token_cache_lookups_total",
			Help: "In-process cache lookups of keys and connections on the request path.",
		}, []string{"result"}),
		ForwardAuthRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "academy_gateway_forward_auth_requests_total",
			Help: "Forward-auth checks answered on the auth listener, by checked method, status code and outcome.",
		}, []string{"method", "code", "outcome"}),
		WebhookDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "academy_gateway_webhook_deliveries_total",
			Help: "Webhook delivery attempts by event type and result (success, retry, failed).",
		}, []string{"event", "result"}),
		webhookPending: &pendingGauge{desc: prometheus.NewDesc("academy_gateway_webhook_pending",
			"Webhook events recorded and not yet delivered, all replicas together.", nil, nil)},
	}
	m.connections = &connectionsCollector{vec: m.Connections}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "academy_gateway_build_info",
		Help: "Always 1; labels carry the gateway's version and Go version.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)

	reg.MustRegister(m.Requests, m.RequestDuration, m.UpstreamDuration, m.TokenRefreshes,
		m.TokenRefreshDuration, m.RefreshLockWait, m.connections, m.StoreOperations,
		m.CacheLookups, m.ForwardAuthRequests, m.WebhookDeliveries, m.webhookPending, buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Series exist from the start, so rate() and increase() count the first event after a restart.
	for _, s := range []string{"active", "reauth_required"} {
		m.Connections.WithLabelValues(s)
	}
	for _, t := range []string{TriggerProactive, TriggerReactive, TriggerKeepAlive} {
		for _, r := range []string{ResultSuccess, ResultInvalidGrant, ResultError} {
			m.TokenRefreshes.WithLabelValues(t, r)
		}
	}
	m.CacheLookups.WithLabelValues("hit")
	m.CacheLookups.WithLabelValues("miss")
	return m
}
