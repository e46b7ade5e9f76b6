package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/internal/tlstest"
	"github.com/academy-gateway/academy-gateway/tlsreload"
)

// TestServeTLS: with listen.tls_cert_file and tls_key_file the proxy listener serves HTTPS (the
// onboarding flow and proxied calls work over it, the ops listener stays plain HTTP); a
// certificate rotated on disk reaches new handshakes without a restart while an open keep-alive
// connection keeps working.
func TestServeTLS(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "gateway test CA")
	first, second := ca.Issue(t), ca.Issue(t)
	dir := tlstest.NewSecretDir(t, first)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }

	s := newStack(t, time.Minute)
	r := s.startWith(func(c *config.Config) {
		c.Listen.TLSCertFile, c.Listen.TLSKeyFile = dir.CertFile(), dir.KeyFile()
		c.OAuth.RedirectURL = strings.Replace(c.OAuth.RedirectURL, "http://", "https://", 1) // this replica's port
	}, appOptions{managerInterval: time.Hour, tls: tlsreload.Options{Interval: time.Second, Now: clock}})
	proxyURL := strings.Replace(r.proxyURL, "http://", "https://", 1)

	kept := &http.Transport{TLSClientConfig: ca.ClientConfig()}
	t.Cleanup(kept.CloseIdleConnections)
	link, _, err := r.app.onboard.Authorize(t.Context(), "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := onboardThrough(t.Context(), kept, link, "john"); err != nil {
		t.Fatalf("onboarding over HTTPS: %v", err)
	}
	_, key, err := r.app.store.IssueKey(t.Context(), "alice", []string{"read"}, "tls", "")
	if err != nil {
		t.Fatal(err)
	}

	get := func(rt http.RoundTripper) (status int, serialIsFirst, reused bool) {
		t.Helper()
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		}), http.MethodGet, proxyURL+"/api/v1/movies", nil)
		req.Header.Set("X-Api-Key", key)
		resp, err := (&http.Client{Transport: rt, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("GET over HTTPS: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber.Cmp(first.Serial) == 0, reused
	}
	if status, isFirst, _ := get(kept); status != http.StatusOK || !isFirst {
		t.Fatalf("GET /api/v1/movies over HTTPS: %d, first certificate %v", status, isFirst)
	}

	dir.Swap(t, second)
	now.Add(int64(time.Second))
	if status, isFirst, reused := get(kept); status != http.StatusOK || !isFirst || !reused {
		t.Errorf("the open connection after rotation: %d, first certificate %v, reused %v; want 200 on the same connection", status, isFirst, reused)
	}
	fresh := &http.Transport{TLSClientConfig: ca.ClientConfig()}
	t.Cleanup(fresh.CloseIdleConnections)
	if status, isFirst, reused := get(fresh); status != http.StatusOK || isFirst || reused {
		t.Errorf("a new connection after rotation: %d, first certificate %v, reused %v; want 200 with the new certificate", status, isFirst, reused)
	}

	if status, _ := call(t, http.MethodGet, r.opsURL+"/healthz", "", ""); status != http.StatusOK {
		t.Errorf("ops /healthz over plain HTTP: %d", status)
	}
	resp, err := http.Get(r.proxyURL + "/api/v1/movies") // plain HTTP to the TLS listener
	if err != nil {
		t.Fatalf("plain HTTP to the TLS listener: %v, want Go's 400 about HTTPS", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("HTTPS")) {
		t.Errorf("plain HTTP to the TLS listener: %s %q, want Go's 400 about HTTPS", resp.Status, body)
	}
}

// TestServeTLSBadFiles: certificate files that do not load stop serve with a configuration
// error (exit 2) naming listen.tls_cert_file.
func TestServeTLSBadFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := "listen:\n  proxy: \"127.0.0.1:0\"\n  ops: \"localhost:0\"\n" +
		"  tls_cert_file: " + filepath.Join(dir, "absent.crt") + "\n  tls_key_file: " + filepath.Join(dir, "absent.key") + "\n" +
		"oauth:\n  client_id: id\n  client_secret: secret\nredis:\n  url: \"\"\nsecurity:\n  encryption_keys: [\"" + cliEncryptionKey + "\"]\n"
	err := run(t.Context(), []string{"serve", "--config", writeConfig(t, cfg)}, mapEnv(nil), io.Discard, io.Discard)
	wantExit(t, err, 2, "listen.tls_cert_file")
}

// TestRedisTLS: a rediss:// URL reaches a TLS-only redis-server whose certificate chains to
// redis.tls_ca_file; without that bundle (the system's roots) or with another CA the store is
// unreachable (exit 1); a bundle that is missing or holds no certificate is a configuration
// error naming redis.tls_ca_file (exit 2).
func TestRedisTLS(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "redis test CA")
	certFile, keyFile := ca.Issue(t).Write(t, t.TempDir())
	srv := redistest.StartTLS(t, certFile, keyFile, ca.PEM)
	dir := t.TempDir()
	caFile, otherCA, junk := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "other.crt"), filepath.Join(dir, "junk.crt")
	tlstest.WriteFile(t, caFile, ca.PEM)
	tlstest.WriteFile(t, otherCA, tlstest.NewCA(t, "another CA").PEM)
	tlstest.WriteFile(t, junk, []byte("not a certificate\n"))

	conf := func(caFile string) string {
		c := "oauth:\n  client_id: id\n  client_secret: secret\nsecurity:\n  encryption_keys: [\"" + cliEncryptionKey + "\"]\n" +
			"redis:\n  url: \"" + srv.URL() + "\"\n"
		if caFile != "" {
			c += "  tls_ca_file: " + caFile + "\n"
		}
		return writeConfig(t, c)
	}
	if !strings.HasPrefix(srv.URL(), "rediss://") {
		t.Fatalf("TLS server URL %q", srv.URL())
	}
	good := conf(caFile)
	out := runCLI(t, mapEnv(nil), "keys", "create", "--user", "alice", "--config", good)
	if !strings.Contains(out, "created key") {
		t.Fatalf("keys create over rediss:// printed %q", out)
	}
	if out := runCLI(t, mapEnv(nil), "keys", "list", "--config", good); !strings.Contains(out, "alice") {
		t.Errorf("keys list over rediss:// lacks alice:\n%s", out)
	}
	if n, err := srv.Client(t).DBSize(t.Context()).Result(); err != nil || n == 0 {
		t.Errorf("the TLS server holds %d keys (%v), want the new key's records", n, err)
	}

	tests := []struct {
		name, config string
		code         int
		msg          string
	}{
		{"system roots", conf(""), 1, "token store unavailable"},
		{"another CA", conf(otherCA), 1, "token store unavailable"},
		{"bundle without a certificate", conf(junk), 2, "redis.tls_ca_file"},
		{"missing bundle", conf(filepath.Join(dir, "absent.crt")), 2, "redis.tls_ca_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(t.Context(), []string{"keys", "list", "--config", tt.config}, mapEnv(nil), io.Discard, io.Discard)
			wantExit(t, err, tt.code, tt.msg)
		})
	}
}
