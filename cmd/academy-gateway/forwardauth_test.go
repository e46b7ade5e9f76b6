package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/academy-gateway/academy-gateway/internal/tlstest"
	"github.com/academy-gateway/academy-gateway/tokens"
)

func TestLoopbackAddr(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:9092", true},
		{"127.1.2.3:9092", true},
		{"[::1]:9092", true},
		{"localhost:9092", true},
		{":9092", false},
		{"0.0.0.0:9092", false},
		{"[::]:9092", false},
		{"10.0.0.7:9092", false},
		{"gateway.internal:9092", false},
		{"127.0.0.1", false}, // not host:port
	}
	for _, tt := range tests {
		if got := loopbackAddr(tt.addr); got != tt.want {
			t.Errorf("loopbackAddr(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// TestAuthListenerWarning: serve warns at start when listen.auth is not a loopback address and
// no forward_auth_token is set (docs/reference.md §4.1), and only then.
func TestAuthListenerWarning(t *testing.T) {
	tests := []struct {
		auth, token string
		warn        bool
	}{
		{":9092", "", true},
		{"0.0.0.0:9092", "", true},
		{"0.0.0.0:9092", "ingress-secret", false},
		{"127.0.0.1:9092", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.auth+" token="+tt.token, func(t *testing.T) {
			cfg := demoConfig("http://127.0.0.1:1", "http://127.0.0.1:2", time.Minute)
			cfg.Listen.Auth, cfg.Security.ForwardAuthToken = tt.auth, tt.token
			core, logs := observer.New(zap.InfoLevel)
			a, err := newApp(cfg, zap.New(core), appOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			var lns [3]net.Listener
			for i := range lns { // the test binds loopback whatever the configuration says
				if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- a.serve(ctx, lns[0], lns[1], lns[2]) }()
			testutil.EventuallyTrue(t, 10*time.Second, "serve to start", func() bool {
				return logs.FilterMessage("gateway serving").Len() > 0
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("serve: %v", err)
			}
			warned := 0
			for _, e := range logs.FilterLevelExact(zap.WarnLevel).All() {
				if strings.Contains(e.Message, "listen.auth") {
					warned++
				}
			}
			if (warned == 1) != tt.warn || warned > 1 {
				t.Errorf("%d listen.auth warnings, want warn=%v", warned, tt.warn)
			}
			serving := logs.FilterMessage("gateway serving").All()[0].ContextMap()
			if serving["auth"] != lns[2].Addr().String() {
				t.Errorf("serving line names auth %v, want %s", serving["auth"], lns[2].Addr())
			}
		})
	}
}

// TestAuthListenerTLS: with listen.tls_cert_file and tls_key_file the auth listener serves HTTPS
// like the proxy listener (docs/reference.md §3), with the same certificate.
func TestAuthListenerTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "gateway test CA")
	dir := tlstest.NewSecretDir(t, ca.Issue(t))
	s := newStack(t, time.Minute)
	r := s.start(func(c *config.Config) {
		c.Listen.Auth = "on"
		c.Listen.TLSCertFile, c.Listen.TLSKeyFile = dir.CertFile(), dir.KeyFile()
	})
	now := time.Now() // a stored connection: onboarding would need the proxy listener over HTTPS
	if _, err := r.app.store.PutConnection(t.Context(), tokens.Connection{User: "alice", Status: tokens.StatusActive,
		Scopes: []string{"connect", "read"}, AccessToken: "tok-tls", RefreshToken: "rt", IssuedAt: now,
		AccessExpiresAt: now.Add(time.Hour), RefreshExpiresAt: now.Add(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	_, key, err := r.app.store.IssueKey(t.Context(), "alice", nil, "tls", "")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig()}, Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, strings.Replace(r.authURL, "http://", "https://", 1)+"/forward-auth", nil)
	req.Header.Set("X-Forwarded-Method", "GET")
	req.Header.Set("X-Forwarded-Uri", "/api/v1/movies")
	req.Header.Set("X-Api-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("check over HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.Header.Get("Authorization") != "Bearer tok-tls" {
		t.Errorf("check over HTTPS: %d, TLS %v, Authorization set %v", resp.StatusCode, resp.TLS != nil, resp.Header.Get("Authorization") != "")
	}
}
