package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// buildBinary compiles ./cmd/academy-gateway into a temporary directory, from the module root
// that `go env GOMOD` names, and returns the binary's path.
func buildBinary(t *testing.T, ctx context.Context) string {
	t.Helper()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		t.Fatalf("not inside a module (GOMOD=%q)", mod)
	}
	bin := filepath.Join(t.TempDir(), "academy-gateway")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/academy-gateway")
	build.Dir = filepath.Dir(mod)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// The curl lines demo prints: the read and the refused delete.
var (
	demoGetLine    = regexp.MustCompile(`^curl -s -H 'x-api-key: ([^']+)' (http://127\.0\.0\.1:\d+/api/v1/movies)$`)
	demoDeleteLine = regexp.MustCompile(`^curl -s -X DELETE -H 'x-api-key: ([^']+)' (http://127\.0\.0\.1:\d+/api/v1/movies/[^ ]+)$`)
)

// TestDemoBinary runs the real binary's demo command: once it prints its curl lines, the printed
// read works with the printed key (200, movies), the printed delete is refused
// (403 insufficient_scope), and SIGINT stops it cleanly (status 0) within 10 s.
func TestDemoBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGINT delivery to a child process")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute) // build included, for cold CI caches
	defer cancel()
	bin := buildBinary(t, ctx)

	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	cmd := exec.CommandContext(rctx, bin, "demo", "--proxy-listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0")
	cmd.Env = []string{"HOME=" + t.TempDir()} // nothing from the developer's environment
	cmd.WaitDelay = 5 * time.Second
	stdoutR, stdoutW := io.Pipe()
	stderr := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdoutW, stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start demo: %v", err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		stdoutW.Close() // the reader sees EOF once the process and its output are done
		close(exited)
	}()
	t.Cleanup(func() {
		// Whatever happened, never leave the process behind.
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdoutR)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody listens any more; keep draining so the process never blocks
			}
		}
		_, _ = io.Copy(io.Discard, stdoutR)
	}()

	var get, del []string
	var printed strings.Builder
	for del == nil {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("demo ended its output before the curl lines:\n%s\nstderr:\n%s", printed.String(), stderr.String())
			}
			printed.WriteString(line + "\n")
			if m := demoGetLine.FindStringSubmatch(line); m != nil && get == nil {
				get = m
			}
			if m := demoDeleteLine.FindStringSubmatch(line); m != nil {
				del = m
			}
		case <-rctx.Done():
			t.Fatalf("demo printed no curl lines in time:\n%s\nstderr:\n%s", printed.String(), stderr.String())
		}
	}
	if get == nil {
		t.Fatalf("demo printed a DELETE line but no GET line:\n%s", printed.String())
	}
	if get[1] != del[1] {
		t.Errorf("the GET and DELETE lines use different keys")
	}
	if !strings.HasPrefix(get[1], "agw_") {
		t.Errorf("demo key %q is not an issued agw_ key", get[1])
	}

	status, body := call(t, http.MethodGet, get[2], get[1], "")
	var movies struct {
		Movies []json.RawMessage `json:"movies"`
	}
	if err := json.Unmarshal([]byte(body), &movies); status != http.StatusOK || err != nil || len(movies.Movies) == 0 {
		t.Errorf("printed GET = %d %s, want 200 with movies", status, body)
	}

	req, err := http.NewRequestWithContext(rctx, http.MethodDelete, del[2], nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-api-key", del[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("printed DELETE: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || errorCode(t, string(b)) != "insufficient_scope" ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Errorf("printed DELETE = %d %s (WWW-Authenticate %q), want 403 insufficient_scope",
			resp.StatusCode, b, resp.Header.Get("WWW-Authenticate"))
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("interrupt demo: %v", err)
	}
	select {
	case <-exited:
		if waitErr != nil || cmd.ProcessState.ExitCode() != 0 {
			t.Errorf("demo exited with %v after SIGINT, want status 0\nstderr:\n%s", waitErr, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("demo still running 10 s after SIGINT\nstderr:\n%s", stderr.String())
	}
	// demo chooses the embedded Redis itself: nothing to warn about; stderr is a pipe: no colour.
	if logs := stderr.String(); strings.Contains(logs, "redis.url is empty") || strings.Contains(logs, "WARN") {
		t.Errorf("demo warned about its own embedded Redis:\n%s", logs)
	}
	if logs := stderr.String(); strings.Contains(logs, "\x1b[") {
		t.Errorf("demo wrote colour codes to a pipe:\n%q", logs)
	}
}
