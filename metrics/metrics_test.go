package metrics_test

import (
	"context"
	"errors"
	"flag"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/academy-gateway/academy-gateway/internal/metricstest"
	"github.com/academy-gateway/academy-gateway/metrics"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// record applies a fixed sequence of what a gateway does, with fixed durations so that the
// histograms are as deterministic as the counters.
func record(m *metrics.Metrics) {
	requests := []struct {
		method, code, outcome string
		seconds               float64
	}{
		{"GET", "200", metrics.OutcomeForwarded, 0.004},
		{"GET", "200", metrics.OutcomeForwarded, 0.02},
		{"GET", "200", metrics.OutcomeForwarded, 0.3},
		{"GET", "401", metrics.OutcomeInvalidAPIKey, 0.0003},
		{"POST", "502", metrics.OutcomeUpstreamError, 0.05},
		{"DELETE", "503", metrics.OutcomeStoreError, 0.001},
	}
	for _, r := range requests {
		m.Requests.WithLabelValues(r.method, r.code, r.outcome).Inc()
		m.RequestDuration.WithLabelValues(r.method, r.outcome).Observe(r.seconds)
	}
	m.UpstreamDuration.WithLabelValues("GET", "200").Observe(0.003)
	m.UpstreamDuration.WithLabelValues("GET", "200").Observe(0.015)
	m.UpstreamDuration.WithLabelValues("GET", "200").Observe(0.25)
	m.UpstreamDuration.WithLabelValues("POST", "error").Observe(0.045)

	m.TokenRefreshes.WithLabelValues(metrics.TriggerProactive, metrics.ResultSuccess).Inc()
	m.TokenRefreshes.WithLabelValues(metrics.TriggerProactive, metrics.ResultSuccess).Inc()
	m.TokenRefreshes.WithLabelValues(metrics.TriggerReactive, metrics.ResultInvalidGrant).Inc()
	for _, s := range []float64{0.08, 0.12, 0.6} {
		m.TokenRefreshDuration.Observe(s)
	}
	m.RefreshLockWait.Observe(0.0004)
	m.RefreshLockWait.Observe(0.03)

	m.Connections.WithLabelValues("active").Set(5)
	m.Connections.WithLabelValues("reauth_required").Set(1)

	for range 3 {
		m.StoreOperations.WithLabelValues("get_connection", "ok").Inc()
	}
	m.StoreOperations.WithLabelValues("get_key", "ok").Inc()
	m.StoreOperations.WithLabelValues("cas_connection", "ok").Inc()
	m.StoreOperations.WithLabelValues("get_connection", "error").Inc()
	for range 4 {
		m.CacheLookups.WithLabelValues("hit").Inc()
	}
	m.CacheLookups.WithLabelValues("miss").Inc()
	m.CacheLookups.WithLabelValues("miss").Inc()

	for range 2 {
		m.ForwardAuthRequests.WithLabelValues("GET", "200", metrics.OutcomeAllowed).Inc()
	}
	m.ForwardAuthRequests.WithLabelValues("DELETE", "403", metrics.OutcomeInsufficientScope).Inc()
	m.ForwardAuthRequests.WithLabelValues("GET", "403", metrics.OutcomeForbidden).Inc()
	m.WebhookDeliveries.WithLabelValues("connection.connected", metrics.WebhookSuccess).Inc()
	m.WebhookDeliveries.WithLabelValues("connection.reauth_required", metrics.WebhookRetry).Inc()
	m.WebhookDeliveries.WithLabelValues("connection.reauth_required", metrics.WebhookRetry).Inc()
	m.WebhookDeliveries.WithLabelValues("key.revoked", metrics.WebhookFailed).Inc()
	m.SetWebhookPending(func(context.Context) (int64, error) { return 3, nil })
}

// goldens lists which metrics each golden file holds. Every academy_gateway_* metric but
// build_info (whose goversion label depends on the toolchain, see TestBuildInfo) is in one.
var goldens = []struct {
	file    string
	metrics []string
}{
	{"testdata/counters_gauges.golden", []string{
		"academy_gateway_requests_total",
		"academy_gateway_token_refreshes_total",
		"academy_gateway_connections",
		"academy_gateway_token_store_operations_total",
		"academy_gateway_token_cache_lookups_total",
		"academy_gateway_forward_auth_requests_total",
		"academy_gateway_webhook_deliveries_total",
		"academy_gateway_webhook_pending",
	}},
	{"testdata/histograms.golden", []string{
		"academy_gateway_request_duration_seconds",
		"academy_gateway_upstream_duration_seconds",
		"academy_gateway_token_refresh_duration_seconds",
		"academy_gateway_token_refresh_lock_wait_seconds",
	}},
}

func TestGolden(t *testing.T) {
	reg := prometheus.NewRegistry()
	record(metrics.New(reg, "v-test"))

	for _, g := range goldens {
		t.Run(g.file, func(t *testing.T) {
			// GatherAndCompare filters both sides by name, so a metric missing from both would
			// pass unnoticed: make sure each one is there.
			for _, name := range g.metrics {
				if n, err := testutil.GatherAndCount(reg, name); err != nil || n == 0 {
					t.Errorf("%s: %d series gathered (err %v), want some", name, n, err)
				}
			}
			if *update {
				b, err := testutil.GatherAndFormat(reg, expfmt.TypeTextPlain, g.metrics...)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(g.file, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f, err := os.Open(g.file)
			if err != nil {
				t.Fatalf("%v (run go test ./metrics -run TestGolden -update to create it)", err)
			}
			defer f.Close()
			if err := testutil.GatherAndCompare(reg, f, g.metrics...); err != nil {
				t.Errorf("exposition differs from %s (if intended, rerun with -update and review the diff):\n%v", g.file, err)
			}
		})
	}
}

// TestGoldenCoversEveryMetric keeps the golden files in step with metrics.go: a new
// academy_gateway_* metric must be added to one of them.
func TestGoldenCoversEveryMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	metricstest.TouchVectors(t, metrics.New(reg, "v-test"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "academy_gateway_") && mf.GetName() != "academy_gateway_build_info" {
			got = append(got, mf.GetName())
		}
	}
	var want []string
	for _, g := range goldens {
		want = append(want, g.metrics...)
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("registered metrics vs golden files (-golden +registered):\n%s", diff)
	}
}

func TestBuildInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics.New(reg, "v-test")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	type series struct {
		Labels map[string]string
		Value  float64
	}
	var got []series
	for _, mf := range mfs {
		if mf.GetName() != "academy_gateway_build_info" {
			continue
		}
		for _, m := range mf.GetMetric() {
			s := series{Labels: map[string]string{}, Value: m.GetGauge().GetValue()}
			for _, lp := range m.GetLabel() {
				s.Labels[lp.GetName()] = lp.GetValue()
			}
			got = append(got, s)
		}
	}
	want := []series{{Labels: map[string]string{"version": "v-test", "goversion": runtime.Version()}, Value: 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("academy_gateway_build_info (-want +got):\n%s", diff)
	}
}

// TestNewTwicePanics: registering the collectors twice on one registry is a programming error
// that New reports by panicking, while fresh registries never collide (nothing is global).
func TestNewTwicePanics(t *testing.T) {
	tests := []struct {
		name      string
		sameReg   bool
		wantPanic bool
	}{
		{"same registry", true, true},
		{"fresh registries", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			metrics.New(reg, "first")
			if !tc.sameReg {
				reg = prometheus.NewRegistry()
			}
			defer func() {
				if got := recover() != nil; got != tc.wantPanic {
					t.Errorf("second New panicked: %v, want %v", got, tc.wantPanic)
				}
			}()
			metrics.New(reg, "second")
		})
	}
}

// allowedLabels bounds every gateway metric's label names (docs/reference.md §7, STYLE practice 10): none can
// carry a user, key, token or path.
var allowedLabels = []string{"method", "code", "outcome", "trigger", "result", "status", "op", "version", "goversion",
	"event"} // event: a webhook event type, one of config.Events

func TestLabelNamesBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	metricstest.TouchVectors(t, metrics.New(reg, "v-test"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "academy_gateway_") {
			continue
		}
		n++
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !slices.Contains(allowedLabels, lp.GetName()) {
					t.Errorf("%s has label %q, want only %v", mf.GetName(), lp.GetName(), allowedLabels)
				}
			}
		}
	}
	if n < 10 {
		t.Errorf("gathered %d academy_gateway_* metrics, want all 10", n)
	}
}

// TestScrapeTimeSources: academy_gateway_connections and academy_gateway_webhook_pending are read
// from their sources at every scrape; a failing source keeps the last counts of the connections
// gauge and omits the pending gauge rather than report a wrong number.
func TestScrapeTimeSources(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, "v-test")
	if got := testutil.ToFloat64(m.Connections.WithLabelValues("active")); got != 0 {
		t.Fatalf("active before any source = %v", got)
	}
	if n, err := testutil.GatherAndCount(reg, "academy_gateway_webhook_pending"); err != nil || n != 1 {
		t.Errorf("pending without a source (webhooks off): %d series (%v), want one, 0", n, err)
	}
	counts := map[string]int64{"active": 4, "reauth_required": 2}
	var fail error
	m.SetConnectionsSource(func(context.Context) (map[string]int64, error) { return counts, fail })
	m.SetWebhookPending(func(context.Context) (int64, error) { return 7, fail })

	gather := func() map[string]float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			for _, s := range mf.GetMetric() {
				name := mf.GetName()
				for _, lp := range s.GetLabel() {
					name += "/" + lp.GetValue()
				}
				if g := s.GetGauge(); g != nil {
					out[name] = g.GetValue()
				}
			}
		}
		return out
	}
	tests := []struct {
		name string
		set  func()
		want map[string]float64
	}{
		{"sources answer", func() {}, map[string]float64{
			"academy_gateway_connections/active": 4, "academy_gateway_connections/reauth_required": 2, "academy_gateway_webhook_pending": 7}},
		{"the next scrape sees a change", func() { counts = map[string]int64{"active": 5, "reauth_required": 1} }, map[string]float64{
			"academy_gateway_connections/active": 5, "academy_gateway_connections/reauth_required": 1, "academy_gateway_webhook_pending": 7}},
		{"sources fail", func() { counts, fail = nil, errors.New("redis down") }, map[string]float64{
			"academy_gateway_connections/active": 5, "academy_gateway_connections/reauth_required": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.set()
			got := gather()
			for k := range got {
				if !strings.HasPrefix(k, "academy_gateway_connections") && !strings.HasPrefix(k, "academy_gateway_webhook_pending") {
					delete(got, k)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("gauges (-want +got):\n%s", diff)
			}
		})
	}
}
