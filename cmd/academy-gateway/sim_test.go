package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/sim"
)

// TestSimPrintsConfig: `sim --minute 1s` prints its address and a gateway configuration that
// loads as is (given the encryption key), names the simulator's endpoints, and sets
// oauth.expires_in_unit to the simulator's minute: the mismatch that made the gateway believe
// tokens live 60 times longer than they do. The printed credentials are the simulator's.
func TestSimPrintsConfig(t *testing.T) {
	t.Parallel()
	for _, minute := range []string{"1s", "250ms"} {
		t.Run(minute, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			out, w := io.Pipe()
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, []string{"sim", "--listen", "127.0.0.1:0", "--minute", minute}, mapEnv(nil), w, io.Discard)
				w.Close()
			}()
			var printed bytes.Buffer
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				printed.WriteString(sc.Text() + "\n")
				if strings.HasPrefix(sc.Text(), "  encryption_keys:") {
					break
				}
			}
			go io.Copy(io.Discard, out)
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("sim: %v", err)
				}
			}()

			head, yamlText, ok := strings.Cut(printed.String(), "\n\n")
			m := regexp.MustCompile(`^Academy API v2 simulator on (http://127\.0\.0\.1:\d+) \(one Academy minute lasts ` + minute + `\)$`).FindStringSubmatch(head)
			if !ok || m == nil {
				t.Fatalf("sim printed:\n%s", printed.String())
			}
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(yamlText), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(path, mapEnv(map[string]string{"ACADEMY_GATEWAY_ENCRYPTION_KEY": cliEncryptionKey}))
			if err != nil {
				t.Fatalf("the printed configuration does not load: %v\n%s", err, yamlText)
			}
			want, _ := time.ParseDuration(minute)
			base := m[1]
			got := []string{cfg.Upstream.BaseURL, cfg.OAuth.AuthorizeURL, cfg.OAuth.TokenURL, cfg.OAuth.RefreshURL, cfg.OAuth.InvalidateURL,
				cfg.OAuth.ClientID, cfg.OAuth.ClientSecret}
			wantURLs := []string{base, base + "/authorize", base + "/token", base + "/refresh", base + "/invalidate",
				sim.DefaultClientID, sim.DefaultClientSecret}
			if cfg.OAuth.ExpiresInUnit.D() != want || strings.Join(got, " ") != strings.Join(wantURLs, " ") {
				t.Errorf("printed configuration: expires_in_unit %s, endpoints and credentials %q; want %s and %q",
					cfg.OAuth.ExpiresInUnit.D(), got, want, wantURLs)
			}
			// The printed credentials are the simulator's: a made-up code is refused with 400
			// (bad grant), not 401 (bad client).
			body, _ := json.Marshal(map[string]string{"grant_type": "authorization_code", "code": "made-up",
				"client_id": cfg.OAuth.ClientID, "client_secret": cfg.OAuth.ClientSecret, "redirect_uri": cfg.OAuth.RedirectURL})
			resp, err := http.Post(cfg.OAuth.TokenURL, "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("token request with the printed credentials: %s, want 400 (credentials accepted)", resp.Status)
			}
		})
	}
}

// TestSimConfigCustomSecret: a simulator started with its own --client-secret prints a
// reference to ACADEMY_CLIENT_SECRET, not the secret.
func TestSimConfigCustomSecret(t *testing.T) {
	t.Parallel()
	text := simConfig("http://127.0.0.1:1", time.Second, "cid", "my-own-secret-value")
	if strings.Contains(text, "my-own-secret-value") || !strings.Contains(text, `client_secret: "${ACADEMY_CLIENT_SECRET}"`) {
		t.Errorf("simConfig with a custom secret:\n%s", text)
	}
}

// TestReadmeSimulatorConfig: the README's simulator section holds a complete configuration that
// loads and matches `sim --minute 1s` on 127.0.0.1:8081: the unit equals the minute.
func TestReadmeSimulatorConfig(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "### The simulator")
	if !ok {
		t.Fatal(`README.md has no "### The simulator" section`)
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("the simulator section has no yaml block")
	}
	if want := simConfig("http://127.0.0.1:8081", time.Second, sim.DefaultClientID, sim.DefaultClientSecret); block != want {
		t.Errorf("README simulator configuration differs from what `sim --listen 127.0.0.1:8081 --minute 1s` prints:\n--- README\n%s\n--- sim\n%s", block, want)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, mapEnv(map[string]string{"ACADEMY_GATEWAY_ENCRYPTION_KEY": cliEncryptionKey}))
	if err != nil {
		t.Fatalf("README simulator configuration: %v", err)
	}
	if cfg.OAuth.ExpiresInUnit.D() != time.Second {
		t.Errorf("README simulator configuration: expires_in_unit %s, want 1s", cfg.OAuth.ExpiresInUnit.D())
	}
}
