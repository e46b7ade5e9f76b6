package main

import (
	"bufio"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/internal/testutil"
)

// The shipped ingress configurations (deploy/forward-auth/), relative to this package.
const (
	nginxConfFile = "../../deploy/forward-auth/nginx.conf"
	caddyFile     = "../../deploy/forward-auth/Caddyfile"
)

// academyTap is the Academy as the ingress sees it: the stack's simulator under the v2 base path
// /api/v2, behind TLS, recording what each request carried.
type academyTap struct {
	mu   sync.Mutex
	reqs []tapped
	next http.Handler
}

// tapped is what one request that reached the Academy carried.
type tapped struct {
	Method        string
	URI           string   // the raw request target
	Authorization []string // every Authorization value
	APIKeys       []string // every x-api-key value
	RequestID     string
}

func (a *academyTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.reqs = append(a.reqs, tapped{r.Method, r.RequestURI, r.Header.Values("Authorization"),
		r.Header.Values("X-Api-Key"), r.Header.Get("X-Request-Id")})
	a.mu.Unlock()
	a.next.ServeHTTP(w, r)
}

// since returns the requests after the first n.
func (a *academyTap) since(n int) []tapped {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]tapped(nil), a.reqs[n:]...)
}

func (a *academyTap) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.reqs)
}

// fwdEnv is a forward-auth deployment: the stack (Redis, simulator, one gateway replica with its
// auth listener), the Academy behind TLS, and one ingress in front of both.
type fwdEnv struct {
	s       *stack
	r       *replica
	tap     *academyTap
	ingress string // host:port of the ingress
	full    string // key of alice with every scope
	ro      string // key of alice with read only
	wo      string // key of alice with write only
	lonely  string // key of bob, who never connected
	// reencodes: the ingress forwards the path decoded and encoded again (Caddy), so needless
	// escapes such as %41 arrive as what they encode.
	reencodes bool
}

// academyTLS serves the stack's simulator under /api/v2 over TLS and returns the tap, the
// server's address and the file of the CA that verifies it (for the name example.com, which
// stands in for the Academy's host name).
func academyTLS(t *testing.T, s *stack) (*academyTap, string, string) {
	tap := &academyTap{next: http.StripPrefix("/api/v2", s.sim)}
	srv := httptest.NewUnstartedServer(tap)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // ingresses closing idle TLS connections
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "academy-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return tap, srv.Listener.Addr().String(), ca
}

// newFwdEnv starts everything but the ingress; token is security.forward_auth_token.
func newFwdEnv(t *testing.T, token string) (*fwdEnv, string, string) {
	s := newStack(t, time.Minute)
	r := s.start(func(c *config.Config) { c.Listen.Auth = "on"; c.Security.ForwardAuthToken = token })
	e := &fwdEnv{s: s, r: r}
	var academyAddr, ca string
	e.tap, academyAddr, ca = academyTLS(t, s)
	e.full = s.connect(r, "alice", "john", "read", "write", "delete")
	issue := func(user string, scopes ...string) string {
		_, key, err := r.app.store.IssueKey(t.Context(), user, scopes, "test", "")
		if err != nil {
			t.Fatalf("issue key: %v", err)
		}
		return key
	}
	e.ro, e.wo, e.lonely = issue("alice", "read"), issue("alice", "write"), issue("bob")
	return e, academyAddr, ca
}

// render replaces each old value of subs in the shipped file with its new value, failing when
// one is missing, so that the test always runs the shipped configuration and only that.
func render(t *testing.T, file string, subs [][2]string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, s := range subs {
		if !strings.Contains(text, s[0]) {
			t.Fatalf("%s no longer contains %q: update the test's substitutions", file, s[0])
		}
		text = strings.ReplaceAll(text, s[0], s[1])
	}
	return text
}

// freeAddr returns a loopback address whose port was free a moment ago and is handed out once
// in this process.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	port, err := resFreePort()
	if err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// startIngress runs cmd until the test ends and waits until addr accepts connections.
func startIngress(t *testing.T, cmd *exec.Cmd, addr, logFile string) {
	t.Helper()
	out, err := os.Create(filepath.Join(t.TempDir(), "ingress.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			for _, f := range []string{out.Name(), logFile} {
				if b, err := os.ReadFile(f); err == nil && len(b) > 0 {
					t.Logf("%s:\n%s", f, b)
				}
			}
		}
	})
	testutil.Eventually(t, 15*time.Second, func() error {
		select {
		case <-exited:
			b, _ := os.ReadFile(out.Name())
			logs, _ := os.ReadFile(logFile)
			t.Fatalf("%s exited: %s\n%s", cmd.Path, b, logs)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return fmt.Errorf("%s does not listen on %s: %w", cmd.Path, addr, err)
		}
		c.Close()
		return nil
	})
}

// startNginx runs Debian's nginx with the shipped configuration in a prefix of its own; token,
// when set, is the X-Gateway-Auth it sends.
func startNginx(t *testing.T, e *fwdEnv, academyAddr, ca, token string) {
	bin := obsNeedTool(t, "nginx", "nginx")
	dir := t.TempDir()
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, "tmp", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	subs := [][2]string{
		{"server 127.0.0.1:9092;", "server " + strings.TrimPrefix(e.r.authURL, "http://") + ";"},
		{"server app-academy.make.com:443;", "server " + academyAddr + ";"},
		{"app-academy.make.com", "example.com"}, // the name the test certificate is for
		{"listen 80;", "listen " + addr + ";"},
		{"/etc/ssl/certs/ca-certificates.crt", ca},
	}
	if token != "" {
		subs = append(subs, [2]string{`# proxy_set_header X-Gateway-Auth "the security.forward_auth_token value";`,
			`proxy_set_header X-Gateway-Auth "` + token + `";`})
	}
	site := render(t, nginxConfFile, subs)
	if err := os.WriteFile(filepath.Join(dir, "academy-gateway.conf"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	errorLog := filepath.Join(dir, "error.log")
	main := fmt.Sprintf(`master_process off;
pid %[1]s/nginx.pid;
error_log %[2]s info;
events { worker_connections 512; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    include %[1]s/academy-gateway.conf;
}
`, dir, errorLog)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", dir, "-e", errorLog, "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	startIngress(t, exec.Command(bin, "-p", dir, "-e", errorLog, "-c", conf, "-g", "daemon off;"), addr, errorLog)
	e.ingress = addr
}

// startCaddy runs caddy with the shipped Caddyfile, admin API off, no automatic HTTPS; token is
// the X-Gateway-Auth it sends.
func startCaddy(t *testing.T, e *fwdEnv, academyAddr, ca, token string) {
	bin := obsNeedTool(t, "caddy", "caddy")
	dir := t.TempDir()
	addr := freeAddr(t)
	site := render(t, caddyFile, [][2]string{
		{"http://:8080", "http://:" + strings.TrimPrefix(addr, "127.0.0.1:")}, // bound to loopback below
		{"127.0.0.1:9092", strings.TrimPrefix(e.r.authURL, "http://")},
		{"https://app-academy.make.com", "https://" + academyAddr},
		{"/etc/ssl/certs/ca-certificates.crt", ca + "\n\t\t\t\ttls_server_name example.com"},
	})
	conf := filepath.Join(dir, "Caddyfile")
	global := fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n\tstorage file_system %s\n\tlog {\n\t\toutput file %s/caddy.log\n\t}\n}\n\n", dir, dir)
	if err := os.WriteFile(conf, []byte(global+site), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", conf, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir,
		"ACADEMY_GATEWAY_FORWARD_AUTH_TOKEN="+token)
	startIngress(t, cmd, addr, filepath.Join(dir, "caddy.log"))
	e.ingress, e.reencodes = addr, true
}

// answer is what the caller got from the ingress.
type answer struct {
	Status int
	Header http.Header
	Body   string
}

// raw sends one request as literal bytes (no client normalises its target) and reads the answer.
func raw(t *testing.T, addr, method, target string, header http.Header, body string) answer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: gateway.example\r\nConnection: close\r\n", method, target)
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(rb)}
}

func key(k string) http.Header { return http.Header{"X-Api-Key": {k}} }

// gatewayError is the code and request id of the gateway's JSON error body, or "" when the body
// is not one.
func gatewayError(body string) (code, requestID string) {
	var b struct {
		Error struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(body), &b) != nil || b.Error.Message == "" {
		return "", ""
	}
	return b.Error.Code, b.Error.RequestID
}

// TestForwardAuthIngress runs the shipped nginx and Caddy configurations in front of the
// simulator, deciding with a real gateway's auth listener.
func TestForwardAuthIngress(t *testing.T) {
	for _, ing := range ingresses {
		t.Run(ing.name, func(t *testing.T) {
			e, academyAddr, ca := newFwdEnv(t, "")
			ing.start(t, e, academyAddr, ca, "")
			t.Run("full key reaches the Academy", func(t *testing.T) { fwdFullKey(t, e) })
			t.Run("refusals", func(t *testing.T) { fwdRefusals(t, e) })
			t.Run("no reactive refresh", func(t *testing.T) { fwdNoReactiveRefresh(t, e) })
			t.Run("one refresh for 50 checks", func(t *testing.T) { fwdRefreshOnce(t, e) })
			t.Run("refresh failure", func(t *testing.T) { fwdRefreshFails(t, e) })
			t.Run("gateway unreachable", func(t *testing.T) {
				// A second ingress whose auth listener address is a closed port.
				closed := strings.TrimSuffix(strings.TrimPrefix(closedPortURL(t), "redis://"), "/0")
				e.r.authURL = "http://" + closed
				ing.start(t, e, academyAddr, ca, "")
				before := e.tap.count()
				a := raw(t, e.ingress, "GET", "/api/v1/movies", key(e.full), "")
				if a.Status != 502 || e.tap.count() != before {
					t.Fatalf("got %d %s (Academy saw %d), want 502 and nothing forwarded", a.Status, a.Body, e.tap.count()-before)
				}
				if code, _ := gatewayError(a.Body); ing.jsonWhenDown && (code != "upstream_unavailable" || a.Header.Get("Retry-After") != "1") {
					t.Errorf("got %v %s, want the configuration's upstream_unavailable JSON with Retry-After", a.Header, a.Body)
				}
			})
		})
	}
}

var ingresses = []struct {
	name  string
	start func(t *testing.T, e *fwdEnv, academyAddr, ca, token string)
	// jsonWhenDown: the configuration answers a check that cannot reach the gateway with a JSON
	// error of its own (nginx); else the ingress's own 502 (Caddy).
	jsonWhenDown bool
}{
	{"nginx", startNginx, true},
	{"caddy", startCaddy, false},
}

// TestForwardAuthIngressToken: with security.forward_auth_token set, an ingress configured with
// it gets answers; one with another token gets 403 forbidden for every request, handed to the
// caller as the gateway's JSON, and nothing reaches the Academy.
func TestForwardAuthIngressToken(t *testing.T) {
	const token = "ingress-shared-secret-42"
	for _, ing := range ingresses {
		t.Run(ing.name, func(t *testing.T) {
			e, academyAddr, ca := newFwdEnv(t, token)
			ing.start(t, e, academyAddr, ca, token)
			if a := raw(t, e.ingress, "GET", "/api/v1/movies", key(e.full), ""); a.Status != 200 {
				t.Fatalf("right token: %d %s", a.Status, a.Body)
			}
			before := e.tap.count()
			ing.start(t, e, academyAddr, ca, "another-secret")
			a := raw(t, e.ingress, "GET", "/api/v1/movies", key(e.full), "")
			if code, _ := gatewayError(a.Body); a.Status != 403 || code != "forbidden" {
				t.Errorf("wrong token: %d %s, want 403 forbidden", a.Status, a.Body)
			}
			if e.tap.count() != before {
				t.Error("a forbidden check let the request reach the Academy")
			}
			if strings.Contains(e.s.logs.String(), token) {
				t.Error("the forward-auth token is in the gateway's logs")
			}
		})
	}
}

// storedToken is alice's current access token.
func storedToken(t *testing.T, e *fwdEnv) string {
	t.Helper()
	c, err := e.r.app.store.Connection(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	return c.AccessToken
}

func fwdFullKey(t *testing.T, e *fwdEnv) {
	token := storedToken(t, e)
	bearer := "Bearer " + token
	before, lines := e.tap.count(), strings.Count(e.s.logs.String(), `"msg":"forward-auth check"`)
	allowed := func() float64 {
		n, _ := obsSum(obsFamilies(t, obsScrape(t, e.r)), "academy_gateway_forward_auth_requests_total",
			map[string]string{"outcome": "allowed", "code": "200"})
		return n
	}
	allowedBefore := allowed()
	h := key(e.full)
	h.Set("Authorization", "Bearer caller-supplied")
	h.Set("X-Request-Id", "req-fwd-1")
	get := raw(t, e.ingress, "GET", "/api/v1/movies?page=1", h, "")
	if get.Status != 200 || !strings.Contains(get.Body, "The Matrix") {
		t.Fatalf("GET = %d %s", get.Status, get.Body)
	}
	post := raw(t, e.ingress, "POST", "/api/v1/movies", key(e.full), `{"name":"Alien"}`)
	if post.Status != 201 || !strings.Contains(post.Body, `"owned":true`) {
		t.Fatalf("POST = %d %s", post.Status, post.Body)
	}
	var created struct{ ID string }
	_ = json.Unmarshal([]byte(post.Body), &created)
	del := raw(t, e.ingress, "DELETE", "/api/v1/movies/"+created.ID, key(e.full), "")
	if del.Status/100 != 2 {
		t.Fatalf("DELETE = %d %s", del.Status, del.Body)
	}
	info := raw(t, e.ingress, "GET", "/api/v2/info", key(e.full), "")
	odd := raw(t, e.ingress, "GET", "/api/v1/people/J%41ne%20Black?x=%2F", key(e.full), "")
	if info.Status != 200 || odd.Status == 0 {
		t.Fatalf("GET /api/v2/info = %d %s", info.Status, info.Body)
	}
	for _, a := range []answer{get, post, del, info} {
		if a.Header.Get("Authorization") != "" {
			t.Errorf("the caller got an Authorization header back")
		}
	}
	want := []tapped{
		{"GET", "/api/v2/movies?page=1", []string{bearer}, nil, "req-fwd-1"},
		{"POST", "/api/v2/movies", []string{bearer}, nil, ""},
		{"DELETE", "/api/v2/movies/" + created.ID, []string{bearer}, nil, ""},
		{"GET", "/api/v2/info", []string{bearer}, nil, ""},
		{"GET", "/api/v2/people/J%41ne%20Black?x=%2F", []string{bearer}, nil, ""},
	}
	if e.reencodes {
		want[4].URI = "/api/v2/people/JAne%20Black?x=%2F"
	}
	got := e.tap.since(before)
	for i := range got {
		if i > 0 && got[i].RequestID == "" {
			t.Errorf("request %d reached the Academy without X-Request-Id", i)
		}
		if i > 0 {
			got[i].RequestID = ""
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("what reached the Academy (-want +got):\n%s", diff)
	}
	logs := e.s.logs.String()
	if n := strings.Count(logs, `"msg":"forward-auth check"`) - lines; n != len(want) {
		t.Errorf("%d access lines for %d checks, want one each", n, len(want))
	}
	if strings.Contains(logs, token) || strings.Contains(logs, e.full) {
		t.Error("the gateway's logs hold the access token or the API key")
	}
	if n := allowed() - allowedBefore; n != float64(len(want)) {
		t.Errorf("forward_auth_requests_total{allowed,200} rose by %v, want %d", n, len(want))
	}
}

func fwdRefusals(t *testing.T, e *fwdEnv) {
	cases := []struct {
		name       string
		method     string
		target     string
		header     http.Header
		wantStatus int
		wantCode   string // "" when the ingress itself refuses (its own page)
		wantHeader [2]string
	}{
		{"read-only key DELETE", "DELETE", "/api/v1/movies/1", key(e.ro), 403, "insufficient_scope",
			[2]string{"WWW-Authenticate", `Bearer error="insufficient_scope", scope="delete"`}},
		{"read-only key POST", "POST", "/api/v1/movies", key(e.ro), 403, "insufficient_scope",
			[2]string{"WWW-Authenticate", `Bearer error="insufficient_scope", scope="write"`}},
		{"unknown key", "GET", "/api/v1/movies", key("not-a-key-at-all"), 401, "invalid_api_key", [2]string{}},
		{"no key", "GET", "/api/v1/movies", http.Header{}, 401, "invalid_api_key", [2]string{}},
		{"not connected", "GET", "/api/v1/movies", key(e.lonely), 401, "not_connected", [2]string{}},
		{"method", "OPTIONS", "/api/v1/movies", key(e.full), 405, "method_not_allowed",
			[2]string{"Allow", "GET, HEAD, POST, PUT, PATCH, DELETE"}},
		{"empty segment", "GET", "/api/v1//movies", key(e.full), 400, "bad_request", [2]string{}},
		{"dot segment", "GET", "/api/v1/movies/../info", key(e.wo), 400, "bad_request", [2]string{}},
		{"single dot", "GET", "/api/v1/./movies", key(e.full), 400, "bad_request", [2]string{}},
		{"encoded dots", "GET", "/api/v1/movies/%2e%2e/info", key(e.wo), 400, "bad_request", [2]string{}},
		{"encoded slash", "GET", "/api/v1/info%2F..%2Fmovies", key(e.wo), 400, "bad_request", [2]string{}},
		{"encoded backslash", "GET", "/api/v1/info%5C", key(e.wo), 400, "bad_request", [2]string{}},
		{"info with write-only key", "GET", "/api/v1/info", key(e.wo), 200, "", [2]string{}},
		{"movies with write-only key", "GET", "/api/v1/movies", key(e.wo), 403, "insufficient_scope", [2]string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.tap.count()
			h := tc.header.Clone()
			h.Set("X-Request-Id", "req-refusal")
			a := raw(t, e.ingress, tc.method, tc.target, h, "")
			if a.Status != tc.wantStatus {
				t.Fatalf("%s %s = %d %v %s, want %d", tc.method, tc.target, a.Status, a.Header, a.Body, tc.wantStatus)
			}
			if tc.wantStatus == 200 {
				if n := e.tap.count() - before; n != 1 {
					t.Errorf("the Academy saw %d requests, want 1", n)
				}
				return
			}
			if n := e.tap.count() - before; n != 0 {
				t.Errorf("a refused request reached the Academy (%d requests)", n)
			}
			code, id := gatewayError(a.Body)
			if code != tc.wantCode || id != "req-refusal" {
				t.Errorf("body %q: code %q, request id %q; want %q and req-refusal", a.Body, code, id, tc.wantCode)
			}
			checks := [][2]string{{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}}
			if tc.wantHeader[0] != "" {
				checks = append(checks, tc.wantHeader)
			}
			for _, c := range checks {
				if got := a.Header.Values(c[0]); len(got) != 1 || got[0] != c[1] {
					t.Errorf("%s = %q, want exactly %q", c[0], got, c[1])
				}
			}
			if a.Header.Get("Authorization") != "" || a.Header.Get("X-Gateway-Error") != "" {
				t.Errorf("refusal headers leak: %v", a.Header)
			}
		})
	}
}

// fwdNoReactiveRefresh: when the Academy refuses a token the gateway believes valid, the caller
// gets the Academy's own 401: the gateway never sees it, so nothing is refreshed (docs/reference.md §4.1).
func fwdNoReactiveRefresh(t *testing.T, e *fwdEnv) {
	e.s.sim.ExpireAccessTokens(e.s.sim.Users()[0].ID) // John's current token, alice's connection
	stats, before := e.s.sim.Stats(), e.tap.count()
	a := raw(t, e.ingress, "GET", "/api/v1/movies", key(e.full), "")
	if code, _ := gatewayError(a.Body); a.Status != 401 || code != "" || !strings.Contains(a.Body, "expired") {
		t.Errorf("got %d %s, want the Academy's own 401", a.Status, a.Body)
	}
	if n := e.tap.count() - before; n != 1 {
		t.Errorf("the Academy saw %d requests, want 1 (no retry)", n)
	}
	if after := e.s.sim.Stats(); after.Refreshes != stats.Refreshes {
		t.Errorf("%d refreshes, want none", after.Refreshes-stats.Refreshes)
	}
}

// expireAlice makes alice's stored access token due for a refresh now and drops the cached copy.
func expireAlice(t *testing.T, e *fwdEnv) {
	t.Helper()
	ctx := t.Context()
	c, err := e.r.app.store.Connection(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	due := c
	due.AccessExpiresAt = time.Now().Add(-time.Second)
	if _, ok, err := e.r.app.store.CompareAndSwap(ctx, due, c.Version); err != nil || !ok {
		t.Fatalf("expire alice's token: ok %v, %v", ok, err)
	}
	e.r.app.mgr.Forget("alice", "")
}

func fwdRefreshOnce(t *testing.T, e *fwdEnv) {
	old := storedToken(t, e)
	expireAlice(t, e)
	stats, before := e.s.sim.Stats(), e.tap.count()
	var wg sync.WaitGroup
	answers := make([]answer, 50)
	for i := range answers {
		wg.Go(func() { answers[i] = raw(t, e.ingress, "GET", "/api/v1/movies", key(e.full), "") })
	}
	wg.Wait()
	for i, a := range answers {
		if a.Status != 200 {
			t.Fatalf("check %d: %d %s", i, a.Status, a.Body)
		}
	}
	after := e.s.sim.Stats()
	if n := after.Refreshes - stats.Refreshes; n != 1 || after.ReusedRefreshTokens != stats.ReusedRefreshTokens {
		t.Errorf("simulator saw %d refreshes (%d reused refresh tokens), want exactly 1 (0)", n, after.ReusedRefreshTokens-stats.ReusedRefreshTokens)
	}
	fresh := storedToken(t, e)
	if fresh == old {
		t.Fatal("the stored token did not change")
	}
	for i, r := range e.tap.since(before) {
		if len(r.Authorization) != 1 || r.Authorization[0] != "Bearer "+fresh {
			t.Fatalf("request %d reached the Academy with %d Authorization values, not the refreshed token", i, len(r.Authorization))
		}
	}
}

// fwdRefreshFails: an expired token whose refresh fails for a passing reason is a 502 with
// Retry-After at the caller, the gateway's JSON, never the Academy's 401.
func fwdRefreshFails(t *testing.T, e *fwdEnv) {
	expireAlice(t, e)
	e.s.sim.FailRefreshes(1000)
	t.Cleanup(func() { e.s.sim.FailRefreshes(0) })
	before := e.tap.count()
	a := raw(t, e.ingress, "GET", "/api/v1/movies", key(e.full), "")
	code, _ := gatewayError(a.Body)
	if a.Status != 502 || code != "upstream_unavailable" || a.Header.Get("Retry-After") == "" {
		t.Errorf("got %d %v %s, want 502 upstream_unavailable with Retry-After", a.Status, a.Header, a.Body)
	}
	if e.tap.count() != before {
		t.Error("the request reached the Academy")
	}
}
