package webhooks_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/internal/redistest"
	waitutil "github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
	"github.com/academy-gateway/academy-gateway/webhooks"
)

// testSecret is a whsec_ secret of 32 bytes.
var testSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

// verify is an implementation of the Standard Webhooks check written from the specification,
// independent of webhooks.Signer: strip whsec_, base64-decode the key, HMAC-SHA256 over
// "id.timestamp.body", compare with each space-separated v1,<base64> entry.
func verify(secret string, h http.Header, body []byte) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("missing headers: id %q timestamp %q signature %q", id, ts, sigs)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	io.WriteString(mac, id+"."+ts+".")
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		version, b64, ok := strings.Cut(s, ",")
		got, err := base64.StdEncoding.DecodeString(b64)
		if ok && version == "v1" && err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("no valid signature in %q", sigs)
}

// delivery is one request the receiver got.
type delivery struct {
	header http.Header
	body   []byte
	err    error // of verify
}

// receiver records every request and answers with status() (200 by default).
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []delivery
	status func(n int) int // n: index of this request, from 0
}

func newReceiver(t *testing.T, status func(n int) int) *receiver {
	r := &receiver{status: status}
	if r.status == nil {
		r.status = func(int) int { return http.StatusOK }
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		n := len(r.got)
		r.got = append(r.got, delivery{header: req.Header.Clone(), body: body, err: verify(testSecret, req.Header, body)})
		r.mu.Unlock()
		w.WriteHeader(r.status(n))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// eventually polls cond every 5 ms for up to 20 s: a bound on a wait, never a timed assertion.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitutil.EventuallyTrue(t, 20*time.Second, what, cond)
}

// fastOptions shrink every wait so tests run quickly.
func fastOptions(url string) webhooks.Options {
	return webhooks.Options{URL: url, BackoffBase: 10 * time.Millisecond, BackoffMax: 40 * time.Millisecond,
		ClaimIdle: time.Second, AttemptTimeout: 400 * time.Millisecond, Poll: 50 * time.Millisecond}
}

// startDispatcher runs a dispatcher until the test ends.
func startDispatcher(t *testing.T, q *webhooks.Queue, m *metrics.Metrics, opts webhooks.Options) {
	t.Helper()
	signer, err := webhooks.NewSigner(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	d := webhooks.NewDispatcher(q, signer, m, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func newQueue(rdb redis.UniversalClient) *webhooks.Queue {
	return webhooks.NewQueue(rdb, "agw:", config.Events)
}

func newMetrics() *metrics.Metrics { return metrics.New(prometheus.NewRegistry(), "test") }

func pending(t *testing.T, q *webhooks.Queue) int64 {
	t.Helper()
	n, err := q.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeliveryTopologies: an event is delivered with the Standard Webhooks headers and a
// signature an independent verifier accepts, on a single Redis, a Cluster and Sentinel; the
// delivered entry leaves the stream.
func TestDeliveryTopologies(t *testing.T) {
	topologies := []struct {
		name   string
		client func(t *testing.T) redis.UniversalClient
	}{
		{"single", func(t *testing.T) redis.UniversalClient { return redistest.Start(t).Client(t) }},
		{"cluster", func(t *testing.T) redis.UniversalClient { return redistest.StartCluster(t).Client(t) }},
		{"sentinel", func(t *testing.T) redis.UniversalClient { return redistest.StartSentinel(t).Client(t) }},
	}
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			rdb := tp.client(t)
			q := newQueue(rdb)
			rcv := newReceiver(t, func(n int) int { return map[bool]int{true: 500, false: 200}[n == 0] })
			m := newMetrics()
			at := time.Date(2026, 12, 1, 10, 0, 0, 123, time.UTC)
			if err := q.Publish(t.Context(), webhooks.Connected(at, "alice", webhooks.AcademyUser{ID: "7", User: "john"}, true)); err != nil {
				t.Fatal(err)
			}
			startDispatcher(t, q, m, fastOptions(rcv.srv.URL))
			eventually(t, "a retry and a delivery", func() bool {
				return pending(t, q) == 0 && testutil.ToFloat64(m.WebhookDeliveries.WithLabelValues("connection.connected", "success")) == 1
			})
			got := rcv.deliveries()
			if len(got) != 2 {
				t.Fatalf("got %d requests, want 2 (one failed, one delivered)", len(got))
			}
			for i, d := range got {
				if d.err != nil {
					t.Errorf("request %d: signature: %v", i, d.err)
				}
				if ct := d.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("request %d: Content-Type %q", i, ct)
				}
				ts, err := strconv.ParseInt(d.header.Get("webhook-timestamp"), 10, 64)
				if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
					t.Errorf("request %d: webhook-timestamp %q is not this attempt's Unix time", i, d.header.Get("webhook-timestamp"))
				}
			}
			if got[0].header.Get("webhook-id") != got[1].header.Get("webhook-id") || !strings.HasPrefix(got[0].header.Get("webhook-id"), "msg_") {
				t.Errorf("webhook-id %q then %q, want one msg_ id on every attempt", got[0].header.Get("webhook-id"), got[1].header.Get("webhook-id"))
			}
			var body map[string]any
			if err := json.Unmarshal(got[1].body, &body); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"type": "connection.connected", "timestamp": "2026-12-01T10:00:00.000000123Z",
				"data": map[string]any{"user": "alice", "academy_user": map[string]any{"id": "7", "user": "john"}, "replaced": true}}
			if diff := cmp.Diff(want, body); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			for result, want := range map[string]float64{"success": 1, "retry": 1, "failed": 0} {
				if got := testutil.ToFloat64(m.WebhookDeliveries.WithLabelValues("connection.connected", result)); got != want {
					t.Errorf("deliveries{result=%q} = %v, want %v", result, got, want)
				}
			}
		})
	}
}

// TestAttemptTimeoutIsRetried: a receiver that does not answer within AttemptTimeout fails the
// attempt like a non-2xx answer (docs/reference.md §9: timeouts are retried); the retry carries
// the same webhook-id and delivers the event.
func TestAttemptTimeoutIsRetried(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	q := newQueue(rdb)
	var mu sync.Mutex
	var ids []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body) // read to the end, so a closed connection cancels req.Context()
		mu.Lock()
		ids = append(ids, req.Header.Get("webhook-id"))
		first := len(ids) == 1
		mu.Unlock()
		if first {
			<-req.Context().Done() // never answer the first attempt: the dispatcher times it out
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	m := newMetrics()
	if err := q.Publish(t.Context(), webhooks.Revoked(time.Now(), "alice")); err != nil {
		t.Fatal(err)
	}
	startDispatcher(t, q, m, fastOptions(srv.URL))
	eventually(t, "a timed-out attempt, then a delivery", func() bool {
		return pending(t, q) == 0 && testutil.ToFloat64(m.WebhookDeliveries.WithLabelValues("connection.revoked", "success")) == 1
	})
	mu.Lock()
	got := slices.Clone(ids)
	mu.Unlock()
	if len(got) != 2 || got[0] != got[1] || got[0] == "" {
		t.Errorf("webhook-ids %q, want the same id on the timed-out attempt and its retry", got)
	}
	for result, want := range map[string]float64{"success": 1, "retry": 1, "failed": 0} {
		if got := testutil.ToFloat64(m.WebhookDeliveries.WithLabelValues("connection.revoked", result)); got != want {
			t.Errorf("deliveries{result=%q} = %v, want %v", result, got, want)
		}
	}
}

// TestRetriesThenGiveUp: a receiver that always fails gets the same webhook-id on every attempt,
// with backoff, until RetryFor has passed; then the event is counted failed, leaves the stream
// and is kept in the failed stream (without any secret).
func TestRetriesThenGiveUp(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	q := newQueue(rdb)
	rcv := newReceiver(t, func(int) int { return http.StatusServiceUnavailable })
	m := newMetrics()
	opts := fastOptions(rcv.srv.URL)
	opts.RetryFor = 150 * time.Millisecond
	if err := q.Publish(t.Context(), webhooks.KeyRevoked(time.Now(), "bob", "0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	startDispatcher(t, q, m, opts)
	eventually(t, "the event to be given up", func() bool {
		return testutil.ToFloat64(m.WebhookDeliveries.WithLabelValues("key.revoked", "failed")) == 1
	})
	got := rcv.deliveries()
	if len(got) < 3 {
		t.Fatalf("%d attempts, want several", len(got))
	}
	for i, d := range got {
		if d.header.Get("webhook-id") != got[0].header.Get("webhook-id") || d.err != nil {
			t.Errorf("attempt %d: webhook-id %q (first %q), signature %v", i, d.header.Get("webhook-id"), got[0].header.Get("webhook-id"), d.err)
		}
	}
	if n := pending(t, q); n != 0 {
		t.Errorf("pending = %d after giving up, want 0", n)
	}
	failed, err := q.Failed(t.Context(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 1 || failed[0].ID != got[0].header.Get("webhook-id") || failed[0].Type != "key.revoked" ||
		failed[0].Attempts != len(got) || !strings.Contains(failed[0].LastError, "503") {
		t.Errorf("failed stream = %+v, want the event with %d attempts and its last error", failed, len(got))
	}
	if retries := testutil.ToFloat64(m.WebhookDeliveries.WithLabelValues("key.revoked", "retry")); int(retries) != len(got)-1 {
		t.Errorf("retry count %v, want %d", retries, len(got)-1)
	}
}

// TestReceiverDownThenUp: while the receiver refuses connections, events wait (this replica
// holds at most Batch of them, the rest stay in Redis); once it listens again, every event
// arrives exactly once per webhook-id and the stream empties.
func TestReceiverDownThenUp(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	q := newQueue(rdb)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // down: connection refused
	m := newMetrics()
	opts := fastOptions("http://" + addr + "/hook")
	opts.Batch = 3
	const events = 12
	for i := range events {
		if err := q.Publish(t.Context(), webhooks.Revoked(time.Now(), fmt.Sprintf("u%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	startDispatcher(t, q, m, opts)
	eventually(t, "retries while the receiver is down", func() bool {
		return testutil.ToFloat64(m.WebhookDeliveries.WithLabelValues("connection.revoked", "retry")) >= 6
	})
	// Bounded: the group has handed this replica no more than Batch events.
	if p, err := rdb.XPending(t.Context(), "agw:{wh}:events", "delivery").Result(); err != nil || p.Count > int64(opts.Batch) {
		t.Errorf("pending in the group = %+v (%v), want at most Batch=%d held", p, err, opts.Batch)
	}
	if n := pending(t, q); n != events {
		t.Errorf("webhook pending = %d while down, want %d", n, events)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("could not listen again on %s: %v", addr, err)
	}
	rcv := &receiver{status: func(int) int { return 200 }}
	rcv.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		rcv.mu.Lock()
		rcv.got = append(rcv.got, delivery{header: req.Header.Clone(), body: body, err: verify(testSecret, req.Header, body)})
		rcv.mu.Unlock()
	}))
	rcv.srv.Listener = ln
	rcv.srv.Start()
	t.Cleanup(rcv.srv.Close)
	eventually(t, "every event delivered", func() bool {
		return testutil.ToFloat64(m.WebhookDeliveries.WithLabelValues("connection.revoked", "success")) == events
	})
	ids := map[string]int{}
	for _, d := range rcv.deliveries() {
		if d.err != nil {
			t.Errorf("signature: %v", d.err)
		}
		ids[d.header.Get("webhook-id")]++
	}
	if len(ids) != events {
		t.Errorf("%d distinct webhook-ids delivered, want %d", len(ids), events)
	}
	if got := testutil.ToFloat64(m.WebhookDeliveries.WithLabelValues("connection.revoked", "success")); got != events {
		t.Errorf("success = %v, want %d", got, events)
	}
}

// TestUnconfiguredEventsAreDropped: webhooks.events filters what is recorded.
func TestUnconfiguredEventsAreDropped(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	q := webhooks.NewQueue(rdb, "agw:", []string{config.EventRevoked})
	for _, e := range []webhooks.Event{webhooks.Revoked(time.Now(), "a"), webhooks.KeyRevoked(time.Now(), "a", "k")} {
		if err := q.Publish(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if n := pending(t, q); n != 1 {
		t.Errorf("pending = %d, want 1 (key.revoked is not configured)", n)
	}
	var nilQ *webhooks.Queue
	if err := nilQ.Publish(t.Context(), webhooks.Revoked(time.Now(), "a")); err != nil {
		t.Errorf("nil queue (webhooks off): %v", err)
	}
}

// helperEnv makes the test binary a dispatcher process (see TestHelperDispatcher).
const helperEnv = "WEBHOOKS_TEST_HELPER"

// TestHelperDispatcher is not a test: re-executed with helperEnv set, the test binary runs one
// dispatcher against REDIS_ADDR delivering to HOOK_URL until it is killed.
func TestHelperDispatcher(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process only")
	}
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	q := newQueue(rdb)
	signer, _ := webhooks.NewSigner(testSecret)
	opts := fastOptions(os.Getenv("HOOK_URL"))
	opts.AttemptTimeout = time.Hour // the receiver holds the request until this process dies
	opts.Consumer = "doomed"
	webhooks.NewDispatcher(q, signer, newMetrics(), opts).Run(context.Background())
}

// TestKilledReplica: a replica SIGKILLed while delivering leaves the event pending in its
// name; another replica claims it once it has been idle for ClaimIdle and delivers it with the
// same webhook-id.
func TestKilledReplica(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	q := newQueue(rdb)

	first := make(chan string, 1)
	var mu sync.Mutex
	var ids []string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := verify(testSecret, req.Header, body); err != nil {
			t.Errorf("signature: %v", err)
		}
		mu.Lock()
		ids = append(ids, req.Header.Get("webhook-id"))
		n := len(ids)
		mu.Unlock()
		if n == 1 { // the doomed replica's attempt: hold it until that process is gone
			first <- req.Header.Get("webhook-id")
			<-req.Context().Done()
			return
		}
	}))
	t.Cleanup(rcv.Close)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDispatcher$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "REDIS_ADDR="+srv.Addr, "HOOK_URL="+rcv.URL)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if err := q.Publish(t.Context(), webhooks.ReauthRequired(time.Now(), "carol", tokens.ReasonReplaced)); err != nil {
		t.Fatal(err)
	}
	var id string
	select {
	case id = <-first:
	case <-time.After(20 * time.Second):
		t.Fatal("the helper replica did not attempt the delivery within 20 s")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if p, err := rdb.XPendingExt(t.Context(), &redis.XPendingExtArgs{Stream: "agw:{wh}:events", Group: "delivery", Start: "-", End: "+", Count: 10}).Result(); err != nil || len(p) != 1 || p[0].Consumer != "doomed" {
		t.Fatalf("pending after the kill = %+v (%v), want the event held by the dead replica", p, err)
	}

	m := newMetrics()
	opts := fastOptions(rcv.URL)
	opts.ForgetAfter = time.Millisecond
	startDispatcher(t, q, m, opts)
	eventually(t, "the survivor to deliver the event", func() bool { return pending(t, q) == 0 })
	eventually(t, "the dead replica to be removed from the group", func() bool {
		cs, err := rdb.XInfoConsumers(t.Context(), "agw:{wh}:events", "delivery").Result()
		return err == nil && !slices.ContainsFunc(cs, func(c redis.XInfoConsumer) bool { return c.Name == "doomed" })
	})
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 2 || ids[1] != id {
		t.Errorf("webhook-ids received %q, want %q twice (the killed attempt, then the survivor's)", ids, id)
	}
}
