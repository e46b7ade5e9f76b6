package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// crashAcademy is the Academy for the crash test: /refresh rotates refresh tokens (a spent one
// is refused with 400 and counted) and holds every refresh until the test lets it go; any other
// path is the API, answering 200 to any bearer token.
type crashAcademy struct {
	mu      sync.Mutex
	live    map[string]bool
	calls   int
	reused  int
	release chan struct{}
}

func (f *crashAcademy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/refresh" {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"movies":[]}`)
		return
	}
	var body struct {
		RefreshToken string `json:"refresh_token"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	select { // held: the replica that sent it is killed meanwhile
	case <-f.release:
	case <-r.Context().Done():
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.live[body.RefreshToken] { // the Academy would see a replayed token here
		f.reused++
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"message":"Refresh token has already been used."}}`)
		return
	}
	delete(f.live, body.RefreshToken) // rotated, whether or not the caller hears the answer
	f.live["rt_2"] = true
	io.WriteString(w, `{"access_token":"at_2","expires_in":5,"refresh_token":"rt_2","refresh_expires_in":60}`)
}

func (f *crashAcademy) seen() (calls, reused int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.reused
}

// TestReplicaKilledMidRefresh: issue 14 "Faults", docs/reference.md §4 step 3. Two gateway processes share
// one Redis. The first is SIGKILLed while its refresh is at the Academy (which rotates the
// token when the request completes). The second takes the lease over once it expires, finds the
// refresh-in-flight marker, and ends the connection cleanly as reauth_required: the caller gets
// 401 reauthorization_required and the possibly spent refresh token is never sent again.
func TestReplicaKilledMidRefresh(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGKILL")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute) // build included
	defer cancel()
	bin := buildBinary(t, ctx)
	rs := redistest.Start(t)
	academy := &crashAcademy{live: map[string]bool{"rt_1": true}, release: make(chan struct{})}
	srv := httptest.NewServer(academy)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(academy.release) }) // runs first: lets held handlers end

	cfg := demoConfig(srv.URL, "http://127.0.0.1:1", time.Minute)
	cfg.Redis.URL = rs.URL()
	cfg.OAuth.KeepAlive = false

	// The user, connected with an expired access token: the first request refreshes.
	kr, err := tokens.NewKeyring(cfg.Security.EncryptionKeys)
	if err != nil {
		t.Fatal(err)
	}
	store := tokens.NewStore(rs.Client(t), cfg.Redis.KeyPrefix, kr, metrics.New(prometheus.NewRegistry(), "test"), nil)
	now := time.Now()
	if _, err := store.PutConnection(ctx, tokens.Connection{User: "kai", Status: tokens.StatusActive, Scopes: []string{"connect", "read"},
		AccessToken: "at_1", RefreshToken: "rt_1", IssuedAt: now.Add(-10 * time.Minute), AccessExpiresAt: now.Add(-time.Minute),
		RefreshExpiresAt: now.Add(time.Hour), UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	_, key, err := store.IssueKey(ctx, "kai", nil, "crash", "")
	if err != nil {
		t.Fatal(err)
	}

	type process struct {
		cmd      *exec.Cmd
		proxyURL string
		exited   chan struct{}
	}
	start := func(name string) *process {
		t.Helper()
		c := cfg
		c.Listen.Proxy, c.Listen.Ops = freeAddr(t), freeAddr(t)
		c.OAuth.RedirectURL = "http://" + c.Listen.Proxy + "/oauth/callback"
		p := &process{cmd: exec.Command(bin, "serve", "--config", writeConfig(t, string(c.YAML()))),
			proxyURL: "http://" + c.Listen.Proxy, exited: make(chan struct{})}
		logs := &syncBuffer{}
		p.cmd.Stdout, p.cmd.Stderr = logs, logs
		p.cmd.Env = []string{"HOME=" + t.TempDir()}
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		go func() { _ = p.cmd.Wait(); close(p.exited) }()
		t.Cleanup(func() {
			_ = p.cmd.Process.Kill()
			<-p.exited
			if t.Failed() {
				t.Logf("%s's log:\n%s", name, logs.String())
			}
		})
		testutil.Eventually(t, 20*time.Second, func() error {
			resp, err := http.Get("http://" + c.Listen.Ops + "/readyz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: /readyz = %d", name, resp.StatusCode)
			}
			return nil
		})
		return p
	}
	a, b := start("replica a"), start("replica b")

	get := func(p *process) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.proxyURL+"/api/v1/movies", nil)
		req.Header.Set("X-Api-Key", key)
		return (&http.Client{Timeout: time.Minute}).Do(req)
	}
	go func() { // never answered: replica a dies with the refresh at the Academy
		if resp, err := get(a); err == nil {
			resp.Body.Close()
		}
	}()
	testutil.Eventually(t, 20*time.Second, func() error {
		if calls, _ := academy.seen(); calls != 1 {
			return errors.New("replica a's refresh has not reached the Academy")
		}
		return nil
	})
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatalf("SIGKILL replica a: %v", err)
	}
	<-a.exited

	resp, err := get(b) // waits for a's lease to expire (10 s), then finds the marker
	if err != nil {
		t.Fatalf("request through replica b: %v", err)
	}
	defer resp.Body.Close()
	var body resErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusUnauthorized || body.Error.Code != "reauthorization_required" {
		t.Errorf("replica b answered %d %+v (%v), want 401 reauthorization_required", resp.StatusCode, body, err)
	}
	if c, marker, err := store.RefreshState(ctx, "kai"); err != nil || c.Status != tokens.StatusReauthRequired || !marker.IsZero() {
		t.Errorf("stored connection = %q, marker %+v (%v); want reauth_required without marker", c.Status, marker, err)
	}
	if calls, reused := academy.seen(); calls != 1 || reused != 0 {
		t.Errorf("the Academy saw %d refreshes and %d reused tokens, want 1 and 0: the spent token was replayed", calls, reused)
	}
}
