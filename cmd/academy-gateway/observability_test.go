package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// Observability end to end (docs/reference.md §5, §7, §8): what the ops listener exports while real traffic
// flows through a replica backed by a real redis-server and the Academy simulator, checked by
// parsing the exposition, by promtool and by a real Prometheus scraping it; and that no secret
// ever shows in logs, metrics, error bodies, admin answers or check-config.

// obsMovieID is one of the simulator's default movies (see printDemo).
const obsMovieID = "0c841ade9610"

// obsNeedTool returns the path of an external binary a test needs. Without it the test is
// skipped, unless CI is set: CI must have it (.ci/run installs it).
func obsNeedTool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found but CI is set: install the Debian package %s (%v)", name, debianPackage, err)
		}
		t.Skipf("%s not installed (apt-get install %s); skipping", name, debianPackage)
	}
	return path
}

// obsFetch sends one request and returns the response (body closed) and its body.
func obsFetch(t *testing.T, method, u string, header http.Header, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return resp, string(b)
}

// obsScrape returns the body of GET <ops>/metrics.
func obsScrape(t *testing.T, r *replica) string {
	t.Helper()
	resp, body := obsFetch(t, http.MethodGet, r.opsURL+"/metrics", nil, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s", resp.StatusCode, body)
	}
	return body
}

// obsFamilies parses a text exposition.
func obsFamilies(t *testing.T, body string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return mfs
}

// obsSum adds up the series of family name whose labels include every pair of want: the values
// of counters and gauges, the sample counts of histograms. n is how many series matched.
func obsSum(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (sum float64, n int) {
	mf, ok := mfs[name]
	if !ok {
		return 0, 0
	}
series:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue series
			}
		}
		n++
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			sum += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			sum += m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			sum += float64(m.GetHistogram().GetSampleCount())
		default:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, n
}

// obsRequest is one request of a traffic table and the answer expected of the gateway.
type obsRequest struct {
	method, path string
	key          string // x-api-key; empty: none
	body         string
	status       int
	code         string // the gateway's error code; empty: forwarded
}

// obsSend sends one table row through r and checks status and error code; it returns the
// response and body.
func obsSend(t *testing.T, r *replica, q obsRequest) (*http.Response, string) {
	t.Helper()
	h := http.Header{}
	if q.key != "" {
		h.Set("X-Api-Key", q.key)
	}
	if q.body != "" {
		h.Set("Content-Type", "application/json")
	}
	resp, body := obsFetch(t, q.method, r.proxyURL+q.path, h, q.body)
	if resp.StatusCode != q.status {
		t.Fatalf("%s %s = %d %s, want %d", q.method, q.path, resp.StatusCode, body, q.status)
	}
	if q.code != "" {
		if got := errorCode(t, body); got != q.code {
			t.Fatalf("%s %s: error code %q, want %q (body %s)", q.method, q.path, got, q.code, body)
		}
	}
	return resp, body
}

// obsKnownSequence sends the traffic whose metrics TestMetricsMoveForKnownSequence knows
// exactly: 3 forwarded GETs, 2 unknown callers, a refused DELETE, a TRACE, a path with an empty
// segment, and a GET the Academy first refuses (reactive refresh, then 200). key is a
// read,write key of a user connected as academyID. It returns the connections before and after
// the refresh.
func obsKnownSequence(t *testing.T, s *stack, r *replica, user, key, academyID string) (before, after tokens.Connection) {
	t.Helper()
	before = mustConnection(t, r, user)
	for _, q := range []obsRequest{
		{method: "GET", path: "/api/v1/movies", key: key, status: 200},
		{method: "GET", path: "/api/v1/movies", key: key, status: 200},
		{method: "GET", path: "/api/v1/movies", key: key, status: 200},
		{method: "GET", path: "/api/v1/movies", status: 401, code: "invalid_api_key"},
		{method: "GET", path: "/api/v1/movies", key: tokens.NewAPIKey(), status: 401, code: "invalid_api_key"},
		{method: "DELETE", path: "/api/v1/movies/" + obsMovieID, key: key, status: 403, code: "insufficient_scope"},
		{method: "TRACE", path: "/api/v1/movies", key: key, status: 405, code: "method_not_allowed"},
		{method: "GET", path: "/api/v1//movies", key: key, status: 400, code: "bad_request"},
	} {
		obsSend(t, r, q)
	}
	s.sim.ExpireAccessTokens(academyID)
	obsSend(t, r, obsRequest{method: "GET", path: "/api/v1/movies", key: key, status: 200})
	after = mustConnection(t, r, user)
	if after.AccessToken == before.AccessToken || after.RefreshToken == before.RefreshToken {
		t.Fatalf("the GET after ExpireAccessTokens did not refresh (version %d → %d)", before.Version, after.Version)
	}
	return before, after
}

// TestMetricsMoveForKnownSequence: after a known sequence of requests, every series of docs/reference.md §7
// holds exactly what that sequence implies, the Go and process collectors are there, and no
// label (indeed no byte of the exposition) carries the user, the key or a token.
func TestMetricsMoveForKnownSequence(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	r := s.start(nil)
	john := s.sim.Users()[0]
	key := s.connect(r, "alice", "john", "read", "write")
	before, after := obsKnownSequence(t, s, r, "alice", key, john.ID)

	body := obsScrape(t, r)
	mfs := obsFamilies(t, body)
	const (
		requests = "academy_gateway_requests_total"
		reqDur   = "academy_gateway_request_duration_seconds"
		upDur    = "academy_gateway_upstream_duration_seconds"
		refresh  = "academy_gateway_token_refreshes_total"
	)
	type L = map[string]string
	exact := []struct {
		name   string
		labels L
		want   float64
	}{
		{requests, L{"method": "GET", "code": "200", "outcome": "forwarded"}, 4},
		{requests, L{"method": "GET", "code": "401", "outcome": "invalid_api_key"}, 2},
		{requests, L{"outcome": "invalid_api_key"}, 2}, // and under no other code
		{requests, L{"method": "DELETE", "code": "403", "outcome": "insufficient_scope"}, 1},
		{requests, L{"method": "TRACE", "code": "405", "outcome": "method_not_allowed"}, 1},
		{requests, L{"method": "GET", "code": "400", "outcome": "bad_request"}, 1},
		{requests, nil, 9}, // nothing else was counted
		{reqDur, L{"method": "GET", "outcome": "forwarded"}, 4},
		{reqDur, L{"method": "GET", "outcome": "invalid_api_key"}, 2},
		{reqDur, L{"method": "DELETE", "outcome": "insufficient_scope"}, 1},
		{reqDur, L{"method": "TRACE", "outcome": "method_not_allowed"}, 1},
		{reqDur, L{"method": "GET", "outcome": "bad_request"}, 1},
		{reqDur, nil, 9},
		{upDur, L{"method": "GET", "code": "200"}, 4},
		// The refused token is sent once: the Academy's 401, then the retry's 200.
		{upDur, L{"method": "GET", "code": "401"}, 1},
		{upDur, nil, 5},
		{refresh, L{"trigger": "reactive", "result": "success"}, 1},
		{refresh, nil, 1},
		{"academy_gateway_build_info", L{"goversion": runtime.Version()}, 1},
		{"academy_gateway_build_info", nil, 1},
	}
	for _, c := range exact {
		got, n := obsSum(mfs, c.name, c.labels)
		if n == 0 || got != c.want {
			t.Errorf("%s%v = %v (%d series), want %v", c.name, c.labels, got, n, c.want)
		}
	}
	positive := []struct {
		name   string
		labels L
	}{
		{"academy_gateway_token_cache_lookups_total", nil},
		{"academy_gateway_token_store_operations_total", L{"op": "get_connection", "result": "ok"}},
		{"academy_gateway_token_refresh_duration_seconds", nil},
		{"go_goroutines", nil},
		{"process_resident_memory_bytes", nil},
	}
	for _, c := range positive {
		if got, n := obsSum(mfs, c.name, c.labels); n == 0 || got <= 0 {
			t.Errorf("%s%v = %v (%d series), want > 0", c.name, c.labels, got, n)
		}
	}

	secrets := map[string]string{
		"user id": "alice", "API key": key,
		"first access token": before.AccessToken, "first refresh token": before.RefreshToken,
		"refreshed access token": after.AccessToken, "refreshed refresh token": after.RefreshToken,
	}
	labels := 0
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				labels++
				for what, secret := range secrets {
					if strings.Contains(lp.GetValue(), secret) {
						t.Errorf("%s has label %s=%q, which holds the %s", name, lp.GetName(), lp.GetValue(), what)
					}
				}
				if strings.Contains(lp.GetValue(), "/api/") {
					t.Errorf("%s has label %s=%q, a raw path", name, lp.GetName(), lp.GetValue())
				}
			}
		}
	}
	if labels < 20 {
		t.Errorf("scanned only %d label values: the exposition looks incomplete", labels)
	}
	for what, secret := range secrets {
		if strings.Contains(body, secret) {
			t.Errorf("/metrics contains the %s", what)
		}
	}
}

// TestPromtoolCheckMetricsLive: `promtool check metrics` accepts the live exposition after real
// traffic (docs/reference.md §7).
func TestPromtoolCheckMetricsLive(t *testing.T) {
	t.Parallel()
	promtool := obsNeedTool(t, "promtool", "prometheus")
	s := newStack(t, time.Minute)
	r := s.start(nil)
	key := s.connect(r, "alice", "john", "read", "write")
	obsKnownSequence(t, s, r, "alice", key, s.sim.Users()[0].ID)
	body := obsScrape(t, r)
	if !strings.Contains(body, "academy_gateway_requests_total{") {
		t.Fatalf("/metrics has no request series after traffic:\n%s", body)
	}

	cmd := exec.CommandContext(t.Context(), promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// obsPrometheus is a running prometheus server.
type obsPrometheus struct {
	url string      // http://127.0.0.1:PORT
	log *syncBuffer // its stdout and stderr
}

// obsStartPrometheus runs prometheus on loopback, scraping target (host:port) every second as
// job academy-gateway, until the test ends. It returns once the server reports ready.
func obsStartPrometheus(t *testing.T, target string) *obsPrometheus {
	t.Helper()
	bin := obsNeedTool(t, "prometheus", "prometheus")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: academy-gateway
    static_configs:
      - targets: [%q]
`, target)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for attempt := range 3 { // the free port may be taken before prometheus binds it
		if p := obsRunPrometheus(t, bin, cfgPath, filepath.Join(dir, "data"+strconv.Itoa(attempt))); p != nil {
			return p
		}
	}
	t.Fatal("prometheus could not bind a free loopback port in 3 attempts")
	return nil
}

// obsRunPrometheus starts prometheus on a free loopback port, stopped when the test ends, and
// waits until it is ready. It returns nil if the port was taken meanwhile.
func obsRunPrometheus(t *testing.T, bin, cfgPath, dataDir string) *obsPrometheus {
	t.Helper()
	addr := freeAddr(t)
	p := &obsPrometheus{url: "http://" + addr, log: &syncBuffer{}}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+dataDir, "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	portTaken := false
	testutil.EventuallyEvery(t, 30*time.Second, 100*time.Millisecond, func() error {
		if resp, err := http.Get(p.url + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			if portTaken = strings.Contains(p.log.String(), "address already in use"); portTaken {
				return nil
			}
			t.Fatalf("prometheus exited (%v); its log:\n%s", waitErr, p.log.String())
		default:
		}
		return fmt.Errorf("prometheus not ready on %s; its log:\n%s", addr, p.log.String())
	})
	if portTaken {
		return nil
	}
	return p
}

// query runs an instant PromQL query and returns the value of its first sample ("" when the
// result is empty) and the raw answer.
func (p *obsPrometheus) query(t *testing.T, q string) (value, raw string) {
	t.Helper()
	resp, body := obsFetch(t, http.MethodGet, p.url+"/api/v1/query?query="+url.QueryEscape(q), nil, "")
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Sprintf("status %d: %s", resp.StatusCode, body)
	}
	var ans struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value []any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &ans); err != nil {
		t.Fatalf("query %s: %v: %s", q, err, body)
	}
	if ans.Status != "success" || len(ans.Data.Result) == 0 || len(ans.Data.Result[0].Value) != 2 {
		return "", body
	}
	v, _ := ans.Data.Result[0].Value[1].(string)
	return v, body
}

// until polls q every 200 ms until its value is want, and fails with the last answer after
// 30 s.
func (p *obsPrometheus) until(t *testing.T, q, want string) {
	t.Helper()
	testutil.EventuallyEvery(t, 30*time.Second, 200*time.Millisecond, func() error {
		got, raw := p.query(t, q)
		if got == want {
			return nil
		}
		return fmt.Errorf("%s: still %q, want %q; last answer: %s\nprometheus log:\n%s", q, got, want, raw, p.log.String())
	})
}

// TestPrometheusScrapesGateway: a real Prometheus scrapes the ops listener; the target is up
// and the forwarded requests sent through the gateway show up in PromQL.
func TestPrometheusScrapesGateway(t *testing.T) {
	t.Parallel()
	obsNeedTool(t, "prometheus", "prometheus")
	s := newStack(t, time.Minute)
	r := s.start(nil)
	key := s.connect(r, "alice", "john", "read")
	prom := obsStartPrometheus(t, strings.TrimPrefix(r.opsURL, "http://"))

	const n = 5
	for range n {
		obsSend(t, r, obsRequest{method: "GET", path: "/api/v1/movies", key: key, status: 200})
	}
	// Prometheus hands new targets to its scrape loop at most every 5 s, so the first scrape
	// comes about 5 s after start; the 30 s deadline leaves room for a slow machine.
	began := time.Now()
	prom.until(t, `sum(academy_gateway_requests_total{outcome="forwarded"})`, strconv.Itoa(n))
	t.Logf("Prometheus showed %d forwarded requests %v after the last one", n, time.Since(began).Round(time.Millisecond))
	prom.until(t, `up{job="academy-gateway"}`, "1")
}

// obsText is one thing the caller or the operator gets to see, with the secrets it may carry.
type obsText struct {
	where string
	text  string
	allow []string // names of secrets this text legitimately carries
}

// TestRedaction: docs/reference.md §8. Traffic touches every path (forwarded requests, every proxy error,
// onboarding success and failures, refreshes, the admin API with and without the admin token);
// then no secret (client secret, admin token, encryption key, API keys, access and refresh
// tokens, onboarding tickets, states and codes) shows in the logs, the metrics, any error body,
// any admin answer (except the one created key and the one issued link in their own answers),
// or the output of check-config; nor in a webhook delivery (headers and body) or an audit line.
func TestRedaction(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	adminToken := "agw-admin-" + rand.Text()
	s.cfg.Security.AdminToken = adminToken
	s.cfg.Log.Level = "debug"
	hooks := newHookReceiver(t)
	withWebhooks(s, hooks)
	r := s.startWith(nil, fastHooks)
	john, jane := s.sim.Users()[0], s.sim.Users()[1]

	secrets := map[string]string{} // name → value
	add := func(name, value string) {
		t.Helper()
		if value == "" {
			t.Fatalf("secret %q is empty: the test lost track of it", name)
		}
		secrets[name] = value
	}
	var texts []obsText
	see := func(where, text string, allow ...string) { texts = append(texts, obsText{where, text, allow}) }

	add("client secret", s.cfg.OAuth.ClientSecret)
	add("admin token", adminToken)
	add("webhook secret", hooks.secret)
	add("webhook signing key", strings.TrimPrefix(hooks.secret, "whsec_"))
	for i, k := range s.cfg.Security.EncryptionKeys {
		add("encryption key "+strconv.Itoa(i), k)
	}

	// Onboarding by hand, so the state and the code are seen on their way through.
	ticketOf := func(link string) string {
		t.Helper()
		u, err := url.Parse(link)
		if err != nil {
			t.Fatal(err)
		}
		return u.Query().Get("ticket")
	}
	link := authorizeLink(t, r, "alice")
	add("ticket of alice", ticketOf(link))
	b := newOnboardBrowser(t)
	consent := b.open(s, r, link)
	add("state of alice", consent.Query().Get("state"))
	aliceCallback := b.consent(r, consent, url.Values{"sim_user": {"john"}})
	add("code of alice", aliceCallback.Query().Get("code"))
	resp, page := b.get(aliceCallback.String())
	wantPage(t, resp.StatusCode, page, http.StatusOK, "John Doe")
	see("onboarding success page", page)

	// Onboarding failures: the Academy refuses, the code is refused, the callback is replayed,
	// the ticket is unknown.
	link = authorizeLink(t, r, "bob")
	add("ticket of bob", ticketOf(link))
	b = newOnboardBrowser(t)
	consent = b.open(s, r, link)
	add("state of bob", consent.Query().Get("state"))
	resp, page = b.get(b.consent(r, consent, url.Values{"sim_deny": {"1"}}).String())
	wantPage(t, resp.StatusCode, page, http.StatusBadRequest, "denied")
	see("onboarding page: access denied", page)

	link = authorizeLink(t, r, "carol")
	add("ticket of carol", ticketOf(link))
	b = newOnboardBrowser(t)
	consent = b.open(s, r, link)
	add("state of carol", consent.Query().Get("state"))
	cb := b.consent(r, consent, url.Values{"sim_user": {"jane"}})
	q := cb.Query()
	add("code of carol", q.Get("code"))
	q.Set("code", q.Get("code")+"-tampered") // holds the real code: an echo of it would show
	cb.RawQuery = q.Encode()
	resp, page = b.get(cb.String())
	wantPage(t, resp.StatusCode, page, http.StatusBadRequest, "could not be completed")
	see("onboarding page: code refused", page)
	wantNotConnected(t, r, "carol")

	resp, page = newOnboardBrowser(t).get(aliceCallback.String())
	wantPage(t, resp.StatusCode, page, http.StatusBadRequest, "already used")
	see("onboarding page: callback replayed", page)
	resp, page = newOnboardBrowser(t).get(r.proxyURL + "/oauth/start?ticket=" + url.QueryEscape(secrets["ticket of alice"]))
	wantPage(t, resp.StatusCode, page, http.StatusBadRequest, "already used")
	see("onboarding page: link reopened", page)

	// Keys and tokens.
	issue := func(user string, scopes ...string) string {
		t.Helper()
		_, key, err := r.app.store.IssueKey(t.Context(), user, scopes, "redaction", "")
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	aliceKey := issue("alice", "read", "write")
	add("key of alice", aliceKey)
	nobodyKey := issue("nobody", "read")
	add("key of an unconnected user", nobodyKey)
	unknownKey := tokens.NewAPIKey()
	add("unknown key", unknownKey)
	erinKey := s.connect(r, "erin", "jane", "read")
	add("key of erin", erinKey)
	first := mustConnection(t, r, "alice")
	add("access token of alice", first.AccessToken)
	add("refresh token of alice", first.RefreshToken)
	erin := mustConnection(t, r, "erin")
	add("access token of erin", erin.AccessToken)
	add("refresh token of erin", erin.RefreshToken)

	// Proxy traffic: forwarded requests and every error the gateway answers with.
	for _, q := range []obsRequest{
		{method: "GET", path: "/api/v1/movies", key: aliceKey, status: 200},
		{method: "POST", path: "/api/v1/movies", key: aliceKey, body: `{"name":"Alien"}`, status: 201},
		{method: "GET", path: "/api/v1/movies?access_token=" + aliceKey, key: aliceKey, status: 200},
		{method: "GET", path: "/api/v1/info", key: aliceKey, status: 200},
		{method: "GET", path: "/api/v1/movies", status: 401, code: "invalid_api_key"},
		{method: "GET", path: "/api/v1/movies", key: unknownKey, status: 401, code: "invalid_api_key"},
		{method: "GET", path: "/api/v1/movies", key: aliceKey + "x", status: 401, code: "invalid_api_key"},
		{method: "DELETE", path: "/api/v1/movies/" + obsMovieID, key: aliceKey, status: 403, code: "insufficient_scope"},
		{method: "TRACE", path: "/api/v1/movies", key: aliceKey, status: 405, code: "method_not_allowed"},
		{method: "GET", path: "/api/v1//movies", key: aliceKey, status: 400, code: "bad_request"},
		{method: "GET", path: "/api/v1/movies", key: nobodyKey, status: 401, code: "not_connected"},
	} {
		resp, body := obsSend(t, r, q)
		if q.code != "" {
			see(fmt.Sprintf("%s %s error (%s)", q.method, q.path, q.code), obsHeaderText(resp.Header)+body)
		}
	}
	// A refresh the Academy refuses: erin must re-authorize.
	s.sim.ExpireRefreshTokens(jane.ID)
	s.sim.ExpireAccessTokens(jane.ID)
	resp, body := obsSend(t, r, obsRequest{method: "GET", path: "/api/v1/movies", key: erinKey, status: 401, code: "reauthorization_required"})
	see("reauthorization_required error", obsHeaderText(resp.Header)+body)
	// A forced refresh: alice's tokens rotate.
	s.sim.ExpireAccessTokens(john.ID)
	obsSend(t, r, obsRequest{method: "GET", path: "/api/v1/movies", key: aliceKey, status: 200})
	second := mustConnection(t, r, "alice")
	if second.AccessToken == first.AccessToken || second.RefreshToken == first.RefreshToken {
		t.Fatalf("no refresh happened after ExpireAccessTokens (version %d → %d)", first.Version, second.Version)
	}
	add("refreshed access token of alice", second.AccessToken)
	add("refreshed refresh token of alice", second.RefreshToken)

	// The admin API, with the admin token and without.
	bearer := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }
	good := bearer(adminToken)
	admin := []struct {
		name, method, path string
		header             http.Header
		body               string
		status             int
	}{
		{"list keys", "GET", "/admin/keys", good, "", 200},
		{"list keys of alice", "GET", "/admin/keys?user=alice", good, "", 200},
		{"list connections", "GET", "/admin/connections", good, "", 200},
		{"show connection", "GET", "/admin/connections/alice", good, "", 200},
		{"show erin (reauth)", "GET", "/admin/connections/erin", good, "", 200},
		{"register a taken key", "POST", "/admin/keys", good, `{"user":"alice","key":"` + aliceKey + `"}`, 409},
		{"register a mistyped key", "POST", "/admin/keys", good, `{"user":"alice","key":"` + aliceKey + `x"}`, 400},
		{"truncated JSON with a key", "POST", "/admin/keys", good, `{"user":"alice","key":"` + aliceKey + `"`, 400},
		{"unknown field with a key", "POST", "/admin/keys", good, `{"user":"alice","secret":"` + aliceKey + `"}`, 400},
		{"wrong token", "GET", "/admin/keys", bearer(adminToken + "-wrong"), "", 401},
		{"wrong token, with a body", "POST", "/admin/keys", bearer(adminToken + "-wrong"), `{"user":"alice","key":"` + aliceKey + `"}`, 401},
		{"token as Basic", "GET", "/admin/connections", http.Header{"Authorization": {"Basic " + adminToken}}, "", 401},
		{"two Authorization headers", "GET", "/admin/connections", http.Header{"Authorization": {"Bearer " + adminToken, "Bearer x"}}, "", 401},
		{"no token", "GET", "/admin/connections", nil, "", 401},
		{"no token, authorize", "POST", "/admin/connections/dave/authorize", nil, "", 401},
	}
	for _, c := range admin {
		resp, body := obsFetch(t, c.method, r.opsURL+c.path, c.header, c.body)
		if resp.StatusCode != c.status {
			t.Errorf("admin %s: %s %s = %d %s, want %d", c.name, c.method, c.path, resp.StatusCode, body, c.status)
		}
		see("admin answer: "+c.name, obsHeaderText(resp.Header)+body)
	}
	resp, body = obsFetch(t, "POST", r.opsURL+"/admin/keys", good, `{"user":"alice","scopes":["read"],"name":"made by admin"}`)
	var created struct{ ID, Key string }
	if err := json.Unmarshal([]byte(body), &created); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /admin/keys = %d %s (%v)", resp.StatusCode, body, err)
	}
	add("key created through the admin API", created.Key)
	see("admin answer: create key", body, "key created through the admin API")
	obsSend(t, r, obsRequest{method: "GET", path: "/api/v1/movies", key: created.Key, status: 200})
	resp, body = obsFetch(t, "POST", r.opsURL+"/admin/connections/dave/authorize", good, "")
	var issued struct {
		AuthorizeURL string `json:"authorize_url"`
	}
	if err := json.Unmarshal([]byte(body), &issued); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /admin/connections/dave/authorize = %d %s (%v)", resp.StatusCode, body, err)
	}
	add("ticket of dave", ticketOf(issued.AuthorizeURL))
	see("admin answer: authorize", body, "ticket of dave")
	resp, body = obsFetch(t, "DELETE", r.opsURL+"/admin/keys/"+created.ID, good, "")
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE /admin/keys/%s = %d %s", created.ID, resp.StatusCode, body)
	}
	see("admin answer: delete key", obsHeaderText(resp.Header)+body)
	resp, body = obsFetch(t, "DELETE", r.opsURL+"/admin/connections/erin", good, "")
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE /admin/connections/erin = %d %s", resp.StatusCode, body)
	}

	// Every lifecycle event was delivered; the receiver saw headers and bodies.
	pollUntil(t, "every webhook delivered", func() bool {
		n, err := r.app.queue.Pending(t.Context())
		return err == nil && n == 0
	})
	seenTypes := map[string]bool{}
	for _, e := range hooks.all() {
		seenTypes[e.Type] = true
		see("webhook delivery "+e.Type, e.Raw)
	}
	for _, typ := range config.Events {
		if !seenTypes[typ] {
			t.Errorf("no %s webhook was delivered: the traffic missed a path", typ)
		}
	}

	// check-config on the very configuration the replica runs.
	var out, errOut bytes.Buffer
	cfgPath := writeConfig(t, string(s.cfg.YAML()))
	if err := run(t.Context(), []string{"check-config", "--config", cfgPath}, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("check-config: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "configuration is valid") || !strings.Contains(out.String(), "****") {
		t.Errorf("check-config printed no masked configuration:\n%s", out.String())
	}
	see("check-config output", out.String()+errOut.String())

	see("/metrics", obsScrape(t, r))
	logs := s.logs.String()
	see("logs", logs)

	// The logs saw every path, or their silence would prove nothing.
	for _, want := range []string{
		`"msg":"request"`, `"outcome":"forwarded"`, `"outcome":"invalid_api_key"`, `"outcome":"insufficient_scope"`,
		`"outcome":"method_not_allowed"`, `"outcome":"bad_request"`, `"outcome":"not_connected"`,
		`"outcome":"reauthorization_required"`, `"msg":"user connected"`, `"msg":"onboarding refused"`,
		`"msg":"token refreshed"`, `"msg":"refresh token rejected; connection needs re-authorization"`,
		`"msg":"admin request failed"`, `"msg":"api key created"`, `"msg":"onboarding link issued"`,
		`"msg":"api key revoked"`, `"logger":"audit"`, `"action":"key.created"`, `"action":"link.issued"`,
		`"action":"key.revoked"`, `"action":"connection.revoked"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs have no %s: the traffic missed a path", want)
		}
	}

	for _, tx := range texts {
		for name, secret := range secrets {
			if slices.Contains(tx.allow, name) {
				if !strings.Contains(tx.text, secret) {
					t.Errorf("%s should carry the %s but does not: %s", tx.where, name, tx.text)
				}
				continue
			}
			if i := strings.Index(tx.text, secret); i >= 0 {
				t.Errorf("%s contains the %s: …%s…", tx.where, name, tx.text[max(0, i-200):min(len(tx.text), i+len(secret)+50)])
			}
		}
	}
	t.Logf("checked %d secrets against %d texts (%d bytes of logs)", len(secrets), len(texts), len(logs))
}

// obsHeaderText renders response headers for the secret scan.
func obsHeaderText(h http.Header) string {
	var b strings.Builder
	_ = h.Write(&b)
	return b.String() + "\n"
}

// TestHealthAndReadiness: docs/reference.md §5 and §6. /healthz answers while the process serves; /readyz
// follows Redis. With Redis gone, a user whose key and connection are cached is still served,
// and a key never seen gets 503 token_store_unavailable with Retry-After.
func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	// Caches live an hour: only Redis being down, not a TTL, decides what the requests get.
	r := s.startWith(nil, appOptions{managerInterval: time.Hour, cacheTTL: time.Hour})
	key := s.connect(r, "alice", "john", "read")

	probe := func(path string, want int, wantText string) {
		t.Helper()
		resp, body := obsFetch(t, http.MethodGet, r.opsURL+path, nil, "")
		if resp.StatusCode != want || !strings.Contains(body, wantText) {
			t.Errorf("GET %s = %d %q, want %d containing %q", path, resp.StatusCode, body, want, wantText)
		}
	}
	probe("/healthz", http.StatusOK, "ok")
	probe("/readyz", http.StatusOK, "ready")
	obsSend(t, r, obsRequest{method: "GET", path: "/api/v1/movies", key: key, status: 200}) // warms the cache

	s.redis.Stop()
	probe("/readyz", http.StatusServiceUnavailable, "redis")
	probe("/healthz", http.StatusOK, "ok")
	_, body := obsSend(t, r, obsRequest{method: "GET", path: "/api/v1/movies", key: key, status: 200})
	if !strings.Contains(body, `"movies"`) {
		t.Errorf("cached user while Redis is down: body %s", body)
	}
	resp, body := obsSend(t, r, obsRequest{method: "GET", path: "/api/v1/movies", key: tokens.NewAPIKey(),
		status: http.StatusServiceUnavailable, code: "token_store_unavailable"})
	if ra := resp.Header.Get("Retry-After"); ra == "" {
		t.Errorf("503 token_store_unavailable without Retry-After; headers %v, body %s", resp.Header, body)
	} else if n, err := strconv.Atoi(ra); err != nil || n <= 0 {
		t.Errorf("Retry-After = %q, want a positive number of seconds", ra)
	}

	mfs := obsFamilies(t, obsScrape(t, r))
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"academy_gateway_requests_total", map[string]string{"method": "GET", "code": "200", "outcome": "forwarded"}, 2},
		{"academy_gateway_requests_total", map[string]string{"method": "GET", "code": "503", "outcome": "store_error"}, 1},
	} {
		if got, n := obsSum(mfs, c.name, c.labels); n == 0 || got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got, _ := obsSum(mfs, "academy_gateway_token_store_operations_total", map[string]string{"result": "error"}); got <= 0 {
		t.Errorf("token_store_operations_total{result=error} = %v after Redis went away, want > 0", got)
	}
}
