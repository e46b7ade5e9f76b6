package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/academy-gateway/academy-gateway/internal/tlstest"
	"github.com/academy-gateway/academy-gateway/sim"
)

// The container image (Dockerfile) is built and run here without a container engine: buildah
// builds the Dockerfile's real final stage offline from scratch, with --build-context standing in
// for the build stage (a named context takes precedence over a stage of the same name, so the
// build stage, which pulls a Go image, is never run); the binary for it is built here with the
// Dockerfile's own go build flags. The image's root filesystem is then entered with chroot as the
// image's user, where the binary prints its version, checks the configuration against a local
// HTTPS Academy whose CA the test appended to the image's CA bundle, and serves.

// imageUser is the numeric user the Dockerfile runs as.
const imageUser = "65532:65532"

// imageMaxBytes bounds the image: a static binary and a CA bundle.
const imageMaxBytes = 40 << 20

// Stamped into the test build, as the Dockerfile's VERSION and COMMIT build arguments do.
const (
	imageVersion = "v0.0.0-imagetest"
	imageCommit  = "0123456789abcdef0123456789abcdef01234567"
)

// buildahBin returns buildah's path. Without buildah (or without root, which chroot needs) the
// test is skipped, unless CI is set: CI must build the image.
func buildahBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("buildah")
	switch {
	case err != nil && os.Getenv("CI") != "":
		t.Fatalf("buildah not found but CI is set: .ci/run must install it (%v)", err)
	case err != nil:
		t.Skip("buildah not installed (apt-get install buildah); skipping the image test")
	case os.Geteuid() != 0 && os.Getenv("CI") != "":
		t.Fatal("the image test needs root (chroot into the image) and CI is set")
	case os.Geteuid() != 0:
		t.Skip("the image test needs root (chroot into the image); skipping")
	}
	return bin
}

// buildah runs buildah commands on a storage of its own under dir (vfs: no fuse, no overlay).
type buildah struct {
	t   *testing.T
	bin string
	dir string
}

func (b buildah) run(t *testing.T, args ...string) string {
	t.Helper()
	global := []string{"--root", filepath.Join(b.dir, "root"), "--runroot", filepath.Join(b.dir, "run"), "--storage-driver", "vfs"}
	cmd := exec.CommandContext(t.Context(), b.bin, append(global, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("buildah %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// cleanup runs buildah in a cleanup, where a failure is reported but does not stop the others.
func (b buildah) cleanup(args ...string) {
	global := []string{"--root", filepath.Join(b.dir, "root"), "--runroot", filepath.Join(b.dir, "run"), "--storage-driver", "vfs"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, b.bin, append(global, args...)...).CombinedOutput(); err != nil {
		b.t.Errorf("cleanup: buildah %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// dockerfileBuildFlags are what the Dockerfile's build stage must say for the binary built here
// to be the one it builds.
var dockerfileBuildFlags = []string{
	"ENV GOTOOLCHAIN=go1.27.3 CGO_ENABLED=0",
	`go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}"`,
	"-o /out/academy-gateway ./cmd/academy-gateway",
	"cp /etc/ssl/certs/ca-certificates.crt /out/ca-certificates.crt",
}

// buildContext builds the stand-in for the Dockerfile's build stage into dir/out: the binary,
// built with the Dockerfile's flags, and the host's CA bundle with extraCA appended.
func buildContext(t *testing.T, dir string, extraCA []byte) {
	t.Helper()
	out := filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "go", "build", "-trimpath",
		"-ldflags", "-s -w -X main.version="+imageVersion+" -X main.commit="+imageCommit,
		"-o", filepath.Join(out, "academy-gateway"), ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=go1.27.3", "GOFLAGS=-buildvcs=false")
	began := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	t.Logf("go build of the image's binary: %v", time.Since(began).Round(time.Millisecond))
	bundle, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt") // Debian's, as in the golang image
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	bundle = append(append(bundle, '\n'), extraCA...)
	if err := os.WriteFile(filepath.Join(out, "ca-certificates.crt"), bundle, 0o644); err != nil {
		t.Fatal(err)
	}
}

// imageConfig is the part of the OCI image configuration the test checks.
type imageConfig struct {
	User         string              `json:"User"`
	Entrypoint   []string            `json:"Entrypoint"`
	Cmd          []string            `json:"Cmd"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts"`
	Labels       map[string]string   `json:"Labels"`
	Env          []string            `json:"Env"`
}

func TestImage(t *testing.T) {
	t.Parallel()
	bin := buildahBin(t)
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range dockerfileBuildFlags {
		if !bytes.Contains(dockerfile, []byte(want)) {
			t.Fatalf("the Dockerfile no longer says %q: bring this test's stand-in build in step with it", want)
		}
	}

	ca := tlstest.NewCA(t, "academy-gateway image test CA")
	issued := ca.Issue(t) // for 127.0.0.1
	leaf, err := tls.X509KeyPair(issued.CertPEM, issued.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	ctxDir := filepath.Join(work, "context")
	buildContext(t, ctxDir, ca.PEM)
	b := buildah{t: t, bin: bin, dir: filepath.Join(work, "storage")}
	const tag = "localhost/academy-gateway:imagetest"
	began := time.Now()
	b.run(t, "bud", "--isolation", "chroot", "--pull-never", "--build-context", "build="+ctxDir,
		"--build-arg", "VERSION="+imageVersion, "--build-arg", "COMMIT="+imageCommit,
		"-f", "../../Dockerfile", "-t", tag, "../..")
	t.Cleanup(func() { b.cleanup("rmi", "--force", tag) })
	t.Logf("buildah bud of the final stage: %v", time.Since(began).Round(time.Millisecond))

	t.Run("configuration", func(t *testing.T) {
		var inspected struct {
			OCIv1 struct {
				Config imageConfig `json:"config"`
			}
			Manifest string // JSON
		}
		if err := json.Unmarshal([]byte(b.run(t, "inspect", "--type", "image", tag)), &inspected); err != nil {
			t.Fatal(err)
		}
		cfg := inspected.OCIv1.Config
		want := imageConfig{
			User: imageUser, Entrypoint: []string{"/academy-gateway"}, Cmd: []string{"serve"},
			ExposedPorts: map[string]struct{}{"8080/tcp": {}, "9090/tcp": {}, "8082/tcp": {}},
		}
		got := cfg
		got.Labels, got.Env = nil, nil
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("image configuration (-want +got):\n%s", diff)
		}
		if uid, _, _ := strings.Cut(cfg.User, ":"); uid == "0" || uid == "" || strings.Trim(uid, "0123456789") != "" {
			t.Errorf("user %q, want a numeric non-root uid", cfg.User)
		}
		for k, v := range map[string]string{
			"org.opencontainers.image.title": "academy-gateway", "org.opencontainers.image.licenses": "Apache-2.0",
			"org.opencontainers.image.version": imageVersion, "org.opencontainers.image.revision": imageCommit,
		} {
			if cfg.Labels[k] != v {
				t.Errorf("label %s = %q, want %q", k, cfg.Labels[k], v)
			}
		}
		var manifest struct {
			Layers []struct {
				Size int64 `json:"size"`
			} `json:"layers"`
		}
		if err := json.Unmarshal([]byte(inspected.Manifest), &manifest); err != nil {
			t.Fatal(err)
		}
		var size int64
		for _, l := range manifest.Layers {
			size += l.Size
		}
		t.Logf("image size: %d bytes in %d layers (%.1f MiB, uncompressed)", size, len(manifest.Layers), float64(size)/(1<<20))
		if size <= 0 || size > imageMaxBytes {
			t.Errorf("image size %d bytes, want at most %d", size, imageMaxBytes)
		}
	})

	container := b.run(t, "from", "--pull-never", tag)
	t.Cleanup(func() { b.cleanup("rm", container) })
	rootfs := b.run(t, "mount", container)
	t.Cleanup(func() { b.cleanup("umount", container) })

	t.Run("filesystem", func(t *testing.T) {
		var files []string
		err := filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(rootfs, p)
			files = append(files, "/"+rel)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"/academy-gateway", "/etc/ssl/certs/ca-certificates.crt"}, files); diff != "" {
			t.Errorf("files in the image (-want +got):\n%s", diff)
		}
		f, err := elf.Open(filepath.Join(rootfs, "academy-gateway"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
			t.Error("the binary has an ELF interpreter: it is not static (CGO_ENABLED=0)")
		}
	})

	// inImage runs the image's binary in its root filesystem as the image's user, with only env
	// as its environment.
	inImage := func(ctx context.Context, env []string, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, "chroot", append([]string{"--userspec=" + imageUser, rootfs, "/academy-gateway"}, args...)...)
		cmd.Env = env
		cmd.Dir = "/"
		return cmd
	}

	t.Run("version", func(t *testing.T) {
		out, err := inImage(t.Context(), nil, "version").CombinedOutput()
		if err != nil {
			t.Fatalf("version: %v\n%s", err, out)
		}
		want := "academy-gateway " + imageVersion + " (commit " + imageCommit + ", go1.27.3)\n"
		if diff := cmp.Diff(want, string(out)); diff != "" {
			t.Errorf("version (-want +got):\n%s", diff)
		}
	})

	rs := redistest.Start(t)
	trusted := httptest.NewUnstartedServer(sim.New(sim.Options{}))
	trusted.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	trusted.StartTLS()
	t.Cleanup(trusted.Close)
	untrusted := httptest.NewUnstartedServer(sim.New(sim.Options{})) // httptest's own certificate
	untrusted.Config.ErrorLog = zap.NewStdLog(zap.NewNop())          // the refused handshake is the point
	untrusted.StartTLS()
	t.Cleanup(untrusted.Close)
	gatewayEnv := func(tokenURL string) []string {
		return []string{
			"ACADEMY_GATEWAY_LISTEN_PROXY=" + freeAddr(t),
			"ACADEMY_GATEWAY_LISTEN_OPS=" + freeAddr(t),
			"ACADEMY_GATEWAY_UPSTREAM_BASE_URL=" + trusted.URL,
			"ACADEMY_GATEWAY_OAUTH_CLIENT_ID=" + sim.DefaultClientID,
			"ACADEMY_GATEWAY_OAUTH_CLIENT_SECRET=" + sim.DefaultClientSecret,
			"ACADEMY_GATEWAY_OAUTH_TOKEN_URL=" + tokenURL,
			"ACADEMY_GATEWAY_REDIS_URL=" + rs.URL(),
			"ACADEMY_GATEWAY_SECURITY_ENCRYPTION_KEYS=" + cliEncryptionKey,
		}
	}

	t.Run("check-config --connect over TLS", func(t *testing.T) {
		tests := []struct {
			name     string
			tokenURL string
			want     string
			exit     int
		}{
			{"CA in the image's bundle", trusted.URL + "/token", "academy: ok (" + trusted.URL + "/token accepts the client credentials", 0},
			{"CA not in the bundle", untrusted.URL + "/token", "certificate signed by unknown authority", 1},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				cmd := inImage(t.Context(), gatewayEnv(tc.tokenURL), "check-config", "--connect")
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				code := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if code != tc.exit || !strings.Contains(stdout.String(), tc.want) {
					t.Errorf("exit %d, want %d; stdout lacks %q?\n%s\nstderr:\n%s", code, tc.exit, tc.want, stdout.String(), stderr.String())
				}
				if !strings.Contains(stdout.String(), "redis: ok") {
					t.Errorf("the Redis check did not pass:\n%s", stdout.String())
				}
			})
		}
	})

	t.Run("serve", func(t *testing.T) {
		env := gatewayEnv(trusted.URL + "/token")
		ops := strings.TrimPrefix(env[1], "ACADEMY_GATEWAY_LISTEN_OPS=")
		var logs syncBuffer
		cmd := inImage(context.WithoutCancel(t.Context()), env) // CMD ["serve"] is the default; here spelt out
		cmd.Args = append(cmd.Args, "serve")
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		var waitErr error
		go func() { waitErr = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill() // after a clean exit: "process already finished", ignored
			<-exited
		})
		client := &http.Client{Timeout: time.Second}
		testutil.EventuallyEvery(t, 20*time.Second, 20*time.Millisecond, func() error {
			select {
			case <-exited:
				t.Fatalf("serve exited: %v\n%s", waitErr, logs.String())
			default:
			}
			resp, err := client.Get("http://" + ops + "/readyz")
			if err != nil {
				return fmt.Errorf("serve in the image not ready on %s: %w\n%s", ops, err, logs.String())
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("serve in the image: /readyz answered %s\n%s", resp.Status, logs.String())
			}
			return nil
		})
		// chroot execs the binary, so the signal reaches the gateway itself.
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-exited:
			if waitErr != nil {
				t.Errorf("serve after SIGTERM: %v\n%s", waitErr, logs.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("serve did not stop within 30s of SIGTERM:\n%s", logs.String())
		}
	})
}
