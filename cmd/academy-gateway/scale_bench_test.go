package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/academy-gateway/academy-gateway/keyimport"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// BenchmarkFleetScale measures issue 10's figures: 100,000 keys over 50,000 users, every user connected, in a real
// redis-server on loopback, and the real binary serving over it. Run with
//
//	go test -run XXX -bench BenchmarkFleetScale -benchtime 1x -timeout 20m ./cmd/academy-gateway/
//
// It reports the figures of docs/benchmarks.md ("Fleet scale"); it asserts nothing about speed.
//
// AGW_SCALE_USERS changes the number of users (default 50,000; keys are twice as many), to see
// how the figures grow.
func BenchmarkFleetScale(b *testing.B) {
	scaleUsers := 50_000
	if v, err := strconv.Atoi(os.Getenv("AGW_SCALE_USERS")); err == nil && v > 0 {
		scaleUsers = v
	}
	scaleKeys := 2 * scaleUsers
	ctx := context.Background()
	rs := redistest.Start(b)
	rdb := rs.Client(b)
	const prefix = "scale:"
	kr, err := tokens.NewKeyring([]string{cliEncryptionKey})
	if err != nil {
		b.Fatal(err)
	}
	store := tokens.NewStore(rdb, prefix, kr, metrics.New(prometheus.NewRegistry(), "t"), nil)
	user := func(i int) string { return fmt.Sprintf("user%05d", i%scaleUsers) }

	// Every user connected (active, the refresh token good for 30 days: no keep-alive refresh).
	start := time.Now()
	now := time.Now().UTC()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < scaleUsers; i += 16 {
				if _, err := store.PutConnection(ctx, tokens.Connection{User: user(i), Status: tokens.StatusActive,
					Scopes: []string{"connect", "read"}, AccessToken: "at-" + user(i), RefreshToken: "rt-" + user(i),
					IssuedAt: now, AccessExpiresAt: now.Add(time.Hour), RefreshExpiresAt: now.Add(30 * 24 * time.Hour), UpdatedAt: now}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.Logf("seeded %d connections in %v", scaleUsers, time.Since(start).Round(time.Millisecond))

	entries := make([]tokens.ImportEntry, scaleKeys)
	for i := range entries {
		entries[i] = tokens.ImportEntry{Line: i + 1, User: user(i), Key: fmt.Sprintf("legacy-scale-%06d-0123456789abcdef", i)}
	}
	start = time.Now()
	if _, err := store.ImportKeys(ctx, entries, false); err != nil {
		b.Fatal(err)
	}
	b.Logf("imported %d keys over %d users in %v", scaleKeys, scaleUsers, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	st, err := store.ReindexKeys(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("keys reindex (the one-time migration) of %d keys: %v", st.Keys, time.Since(start).Round(time.Millisecond))

	// A 10,000-line CSV of new keys, through the import engine as `keys import` runs it.
	var csv strings.Builder
	csv.WriteString("user,key,scopes,name\n")
	for i := range 10_000 {
		fmt.Fprintf(&csv, "%s,legacy-file-%06d-0123456789abcdef,read write,batch 2\n", user(i*7), i)
	}
	for _, run := range []struct {
		name string
		dry  bool
	}{{"dry run", true}, {"import", false}, {"re-run (all unchanged)", false}} {
		start = time.Now()
		sum, err := keyimport.Run(ctx, store, strings.NewReader(csv.String()), keyimport.CSV, run.dry)
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		b.Logf("keys import of 10,000 CSV lines, %s: %v (created %d, unchanged %d)", run.name, d.Round(time.Millisecond), sum.Created, sum.Unchanged)
		if run.name == "import" {
			b.ReportMetric(d.Seconds(), "import10k-s")
		}
	}

	// The real binary serving over that Redis.
	bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	bin := scaleBuild(b, bctx)
	opsAddr := freeAddr(b)
	cfg := filepath.Join(b.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(`
listen:
  proxy: "`+freeAddr(b)+`"
  ops: "`+opsAddr+`"
oauth:
  client_id: "c"
  client_secret: "s"
  token_url: "http://127.0.0.1:1/token"
  refresh_url: "http://127.0.0.1:1/refresh"
  invalidate_url: "http://127.0.0.1:1/invalidate"
  redirect_url: "https://gateway.example.test/oauth/callback"
upstream:
  base_url: "http://127.0.0.1:1"
redis:
  url: "`+rs.URL()+`"
  key_prefix: "`+prefix+`"
security:
  encryption_keys: ["`+cliEncryptionKey+`"]
  admin_token: "scale-admin-token"
log:
  level: "warn"
`), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.CommandContext(bctx, bin, "serve", "--config", cfg)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	start = time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	ops := "http://" + opsAddr
	client := &http.Client{Timeout: 30 * time.Second}
	testutil.EventuallyEvery(b, 30*time.Second, time.Millisecond, func() error {
		resp, err := client.Get(ops + "/healthz")
		if err != nil {
			return fmt.Errorf("the gateway did not answer /healthz: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("/healthz = %d", resp.StatusCode)
		}
		return nil
	})
	startup := time.Since(start)
	rssStart := scaleRSS(b, cmd.Process.Pid)
	b.Logf("gateway start-up (exec to /healthz 200): %v, RSS %d MB", startup.Round(time.Millisecond), rssStart>>10)
	b.ReportMetric(startup.Seconds()*1000, "startup-ms")

	// The first background round starts at once; its last step, the walk of the status sets,
	// counts a store operation when it is done.
	var round time.Duration
	var peak int64
	testutil.EventuallyEvery(b, 2*time.Minute, 20*time.Millisecond, func() error {
		peak = max(peak, scaleRSS(b, cmd.Process.Pid))
		if scaleMetric(b, client, ops, `academy_gateway_token_store_operations_total{op="reconcile_status_sets",result="ok"} `) < 1 {
			return fmt.Errorf("the first background round did not finish")
		}
		round = time.Since(start) - startup
		return nil
	})
	if n := scaleMetric(b, client, ops, `academy_gateway_connections{status="active"} `); n != scaleUsers {
		b.Errorf("connections gauge = %d, want %d", n, scaleUsers)
	}
	rssRound := scaleRSS(b, cmd.Process.Pid)
	b.Logf("first background round over %d connections: done within %v of start-up; RSS %d MB after (peak seen %d MB)",
		scaleUsers, round.Round(time.Millisecond), rssRound>>10, peak>>10)
	b.ReportMetric(float64(rssStart>>10), "rss-start-MB")
	b.ReportMetric(float64(rssRound>>10), "rss-after-round-MB")

	timeGets := func(name string, n int, path func(i int) string) {
		var ds []time.Duration
		for i := range n {
			req, _ := http.NewRequest(http.MethodGet, ops+path(i), nil)
			req.Header.Set("Authorization", "Bearer scale-admin-token")
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ds = append(ds, time.Since(t0))
			if resp.StatusCode != 200 {
				b.Fatalf("GET %s: %d", path(i), resp.StatusCode)
			}
		}
		slices.Sort(ds)
		b.Logf("%s: median %v, p99 %v, max %v over %d requests", name, ds[len(ds)/2].Round(10*time.Microsecond),
			ds[len(ds)*99/100].Round(10*time.Microsecond), ds[len(ds)-1].Round(10*time.Microsecond), n)
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, strings.Fields(name)[1]+"-median-ms")
	}
	timeGets("GET /admin/keys?user=U", 500, func(i int) string { return "/admin/keys?user=" + user(i*97) })
	timeGets("GET /admin/users (first page, 100)", 100, func(int) string { return "/admin/users?limit=100" })
	timeGets("GET /admin/users?limit=1000", 20, func(int) string { return "/admin/users?limit=1000" })
	b.Logf("RSS after the admin requests: %d MB", scaleRSS(b, cmd.Process.Pid)>>10)
	for b.Loop() {
	}
}

// scaleBuild compiles the binary (as buildBinary does, for a benchmark).
func scaleBuild(b *testing.B, ctx context.Context) string {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), "academy-gateway")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/academy-gateway")
	build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// scaleRSS reads VmRSS of pid in KiB.
func scaleRSS(b *testing.B, pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// scaleMetric reads the value of the series whose line starts with prefix from /metrics
// (-1 when absent).
func scaleMetric(b *testing.B, client *http.Client, ops, prefix string) int {
	resp, err := client.Get(ops + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return -1
}
