package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/internal/tlstest"
	"github.com/academy-gateway/academy-gateway/sim"
)

// connectSetup is what one check-config --connect case runs against.
type connectSetup struct {
	redis    string // the redis: section's body
	proxy    string // listen.proxy
	tokenURL string // oauth.token_url
	secret   string // oauth.client_secret
	auth     string // listen.auth
	tlsCert  string // listen.tls_cert_file
	tlsKey   string // listen.tls_key_file
}

// holdAddr listens on a loopback port until the test ends and returns its address.
func holdAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// connectReport runs check-config --connect with s and returns the check lines reduced to
// "name: outcome", the full lines, and the error run returned.
func connectReport(t *testing.T, s connectSetup) (outcomes, lines []string, err error) {
	t.Helper()
	path := writeConfig(t, `
listen:
  proxy: "`+s.proxy+`"
  ops: "`+freeAddr(t)+`"
  auth: "`+s.auth+`"
  tls_cert_file: "`+s.tlsCert+`"
  tls_key_file: "`+s.tlsKey+`"
oauth:
  client_id: "`+sim.DefaultClientID+`"
  client_secret: "`+s.secret+`"
  token_url: "`+s.tokenURL+`"
  redirect_url: "https://gateway.example.test/oauth/callback"
redis:
`+s.redis+`
security:
  encryption_keys: ["`+cliEncryptionKey+`"]
`)
	var stdout bytes.Buffer
	err = run(t.Context(), []string{"check-config", "--connect", "--config", path}, mapEnv(nil), &stdout, &bytes.Buffer{})
	_, report, found := strings.Cut(stdout.String(), "# connect checks\n")
	if !found {
		t.Fatalf("no connect report in:\n%s", stdout.String())
	}
	outcome := regexp.MustCompile(`^([a-z_.]+): (ok|warning|failed)\b`)
	for line := range strings.Lines(report) {
		line = strings.TrimSuffix(line, "\n")
		lines = append(lines, line)
		m := outcome.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("report line %q is not <name>: ok|warning|failed", line)
		}
		outcomes = append(outcomes, m[1]+": "+m[2])
	}
	return outcomes, lines, err
}

// TestCheckConfigConnect: every outcome of every --connect check (docs/reference.md §2), against a real
// redis-server (single, Cluster, Sentinel) and a real simulator as the Academy.
func TestCheckConfigConnect(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	evicting := redistest.Start(t)
	if err := evicting.Client(t).ConfigSet(t.Context(), "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	down := redistest.Start(t)
	down.Stop()
	cluster := redistest.StartCluster(t)
	sentinel := redistest.StartSentinel(t)

	academy := httptest.NewServer(sim.New(sim.Options{}))
	t.Cleanup(academy.Close)
	odd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error":{"message":"maintenance"}}`, http.StatusServiceUnavailable)
	}))
	t.Cleanup(odd.Close)
	unreachable := "http://" + freeAddr(t) + "/token"

	ca := tlstest.NewCA(t, "check-config test CA")
	leaf := ca.Issue(t, "gateway.example.test")
	cert, key := leaf.Write(t, t.TempDir())
	expiredCert, expiredKey := ca.IssueUntil(t, time.Now().Add(-time.Hour), "gateway.example.test").Write(t, t.TempDir())
	otherKey := writeFile(t, "other.key", string(ca.Issue(t).KeyPEM))
	garbage := writeFile(t, "garbage.pem", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
	caBundle := writeFile(t, "ca.pem", string(ca.PEM))
	caBundle2 := writeFile(t, "ca2.pem", string(ca.PEM)+string(leaf.CertPEM))
	missing := filepath.Join(t.TempDir(), "missing.pem")
	redisCert, redisKey := ca.Issue(t).Write(t, t.TempDir()) // for 127.0.0.1
	tlsRedis := redistest.StartTLS(t, redisCert, redisKey, ca.PEM)
	strangerCA := writeFile(t, "stranger.pem", string(tlstest.NewCA(t, "a CA that signed nothing here").PEM))
	rediss := func(caFile string) string {
		return `  url: "` + tlsRedis.URL() + `"` + "\n  tls_ca_file: \"" + caFile + `"`
	}

	good := func() connectSetup {
		return connectSetup{redis: `  url: "` + rs.URL() + `"`, proxy: freeAddr(t), tokenURL: academy.URL + "/token", secret: sim.DefaultClientSecret}
	}
	allOK := []string{"redis: ok", "listen.proxy: ok", "listen.ops: ok", "academy: ok"}
	tests := []struct {
		name     string
		change   func(*connectSetup)
		want     []string // name: outcome, in report order
		contains []string // in the report
		exit     int
	}{
		{"all good", func(*connectSetup) {}, allOK, []string{"Redis ", "standalone", "accepts the client credentials"}, 0},
		{"redis down", func(s *connectSetup) { s.redis = `  url: "` + down.URL() + `"` },
			[]string{"redis: failed", "listen.proxy: ok", "listen.ops: ok", "academy: ok"}, []string{down.Addr}, 1},
		{"redis may evict", func(s *connectSetup) { s.redis = `  url: "` + evicting.URL() + `"` },
			[]string{"redis: ok", "redis: warning", "listen.proxy: ok", "listen.ops: ok", "academy: ok"},
			[]string{"maxmemory-policy allkeys-lru", "set maxmemory-policy noeviction"}, 0},
		{"redis embedded", func(s *connectSetup) { s.redis = `  url: ""` },
			[]string{"redis: warning", "listen.proxy: ok", "listen.ops: ok", "academy: ok"}, []string{"embedded"}, 0},
		{"redis cluster", func(s *connectSetup) {
			s.redis = `  url: ""` + "\n  addrs: [\"" + strings.Join(cluster.Addrs, `", "`) + `"]`
		},
			allOK, []string{"cluster of 3 masters"}, 0},
		{"redis sentinel", func(s *connectSetup) {
			s.redis = `  url: ""` + "\n  addrs: [\"" + sentinel.Addrs[0] + `"]` + "\n  master_name: " + sentinel.MasterName
		}, allOK, []string{`sentinel master "mymaster"`}, 0},
		{"port taken", func(s *connectSetup) { s.proxy = holdAddr(t) },
			[]string{"redis: ok", "listen.proxy: failed", "listen.ops: ok", "academy: ok"}, []string{"address already in use"}, 1},
		{"auth listener free", func(s *connectSetup) { s.auth = freeAddr(t) },
			[]string{"redis: ok", "listen.proxy: ok", "listen.ops: ok", "listen.auth: ok", "academy: ok"}, nil, 0},
		{"auth listener taken", func(s *connectSetup) { s.auth = holdAddr(t) },
			[]string{"redis: ok", "listen.proxy: ok", "listen.ops: ok", "listen.auth: failed", "academy: ok"}, []string{"address already in use"}, 1},
		{"TLS files load", func(s *connectSetup) { s.tlsCert, s.tlsKey = cert, key },
			[]string{"redis: ok", "listen.proxy: ok", "listen.ops: ok", "listen.tls_cert_file: ok", "academy: ok"},
			[]string{"certificate for localhost, gateway.example.test, valid until"}, 0},
		{"TLS certificate is garbage", func(s *connectSetup) { s.tlsCert, s.tlsKey = garbage, key },
			[]string{"redis: ok", "listen.proxy: ok", "listen.ops: ok", "listen.tls_cert_file: failed", "academy: ok"}, []string{"do not load"}, 1},
		{"TLS key does not match", func(s *connectSetup) { s.tlsCert, s.tlsKey = cert, otherKey },
			[]string{"redis: ok", "listen.proxy: ok", "listen.ops: ok", "listen.tls_cert_file: failed", "academy: ok"}, []string{"private key does not match public key"}, 1},
		{"TLS file missing", func(s *connectSetup) { s.tlsCert, s.tlsKey = missing, key },
			[]string{"redis: ok", "listen.proxy: ok", "listen.ops: ok", "listen.tls_cert_file: failed", "academy: ok"}, []string{"no such file"}, 1},
		{"TLS certificate expired", func(s *connectSetup) { s.tlsCert, s.tlsKey = expiredCert, expiredKey },
			[]string{"redis: ok", "listen.proxy: ok", "listen.ops: ok", "listen.tls_cert_file: failed", "academy: ok"}, []string{"expired on"}, 1},
		{"rediss with its CA", func(s *connectSetup) { s.redis = rediss(caBundle) },
			[]string{"redis: ok", "listen.proxy: ok", "listen.ops: ok", "redis.tls_ca_file: ok", "academy: ok"}, []string{"a bundle of 1 certificates"}, 0},
		{"rediss with a bundle of two", func(s *connectSetup) { s.redis = rediss(caBundle2) },
			[]string{"redis: ok", "listen.proxy: ok", "listen.ops: ok", "redis.tls_ca_file: ok", "academy: ok"}, []string{"a bundle of 2 certificates"}, 0},
		{"rediss with a CA that did not sign the server", func(s *connectSetup) { s.redis = rediss(strangerCA) },
			[]string{"redis: failed", "listen.proxy: ok", "listen.ops: ok", "redis.tls_ca_file: ok", "academy: ok"}, []string{"certificate signed by unknown authority"}, 1},
		{"rediss with a garbage CA bundle", func(s *connectSetup) { s.redis = rediss(garbage) },
			[]string{"redis: failed", "listen.proxy: ok", "listen.ops: ok", "redis.tls_ca_file: failed", "academy: ok"}, []string{"certificate 1"}, 1},
		{"bad client credentials", func(s *connectSetup) { s.secret = "wrong-secret" },
			[]string{"redis: ok", "listen.proxy: ok", "listen.ops: ok", "academy: failed"},
			[]string{"refused the client credentials (401)", "oauth.client_secret"}, 1},
		{"academy unreachable", func(s *connectSetup) { s.tokenURL = unreachable },
			[]string{"redis: ok", "listen.proxy: ok", "listen.ops: ok", "academy: failed"}, []string{"cannot be reached", "connection refused"}, 1},
		{"academy answers neither 400 nor 401", func(s *connectSetup) { s.tokenURL = odd.URL + "/token" },
			[]string{"redis: ok", "listen.proxy: ok", "listen.ops: ok", "academy: failed"}, []string{"answered 503"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := good()
			tc.change(&s)
			outcomes, lines, err := connectReport(t, s)
			if diff := cmp.Diff(tc.want, outcomes); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s\nreport:\n%s", diff, strings.Join(lines, "\n"))
			}
			report := strings.Join(lines, "\n")
			for _, c := range tc.contains {
				if !strings.Contains(report, c) {
					t.Errorf("report lacks %q:\n%s", c, report)
				}
			}
			for _, secret := range []string{sim.DefaultClientSecret, "wrong-secret", cliEncryptionKey, invalidCode} {
				if strings.Contains(report, secret) {
					t.Errorf("report shows a secret or the probe code %q:\n%s", secret, report)
				}
			}
			wantExit(t, err, tc.exit, "checks failed")
		})
	}
}
