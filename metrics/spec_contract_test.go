package metrics_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/academy-gateway/academy-gateway/internal/metricstest"
	"github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/academy-gateway/academy-gateway/metrics"
)

// contractMetric is one row of a metrics table: its type and its label names, sorted.
type contractMetric struct {
	Type   string
	Labels []string
}

// specMetrics is the metrics table of the product specification (SPEC.md §7), which dashboards
// and alerts depend on. The golden files can be rewritten with -update; this table cannot, so a
// renamed metric or label fails here whatever the goldens say.
var specMetrics = map[string]contractMetric{
	"academy_gateway_requests_total":                 {"counter", []string{"code", "method", "outcome"}},
	"academy_gateway_request_duration_seconds":       {"histogram", []string{"method", "outcome"}},
	"academy_gateway_upstream_duration_seconds":      {"histogram", []string{"code", "method"}},
	"academy_gateway_token_refreshes_total":          {"counter", []string{"result", "trigger"}},
	"academy_gateway_token_refresh_duration_seconds": {"histogram", nil},
	"academy_gateway_connections":                    {"gauge", []string{"status"}},
	"academy_gateway_token_store_operations_total":   {"counter", []string{"op", "result"}},
	"academy_gateway_token_cache_lookups_total":      {"counter", []string{"result"}},
	"academy_gateway_build_info":                     {"gauge", []string{"goversion", "version"}},
	"academy_gateway_forward_auth_requests_total":    {"counter", []string{"code", "method", "outcome"}},
	"academy_gateway_webhook_deliveries_total":       {"counter", []string{"event", "result"}},
	"academy_gateway_webhook_pending":                {"gauge", nil},
}

// registered gathers every academy_gateway_* metric New registers, with one series per vector.
func registered(t *testing.T) map[string]contractMetric {
	t.Helper()
	reg := prometheus.NewRegistry()
	metricstest.TouchVectors(t, metrics.New(reg, "v-test"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]contractMetric{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "academy_gateway_") {
			continue
		}
		var labels []string
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !slices.Contains(labels, lp.GetName()) {
					labels = append(labels, lp.GetName())
				}
			}
		}
		slices.Sort(labels)
		got[mf.GetName()] = contractMetric{strings.ToLower(dto.MetricType_name[int32(mf.GetType())]), labels}
	}
	return got
}

// TestSpecMetrics: every metric of SPEC.md §7 is registered with its type and exactly its label
// names; metrics beyond the specification are additions the reference documents (below).
func TestSpecMetrics(t *testing.T) {
	got := registered(t)
	for name, want := range specMetrics {
		if diff := cmp.Diff(want, got[name]); diff != "" {
			t.Errorf("%s (-spec +registered):\n%s", name, diff)
		}
	}
}

// TestSpecOutcomes: the outcome label values of SPEC.md §7 are the package's constants.
func TestSpecOutcomes(t *testing.T) {
	proxy := []string{metrics.OutcomeForwarded, metrics.OutcomeInvalidAPIKey, metrics.OutcomeNotConnected,
		metrics.OutcomeReauthorization, metrics.OutcomeInsufficientScope, metrics.OutcomeMethodNotAllowed,
		metrics.OutcomeBadRequest, metrics.OutcomePayloadTooLarge, metrics.OutcomeUpstreamError, metrics.OutcomeStoreError}
	want := []string{"forwarded", "invalid_api_key", "not_connected", "reauthorization_required", "insufficient_scope",
		"method_not_allowed", "bad_request", "payload_too_large", "upstream_error", "store_error"}
	if diff := cmp.Diff(want, proxy); diff != "" {
		t.Errorf("requests_total outcomes (-spec +constants):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"allowed", "forbidden"}, []string{metrics.OutcomeAllowed, metrics.OutcomeForbidden}); diff != "" {
		t.Errorf("forward_auth_requests_total outcomes (-spec +constants):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"proactive", "reactive", "keep_alive", "success", "invalid_grant", "error"},
		[]string{metrics.TriggerProactive, metrics.TriggerReactive, metrics.TriggerKeepAlive,
			metrics.ResultSuccess, metrics.ResultInvalidGrant, metrics.ResultError}); diff != "" {
		t.Errorf("token_refreshes_total triggers and results (-spec +constants):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"success", "retry", "failed"},
		[]string{metrics.WebhookSuccess, metrics.WebhookRetry, metrics.WebhookFailed}); diff != "" {
		t.Errorf("webhook_deliveries_total results (-spec +constants):\n%s", diff)
	}
}

var (
	metricRow   = regexp.MustCompile("^\\| `(academy_gateway_[a-z_]+)` \\| ([a-z]+) \\| (.*) \\|$")
	parenthesis = regexp.MustCompile(`\([^)]*\)`)
	backticked  = regexp.MustCompile("`([a-z_]+)`")
)

// referenceMetrics reads the metrics table of docs/reference.md §7. A labels cell names the labels
// in backticks; their values follow a colon or stand in parentheses; "none" is no label.
func referenceMetrics(t *testing.T) map[string]contractMetric {
	t.Helper()
	section := testutil.ReferenceSection(t, "7. Metrics")
	rows := map[string]contractMetric{}
	for line := range strings.SplitSeq(section, "\n") {
		m := metricRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		cell := parenthesis.ReplaceAllString(m[3], "")
		cell, _, _ = strings.Cut(cell, ":")
		var labels []string
		for _, l := range backticked.FindAllStringSubmatch(cell, -1) {
			labels = append(labels, l[1])
		}
		slices.Sort(labels)
		rows[m[1]] = contractMetric{m[2], labels}
	}
	return rows
}

// TestReferenceMetrics: docs/reference.md §7 lists exactly the registered metrics, each with its
// type and label names, and keeps every row of the specification.
func TestReferenceMetrics(t *testing.T) {
	doc := referenceMetrics(t)
	if diff := cmp.Diff(registered(t), doc); diff != "" {
		t.Errorf("docs/reference.md §7 vs registered metrics (-registered +documented):\n%s", diff)
	}
	for name, want := range specMetrics {
		if diff := cmp.Diff(want, doc[name]); diff != "" {
			t.Errorf("docs/reference.md §7 %s (-spec +documented):\n%s", name, diff)
		}
	}
}
