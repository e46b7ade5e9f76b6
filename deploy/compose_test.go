package deploy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/internal/testutil"
)

// deploy/compose is checked without a container engine: the real docker-compose validates and
// resolves the file, the gateway configuration it mounts is loaded with the environment it sets
// (as check-config does), and the one-shot onboarding script runs for real against the gateway
// and the simulator started from the built binary on loopback.

const composeFile = "compose/compose.yaml"

// need returns the path of a binary the test needs. Without it the test is skipped, unless CI is
// set: CI must have it.
func need(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found but CI is set: .ci/run must install it (Debian package %s)", name, pkg)
		}
		t.Skipf("%s not installed (Debian package %s): skipping", name, pkg)
	}
	return p
}

// composeConfig is the part of docker-compose config's answer the test reads.
type composeConfig struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		ReadOnly    bool              `yaml:"read_only"`
		User        string            `yaml:"user"`
		CapDrop     []string          `yaml:"cap_drop"`
		Volumes     []string          `yaml:"volumes"`
		Build       *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
	} `yaml:"services"`
}

// resolvedCompose runs docker-compose config: it validates the file and prints it resolved
// (variables filled in with their defaults, paths made absolute).
func resolvedCompose(t *testing.T) composeConfig {
	t.Helper()
	bin := need(t, "docker-compose", "docker-compose")
	cmd := exec.CommandContext(t.Context(), bin, "-f", composeFile, "config")
	// Only the defaults written in the file: no variable of this machine leaks in.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, stderr.String())
	}
	var cc composeConfig
	if err := yaml.Unmarshal(out, &cc); err != nil {
		t.Fatalf("docker-compose config printed no YAML: %v\n%s", err, out)
	}
	return cc
}

// bindMounts returns host path → container path of a service's bind mounts.
func bindMounts(volumes []string) map[string]string {
	out := map[string]string{}
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && strings.HasPrefix(parts[0], "/") {
			out[parts[0]] = parts[1]
		}
	}
	return out
}

func TestCompose(t *testing.T) {
	t.Parallel()
	cc := resolvedCompose(t)
	want := []string{"academy", "gateway", "grafana", "onboard", "prometheus", "redis"}
	var got []string
	for name := range cc.Services {
		got = append(got, name)
	}
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Fatalf("services %v, want %v", got, want)
	}

	redis := cc.Services["redis"]
	cmd := strings.Join(redis.Command, " ")
	for _, flag := range []string{"--appendonly yes", "--maxmemory-policy noeviction"} {
		if !strings.Contains(cmd, flag) {
			t.Errorf("redis command %q lacks %s", cmd, flag)
		}
	}

	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gateway", "academy"} {
		s := cc.Services[name]
		if s.Build == nil || s.Build.Context != root || s.Build.Dockerfile != "Dockerfile" {
			t.Errorf("%s: build %+v, want the repository's Dockerfile", name, s.Build)
		}
		if !s.ReadOnly || s.User != "65532:65532" || !slices.Equal(s.CapDrop, []string{"ALL"}) {
			t.Errorf("%s: read_only %v, user %q, cap_drop %v: want a read-only root, the image's user, no capabilities", name, s.ReadOnly, s.User, s.CapDrop)
		}
	}
	// Every bind-mounted file exists, and Prometheus and Grafana get the shipped artefacts.
	for name, s := range cc.Services {
		for host := range bindMounts(s.Volumes) {
			if _, err := os.Stat(host); err != nil {
				t.Errorf("%s mounts %s: %v", name, host, err)
			}
		}
	}
	for svc, file := range map[string]string{"prometheus": alertsFile, "grafana": dashboardFile} {
		abs, _ := filepath.Abs(file)
		if _, ok := bindMounts(cc.Services[svc].Volumes)[abs]; !ok {
			t.Errorf("%s does not mount the shipped %s", svc, file)
		}
	}

	t.Run("gateway configuration passes check-config", func(t *testing.T) {
		gw := cc.Services["gateway"]
		var file string
		for host, target := range bindMounts(gw.Volumes) {
			if slices.Contains(gw.Command, target) {
				file = host
			}
		}
		if file == "" {
			t.Fatalf("the gateway's --config file (%v) is not among its mounts %v", gw.Command, gw.Volumes)
		}
		for name := range gw.Environment {
			if strings.HasPrefix(name, config.EnvPrefix) && !slices.Contains(config.EnvVars(), name) {
				t.Errorf("gateway environment %s is not a configuration override", name)
			}
		}
		cfg, err := config.LoadEnv(file, func(k string) string { return gw.Environment[k] }, environ(gw.Environment))
		if err != nil {
			t.Fatalf("check-config would fail on %s: %v", file, err)
		}
		if cfg.Security.AdminToken == "" {
			t.Error("no admin token: the onboarding step needs the admin API")
		}
		if cfg.OAuth.ExpiresInUnit.D() != time.Minute || !slices.Equal(cc.Services["academy"].Command[len(cc.Services["academy"].Command)-2:], []string{"--minute", "1m"}) {
			t.Errorf("oauth.expires_in_unit %v and the simulator's %v must agree", cfg.OAuth.ExpiresInUnit.D(), cc.Services["academy"].Command)
		}
		if got, want := cc.Services["onboard"].Environment["ADMIN_TOKEN"], cfg.Security.AdminToken; got != want {
			t.Errorf("onboard's ADMIN_TOKEN %q is not the gateway's admin token %q", got, want)
		}
	})

	t.Run("prometheus configuration", func(t *testing.T) {
		runPromtool(t, nil, "check", "config", "--syntax-only", "compose/prometheus.yml")
	})
}

// gatewayBinary builds the gateway from the repository into a temporary directory.
func gatewayBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "academy-gateway")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/academy-gateway")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs the binary until the test ends.
func start(t *testing.T, bin string, env []string, args ...string) *syncBuffer {
	t.Helper()
	var logs syncBuffer
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return &logs
}

// waitHTTP polls url until it answers (with 200 when want200), for at most 20 s.
func waitHTTP(t *testing.T, url string, want200 bool, logs *syncBuffer) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	testutil.EventuallyEvery(t, 20*time.Second, 20*time.Millisecond, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", url, err, logs.String())
		}
		resp.Body.Close()
		if want200 && resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %s\n%s", url, resp.Status, logs.String())
		}
		return nil
	})
}

// TestComposeOnboarding runs compose/onboard.sh against the gateway configured by
// compose/gateway.yaml (addresses moved to loopback ports) and the simulator: it must connect the
// demo user and print a curl line whose key works.
func TestComposeOnboarding(t *testing.T) {
	t.Parallel()
	need(t, "curl", "curl")
	cc := resolvedCompose(t)
	rs := redistest.Start(t)
	bin := gatewayBinary(t)

	simAddr, proxyAddr, opsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	_, simPort, _ := net.SplitHostPort(simAddr)
	_, proxyPort, _ := net.SplitHostPort(proxyAddr)
	simLogs := start(t, bin, nil, "sim", "--listen", simAddr, "--minute", "1m")
	env := []string{
		"ACADEMY_GATEWAY_LISTEN_PROXY=" + proxyAddr,
		"ACADEMY_GATEWAY_LISTEN_OPS=" + opsAddr,
		"ACADEMY_GATEWAY_UPSTREAM_BASE_URL=http://" + simAddr,
		"ACADEMY_GATEWAY_OAUTH_AUTHORIZE_URL=http://localhost:" + simPort + "/authorize",
		"ACADEMY_GATEWAY_OAUTH_TOKEN_URL=http://" + simAddr + "/token",
		"ACADEMY_GATEWAY_OAUTH_REFRESH_URL=http://" + simAddr + "/refresh",
		"ACADEMY_GATEWAY_OAUTH_INVALIDATE_URL=http://" + simAddr + "/invalidate",
		"ACADEMY_GATEWAY_OAUTH_REDIRECT_URL=http://localhost:" + proxyPort + "/oauth/callback",
		"ACADEMY_GATEWAY_REDIS_URL=" + rs.URL(),
	}
	for k, v := range cc.Services["gateway"].Environment {
		env = append(env, k+"="+v)
	}
	gwLogs := start(t, bin, env, "serve", "--config", "compose/gateway.yaml")
	waitHTTP(t, "http://"+simAddr+"/", false, simLogs)
	waitHTTP(t, "http://"+opsAddr+"/readyz", true, gwLogs)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	sh := exec.CommandContext(ctx, "sh", "compose/onboard.sh")
	sh.Env = []string{"PATH=" + os.Getenv("PATH"), "OPS_URL=http://" + opsAddr,
		"ADMIN_TOKEN=" + cc.Services["onboard"].Environment["ADMIN_TOKEN"]}
	var stderr bytes.Buffer
	sh.Stderr = &stderr
	out, err := sh.Output()
	if err != nil {
		t.Fatalf("onboard.sh: %v\n%s%s\ngateway:\n%s", err, out, stderr.String(), gwLogs.String())
	}
	m := regexp.MustCompile(`curl -s -H 'x-api-key: ([^']+)' http://localhost:8080(/api/v1/movies)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("onboard.sh printed no curl line:\n%s", out)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+proxyAddr+string(m[2]), nil)
	req.Header.Set("x-api-key", string(m[1]))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the printed curl line answered %s: %s", resp.Status, body)
	}
	t.Logf("onboard.sh printed:\n%s", out)
}

// syncBuffer collects a process's output while the test may read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
