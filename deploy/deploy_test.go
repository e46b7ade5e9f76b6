package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"go.yaml.in/yaml/v3"

	"github.com/academy-gateway/academy-gateway/internal/metricstest"
	"github.com/academy-gateway/academy-gateway/metrics"
)

// Paths relative to this package's directory, where go test runs.
const (
	dashboardFile  = "grafana/academy-gateway.json"
	alertsFile     = "prometheus/alerts.yml"
	alertTestsFile = "prometheus/alerts_test.yml"
	prometheusFile = "prometheus/prometheus.yml"
	runbookFile    = "../docs/operations.md"
)

// jobSelector is what every alert expression must select on; the dashboard uses $job instead.
const jobSelector = `job="academy-gateway"`

// gatewayMetric finds the gateway's metric names in PromQL and prose.
var gatewayMetric = regexp.MustCompile(`academy_gateway_[a-z0-9_]+`)

// registered returns the metric families a gateway registers, name → type, from a fresh
// registry. Vectors appear in a gather only once they have a child, so every vector field of
// metrics.Metrics gets one first (see touchVectors).
func registered(t *testing.T) (*prometheus.Registry, map[string]dto.MetricType) {
	t.Helper()
	reg := prometheus.NewRegistry()
	metricstest.TouchVectors(t, metrics.New(reg, "test"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	types := map[string]dto.MetricType{}
	for _, mf := range mfs {
		types[mf.GetName()] = mf.GetType()
	}
	return reg, types
}

// unknownMetrics returns the gateway metric names in s that the gateway does not register. A
// histogram's series (_bucket, _sum, _count) count as its name.
func unknownMetrics(s string, types map[string]dto.MetricType) []string {
	var unknown []string
	for _, name := range gatewayMetric.FindAllString(s, -1) {
		if !knownMetric(name, types) && !slices.Contains(unknown, name) {
			unknown = append(unknown, name)
		}
	}
	return unknown
}

func knownMetric(name string, types map[string]dto.MetricType) bool {
	if _, ok := types[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch types[base] {
		case dto.MetricType_HISTOGRAM:
			return true
		case dto.MetricType_SUMMARY:
			return suffix != "_bucket"
		}
	}
	return false
}

// baseName strips a histogram series suffix from a registered name.
func baseName(name string, types map[string]dto.MetricType) string {
	if _, ok := types[name]; ok {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if _, ok := types[base]; ok {
				return base
			}
		}
	}
	return name
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboard struct {
	SchemaVersion int     `json:"schemaVersion"`
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int            `json:"id"`
	Title      string         `json:"title"`
	Type       string         `json:"type"`
	Datasource *datasourceRef `json:"datasource"`
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"` // a string, or an object with a "query" string
	Datasource *datasourceRef  `json:"datasource"`
}

func (v variable) query() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var q struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &q)
	return q.Query
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("parse %s: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens rows, collapsed or not.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// dashboardExpr is one PromQL expression of the dashboard and where it is.
type dashboardExpr struct{ where, expr string }

func dashboardExprs(d dashboard) []dashboardExpr {
	var out []dashboardExpr
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			out = append(out, dashboardExpr{fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, tg.RefID), tg.Expr})
		}
	}
	return out
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	_, types := registered(t)
	d := loadDashboard(t)
	if d.SchemaVersion < 36 || d.UID == "" || d.Title == "" {
		t.Errorf("schemaVersion %d, uid %q, title %q: want schemaVersion >= 36 and a uid and title", d.SchemaVersion, d.UID, d.Title)
	}

	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if ds := vars["datasource"]; ds.Type != "datasource" || ds.query() != "prometheus" {
		t.Errorf("variable datasource: type %q query %q, want a Prometheus datasource variable", ds.Type, ds.query())
	}
	if job := vars["job"]; job.Type != "query" || !strings.Contains(job.query(), "job") {
		t.Errorf("variable job: type %q query %q, want a query variable over the job label", job.Type, job.query())
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
			t.Errorf("variable %s: datasource %+v, want uid ${datasource}", v.Name, v.Datasource)
		}
		if u := unknownMetrics(v.query(), types); len(u) > 0 {
			t.Errorf("variable %s: query %q names unregistered metrics %v", v.Name, v.query(), u)
		}
	}

	ids := map[int]string{}
	for _, p := range allPanels(d.Panels) {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panel id %d used by %q and %q", p.ID, prev, p.Title)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want uid ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q target %s: datasource %+v, want uid ${datasource}", p.Title, tg.RefID, tg.Datasource)
			}
		}
	}

	used := map[string]bool{}
	for _, e := range dashboardExprs(d) {
		if strings.TrimSpace(e.expr) == "" {
			t.Errorf("%s: empty expr", e.where)
			continue
		}
		if !strings.Contains(e.expr, `job=~"$job"`) {
			t.Errorf("%s: %q does not select job=~\"$job\"", e.where, e.expr)
		}
		if u := unknownMetrics(e.expr, types); len(u) > 0 {
			t.Errorf("%s: %q names metrics the gateway does not register: %v", e.where, e.expr, u)
		}
		for _, name := range gatewayMetric.FindAllString(e.expr, -1) {
			used[baseName(name, types)] = true
		}
	}
	// Every gateway metric has a panel: a metric nobody can see is a metric nobody watches.
	var missing []string
	for name := range types {
		if strings.HasPrefix(name, "academy_gateway_") && !used[name] {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	if diff := cmp.Diff([]string(nil), missing); diff != "" {
		t.Errorf("gateway metrics without a dashboard panel (-want +got):\n%s", diff)
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

func loadAlerts(t *testing.T) []rule {
	t.Helper()
	var f ruleFile
	loadYAML(t, alertsFile, &f)
	var rules []rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

// runbookAnchors returns the GitHub anchors of the Markdown headings in docs/operations.md.
func runbookAnchors(t *testing.T) (map[string]bool, string) {
	t.Helper()
	b, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		title, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if !ok || !strings.HasPrefix(line, "#") {
			continue
		}
		anchors[githubAnchor(strings.TrimSpace(title))] = true
	}
	return anchors, string(b)
}

// githubAnchor is GitHub's heading id: lower case, spaces to hyphens, other punctuation dropped.
func githubAnchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

func TestAlertRules(t *testing.T) {
	t.Parallel()
	_, types := registered(t)
	anchors, _ := runbookAnchors(t)
	rules := loadAlerts(t)

	var names []string
	for _, r := range rules {
		names = append(names, r.Alert)
		t.Run(r.Alert, func(t *testing.T) {
			if r.Alert == "" {
				t.Fatalf("rule %q is not an alert", r.Record)
			}
			if u := unknownMetrics(r.Expr, types); len(u) > 0 {
				t.Errorf("expr names metrics the gateway does not register: %v\n%s", u, r.Expr)
			}
			if !strings.Contains(r.Expr, jobSelector) {
				t.Errorf("expr does not select %s:\n%s", jobSelector, r.Expr)
			}
			if d, err := time.ParseDuration(r.For); err != nil || d <= 0 {
				t.Errorf("for: %q, want a positive duration", r.For)
			}
			if s := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
				t.Errorf("labels.severity %q, want critical, warning or info", s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("annotation %s is missing", a)
				}
			}
			_, anchor, ok := strings.Cut(r.Annotations["runbook_url"], "docs/operations.md#")
			if !ok || !anchors[anchor] {
				t.Errorf("runbook_url %q does not point at a heading of docs/operations.md", r.Annotations["runbook_url"])
			}
			if anchor != strings.ToLower(r.Alert) {
				t.Errorf("runbook_url anchor %q, want the alert's own section #%s", anchor, strings.ToLower(r.Alert))
			}
		})
	}
	for _, want := range []string{
		"AcademyGatewayDown", "AcademyGatewayRefreshFailures", "AcademyGatewayReauthRequired",
		"AcademyGatewayUpstream5xxRatio", "AcademyGatewayTokenStoreErrors",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("alert %s is missing from %s", want, alertsFile)
		}
	}
}

type ruleTests struct {
	RuleFiles          []string `yaml:"rule_files"`
	EvaluationInterval string   `yaml:"evaluation_interval"`
	Tests              []struct {
		Name        string `yaml:"name"`
		Interval    string `yaml:"interval"`
		InputSeries []struct {
			Series string `yaml:"series"`
			Values string `yaml:"values"`
		} `yaml:"input_series"`
		AlertRuleTests []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestAlertTestsCoverEveryAlert checks that alerts_test.yml shows every alert both firing and
// staying silent, on series the gateway can actually produce.
func TestAlertTestsCoverEveryAlert(t *testing.T) {
	t.Parallel()
	_, types := registered(t)
	var rt ruleTests
	loadYAML(t, alertTestsFile, &rt)
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range rt.Tests {
		for _, s := range tc.InputSeries {
			if u := unknownMetrics(s.Series, types); len(u) > 0 {
				t.Errorf("test %q: series %s names metrics the gateway does not register: %v", tc.Name, s.Series, u)
			}
		}
		for _, a := range tc.AlertRuleTests {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for _, r := range loadAlerts(t) {
		if !fires[r.Alert] {
			t.Errorf("%s: no test case in %s where it fires", r.Alert, alertTestsFile)
		}
		if !silent[r.Alert] {
			t.Errorf("%s: no test case in %s where it stays silent", r.Alert, alertTestsFile)
		}
	}
}

// TestRunbook checks that docs/operations.md documents every metric the gateway registers.
func TestRunbook(t *testing.T) {
	t.Parallel()
	_, types := registered(t)
	_, doc := runbookAnchors(t)
	for name := range types {
		if strings.HasPrefix(name, "academy_gateway_") && !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("%s does not document %s", runbookFile, name)
		}
	}
	if u := unknownMetrics(doc, types); len(u) > 0 {
		t.Errorf("%s names metrics the gateway does not register: %v", runbookFile, u)
	}
}

// promtool returns the promtool binary. Without one the test is skipped, unless CI is set:
// there a missing promtool must not pass for tested rules.
func promtool(t *testing.T) string {
	t.Helper()
	return need(t, "promtool", "prometheus")
}

// runPromtool runs promtool in this package's directory with stdin and fails the test with its
// output when it exits non-zero.
func runPromtool(t *testing.T, stdin []byte, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), promtool(t), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestPromtool(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{"check rules", []string{"check", "rules", alertsFile}},
		{"test rules", []string{"test", "rules", alertTestsFile}},
		{"check config", []string{"check", "config", prometheusFile}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runPromtool(t, nil, tc.args...)
		})
	}
}

// TestPromtoolDashboardQueries checks that every dashboard query is valid PromQL, by handing
// them to promtool as recording rules with the dashboard variables filled in.
func TestPromtoolDashboardQueries(t *testing.T) {
	t.Parallel()
	promtool(t)
	fill := strings.NewReplacer("$__rate_interval", "1m", "$job", "academy-gateway", "$instance", ".*")
	type record struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var records []record
	for i, e := range dashboardExprs(loadDashboard(t)) {
		records = append(records, record{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: fill.Replace(e.expr)})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": records}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, nil, "check", "rules", path)
}

// TestPromtoolCheckMetrics checks the gateway's exposition with promtool check metrics (docs/reference.md §7).
func TestPromtoolCheckMetrics(t *testing.T) {
	t.Parallel()
	promtool(t)
	reg, _ := registered(t)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	runPromtool(t, buf.Bytes(), "check", "metrics")
}
