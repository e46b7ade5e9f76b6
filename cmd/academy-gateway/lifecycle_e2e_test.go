package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/academy-gateway/academy-gateway/tokens"
	"github.com/academy-gateway/academy-gateway/webhooks"
)

// hookEvent is one verified webhook delivery as the operator's receiver sees it.
type hookEvent struct {
	ID   string
	Type string         `json:"type"`
	Data map[string]any `json:"data"`
	Raw  string         // headers and body, for the secrets canary
}

// hookReceiver is the operator's webhook endpoint: it checks each delivery's Standard Webhooks
// signature with its own HMAC (not the gateway's signer) and keeps one event per webhook-id.
type hookReceiver struct {
	t      *testing.T
	secret string
	url    string
	mu     sync.Mutex
	events map[string]hookEvent
	order  []string
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	h := &hookReceiver{t: t, secret: "whsec_" + randomB64(32), events: map[string]hookEvent{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
		key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(h.secret, "whsec_"))
		mac := hmac.New(sha256.New, key)
		io.WriteString(mac, id+"."+ts+".")
		mac.Write(body)
		if want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); !hmac.Equal([]byte(want), []byte(r.Header.Get("webhook-signature"))) {
			t.Errorf("webhook %s: bad signature %q", id, r.Header.Get("webhook-signature"))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var e hookEvent
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("webhook body: %v: %s", err, body)
		}
		var hdr bytes.Buffer
		_ = r.Header.Write(&hdr)
		e.ID, e.Raw = id, hdr.String()+string(body)
		h.mu.Lock()
		if _, dup := h.events[id]; !dup {
			h.order = append(h.order, id)
		}
		h.events[id] = e
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

// of returns the received events of type typ, in arrival order, as {user, …} data.
func (h *hookReceiver) of(typ string) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]any
	for _, id := range h.order {
		if e := h.events[id]; e.Type == typ {
			out = append(out, e.Data)
		}
	}
	return out
}

func (h *hookReceiver) all() []hookEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]hookEvent, 0, len(h.order))
	for _, id := range h.order {
		out = append(out, h.events[id])
	}
	return out
}

// waitFor polls until the receiver holds an event of typ whose data equals want.
func (h *hookReceiver) waitFor(typ string, want map[string]any) {
	h.t.Helper()
	pollUntil(h.t, "webhook "+typ+" "+jsonText(want), func() bool {
		return slices.ContainsFunc(h.of(typ), func(d map[string]any) bool { return cmp.Equal(d, want) })
	})
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// pollUntil checks cond every 5 ms for at most 20 s: a bound on a wait, not a timed assertion.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.EventuallyTrue(t, 20*time.Second, what, cond)
}

// withWebhooks points s's configuration at h.
func withWebhooks(s *stack, h *hookReceiver) {
	s.cfg.Webhooks = config.Webhooks{URL: h.url, Secret: h.secret, Events: config.Events}
}

// fastHooks are app options whose webhook retries and claims are quick.
var fastHooks = appOptions{managerInterval: time.Hour, webhooks: func(o *webhooks.Options) {
	o.BackoffBase, o.BackoffMax, o.ClaimIdle, o.Poll = 10*time.Millisecond, 50*time.Millisecond, time.Second, 50*time.Millisecond
}}

// TestIdentityPinning: docs/reference.md §4. A consent from another Academy account than the recorded one is
// refused (a page naming both, nothing stored, the old connection kept and working, the unwanted
// tokens invalidated, and the gateway user who held that account marked replaced, since the
// consent ended it at the Academy); with --new-identity the switch is made.
func TestIdentityPinning(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	h := newHookReceiver(t)
	withWebhooks(s, h)
	r := s.startWith(nil, fastHooks)
	aliceKey := s.connect(r, "alice", "john", "read")
	s.connect(r, "bob", "jane", "read")
	h.waitFor("connection.connected", map[string]any{"user": "alice", "replaced": false,
		"academy_user": map[string]any{"id": s.sim.Users()[0].ID, "user": "John Doe"}})
	old := mustConnection(t, r, "alice")
	before := s.sim.Stats()

	status, page := newOnboardBrowser(t).onboard(s, r, "alice", "jane")
	wantPage(t, status, page, http.StatusBadRequest, "John Doe")
	wantPage(t, status, page, http.StatusBadRequest, "Jane Black")
	wantPage(t, status, page, http.StatusBadRequest, "--new-identity")
	if now := mustConnection(t, r, "alice"); now.Version != old.Version || now.AccessToken != old.AccessToken || now.AcademyUser != "John Doe" {
		t.Errorf("alice after the refused consent: version %d→%d, academy user %q; want it unchanged", old.Version, now.Version, now.AcademyUser)
	}
	if st := simStatus(t, s, "/movies", old.AccessToken); st != http.StatusOK {
		t.Errorf("alice's old token at the Academy: %d, want 200 (kept)", st)
	}
	if got := s.sim.Stats().Invalidations - before.Invalidations; got != 1 {
		t.Errorf("%d invalidate calls, want 1 (the refused consent's tokens)", got)
	}
	if status, body := call(t, "GET", r.proxyURL+"/api/v1/movies", aliceKey, ""); status != http.StatusOK {
		t.Errorf("alice's key after the refused consent = %d %s", status, body)
	}
	if c := mustConnection(t, r, "bob"); c.Status != tokens.StatusReauthRequired {
		t.Errorf("bob (held Jane's account, ended by the consent) = %q, want reauth_required", c.Status)
	}
	h.waitFor("connection.reauth_required", map[string]any{"user": "bob", "reason": "replaced"})

	status, page = newOnboardBrowser(t).onboardLink(s, r, authorizeLinkWith(t, r, "alice", true), "jane")
	wantPage(t, status, page, http.StatusOK, "Jane Black")
	if c := mustConnection(t, r, "alice"); c.AcademyUser != "Jane Black" || c.Status != tokens.StatusActive {
		t.Errorf("alice after --new-identity = %q %q, want Jane Black, active", c.AcademyUser, c.Status)
	}
	h.waitFor("connection.connected", map[string]any{"user": "alice", "replaced": true,
		"academy_user": map[string]any{"id": s.sim.Users()[1].ID, "user": "Jane Black"}})
	for id, want := range map[string]string{s.sim.Users()[0].ID: "", s.sim.Users()[1].ID: "alice"} {
		if got, err := r.app.store.IdentityHolder(t.Context(), id); err != nil || got != want {
			t.Errorf("identity index of %s = %q (%v), want %q", id, got, err, want)
		}
	}

	// connections revoke clears the pin: the next link may connect any account.
	runCLI(t, stackGetenv(t, s), "connections", "revoke", "alice")
	status, page = newOnboardBrowser(t).onboard(s, r, "alice", "john")
	wantPage(t, status, page, http.StatusOK, "John Doe")
}

// TestReplacedAcrossReplicas: when carol consents with the Academy account alice is connected
// with, alice is reauth_required at once on every replica (the other replica's cache is
// dropped through the invalidation channel; its gauge shows it by the next scrape), with a
// connection.reauth_required webhook (reason replaced).
func TestReplacedAcrossReplicas(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	h := newHookReceiver(t)
	withWebhooks(s, h)
	r1 := s.startWith(nil, fastHooks)
	r2 := s.startWith(nil, fastHooks)
	aliceKey := s.connect(r1, "alice", "john", "read")
	if status, body := call(t, "GET", r2.proxyURL+"/api/v1/movies", aliceKey, ""); status != http.StatusOK {
		t.Fatalf("alice on r2 = %d %s", status, body) // now cached on r2
	}
	gauge := func(r *replica, status string) float64 {
		t.Helper()
		for _, m := range obsFamilies(t, obsScrape(t, r))["academy_gateway_connections"].GetMetric() {
			if m.GetLabel()[0].GetValue() == status {
				return m.GetGauge().GetValue()
			}
		}
		return -1
	}
	// The background round is an hour away: only the scrape-time counts can show this.
	if a := gauge(r2, "active"); a != 1 {
		t.Errorf("r2 academy_gateway_connections{active} = %v right after alice connected, want 1", a)
	}

	s.connect(r1, "carol", "john", "read")
	if c := mustConnection(t, r2, "alice"); c.Status != tokens.StatusReauthRequired {
		t.Errorf("alice's record after carol's consent = %q, want reauth_required at once", c.Status)
	}
	status, body := call(t, "GET", r2.proxyURL+"/api/v1/movies", aliceKey, "")
	if status != http.StatusUnauthorized || errorCode(t, body) != "reauthorization_required" {
		t.Errorf("alice on r2 after carol's consent = %d %s, want 401 reauthorization_required", status, body)
	}
	if a, re := gauge(r2, "active"), gauge(r2, "reauth_required"); a != 1 || re != 1 {
		t.Errorf("r2 gauge active %v reauth_required %v, want 1 and 1", a, re)
	}
	h.waitFor("connection.reauth_required", map[string]any{"user": "alice", "reason": "replaced"})
	h.waitFor("connection.connected", map[string]any{"user": "carol", "replaced": false,
		"academy_user": map[string]any{"id": s.sim.Users()[0].ID, "user": "John Doe"}})
}

// TestLifecycleWebhooksAndAudit: every lifecycle event reaches the receiver from the place the
// change is made (a refused refresh, a refresh token expired by time, the admin API, the CLI),
// and every change through the admin API or the CLI leaves one audit line saying from where.
func TestLifecycleWebhooksAndAudit(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	h := newHookReceiver(t)
	withWebhooks(s, h)
	s.cfg.Security.AdminToken = randomB64(24)
	r := s.startWith(nil, fastHooks)
	adminHdr := http.Header{"Authorization": {"Bearer " + s.cfg.Security.AdminToken}}

	// invalid_grant: the Academy refuses alice's refresh token.
	aliceKey := s.connect(r, "alice", "john", "read")
	s.sim.ExpireRefreshTokens(s.sim.Users()[0].ID)
	s.sim.ExpireAccessTokens(s.sim.Users()[0].ID)
	if status, _ := call(t, "GET", r.proxyURL+"/api/v1/movies", aliceKey, ""); status != http.StatusUnauthorized {
		t.Errorf("alice with dead tokens = %d, want 401", status)
	}
	h.waitFor("connection.reauth_required", map[string]any{"user": "alice", "reason": "invalid_grant"})

	// refresh_expired: the gateway knows by time.
	bobKey := s.connect(r, "bob", "jane", "read")
	c := mustConnection(t, r, "bob")
	c.AccessExpiresAt, c.RefreshExpiresAt = time.Now().Add(-time.Minute), time.Now().Add(-time.Second)
	if _, ok, err := r.app.store.CompareAndSwap(t.Context(), c, c.Version); err != nil || !ok {
		t.Fatal(ok, err)
	}
	r.app.mgr.Forget("bob", "")
	if status, _ := call(t, "GET", r.proxyURL+"/api/v1/movies", bobKey, ""); status != http.StatusUnauthorized {
		t.Errorf("bob with an expired refresh token = %d, want 401", status)
	}
	h.waitFor("connection.reauth_required", map[string]any{"user": "bob", "reason": "refresh_expired"})

	// The admin API: create and revoke a key, issue a link, revoke a connection.
	resp, body := obsFetch(t, "POST", r.opsURL+"/admin/keys", adminHdr, `{"user":"bob","scopes":["read"]}`)
	var created struct{ ID string }
	if err := json.Unmarshal([]byte(body), &created); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /admin/keys = %d %s", resp.StatusCode, body)
	}
	for _, req := range []struct{ method, path, body string }{
		{"DELETE", "/admin/keys/" + created.ID, ""},
		{"POST", "/admin/connections/dave/authorize", `{"allow_new_identity":true}`},
		{"DELETE", "/admin/connections/bob", ""},
	} {
		if resp, body := obsFetch(t, req.method, r.opsURL+req.path, adminHdr, req.body); resp.StatusCode/100 != 2 {
			t.Errorf("%s %s = %d %s", req.method, req.path, resp.StatusCode, body)
		}
	}
	h.waitFor("key.revoked", map[string]any{"user": "bob", "key_id": created.ID})
	h.waitFor("connection.revoked", map[string]any{"user": "bob"})

	// The CLI, on the same configuration: a key created and revoked, a link, a connection revoked.
	var stderr bytes.Buffer
	base := stackGetenv(t, s)
	getenv := func(k string) string {
		switch k {
		case "ACADEMY_GATEWAY_WEBHOOKS_URL":
			return h.url
		case "ACADEMY_GATEWAY_WEBHOOKS_SECRET":
			return h.secret
		}
		return base(k)
	}
	cli := func(args ...string) string {
		t.Helper()
		var stdout bytes.Buffer
		if err := run(t.Context(), args, getenv, &stdout, &stderr); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}
	var cliKey struct{ ID string }
	if err := json.Unmarshal([]byte(cli("keys", "create", "--user", "erin", "--json")), &cliKey); err != nil {
		t.Fatal(err)
	}
	cli("keys", "revoke", cliKey.ID)
	cli("connections", "authorize", "--new-identity", "frank")
	cli("connections", "revoke", "alice")
	h.waitFor("key.revoked", map[string]any{"user": "erin", "key_id": cliKey.ID})
	h.waitFor("connection.revoked", map[string]any{"user": "alice"})

	type line struct {
		Logger, Msg, Action, From, User, KeyID string
		AllowNewIdentity                       bool
	}
	parse := func(text string) []line {
		var out []line
		for _, l := range strings.Split(text, "\n") {
			var v struct {
				Logger           string `json:"logger"`
				Msg              string `json:"msg"`
				Action           string `json:"action"`
				From             string `json:"from"`
				User             string `json:"user"`
				KeyID            string `json:"key_id"`
				AllowNewIdentity bool   `json:"allow_new_identity"`
			}
			if json.Unmarshal([]byte(l), &v) == nil && v.Logger == "audit" {
				if v.From != "cli" && strings.HasPrefix(v.From, "127.0.0.1:") {
					v.From = "127.0.0.1"
				}
				out = append(out, line{v.Logger, v.Msg, v.Action, v.From, v.User, v.KeyID, v.AllowNewIdentity})
			}
		}
		return out
	}
	want := []line{
		{"audit", "audit", "key.created", "127.0.0.1", "bob", created.ID, false},
		{"audit", "audit", "key.revoked", "127.0.0.1", "bob", created.ID, false},
		{"audit", "audit", "link.issued", "127.0.0.1", "dave", "", true},
		{"audit", "audit", "connection.revoked", "127.0.0.1", "bob", "", false},
	}
	if diff := cmp.Diff(want, parse(s.logs.String())); diff != "" {
		t.Errorf("audit lines of the admin API (-want +got):\n%s", diff)
	}
	want = []line{
		{"audit", "audit", "key.created", "cli", "erin", cliKey.ID, false},
		{"audit", "audit", "key.revoked", "cli", "erin", cliKey.ID, false},
		{"audit", "audit", "link.issued", "cli", "frank", "", true},
		{"audit", "audit", "connection.revoked", "cli", "alice", "", false},
	}
	if diff := cmp.Diff(want, parse(stderr.String())); diff != "" {
		t.Errorf("audit lines of the CLI (-want +got):\n%s", diff)
	}
}

// TestRekeyCommand: docs/reference.md §2 rekey. With a new key listed first, --dry-run reports what it would
// re-encrypt and writes nothing; rekey re-encrypts; the next run finds everything current; a
// record no configured key opens is named, left untouched, and makes both exit 1. Replicas keep
// serving the re-encrypted users meanwhile.
func TestRekeyCommand(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Minute)
	r := s.start(nil)
	aliceKey := s.connect(r, "alice", "john", "read")
	s.connect(r, "bob", "jane", "read")
	oldKey := s.cfg.Security.EncryptionKeys[0]
	newKey := randomB64(32)
	env := func(keys ...string) func(string) string {
		base := stackGetenv(t, s)
		return func(k string) string {
			if k == "ACADEMY_GATEWAY_SECURITY_ENCRYPTION_KEYS" {
				return strings.Join(keys, ",")
			}
			return base(k)
		}
	}
	rekey := func(getenv func(string) string, args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), append([]string{"rekey"}, args...), getenv, &stdout, &stderr)
		return stdout.String(), err
	}
	steps := []struct {
		name    string
		keys    []string
		args    []string
		want    string
		wantErr bool
	}{
		{"dry run", []string{newKey, oldKey}, []string{"--dry-run"}, "would re-encrypt 2, already current 0, unreadable 0\n", false},
		{"rekey", []string{newKey, oldKey}, nil, "re-encrypted 2, already current 0, unreadable 0\n", false},
		{"again", []string{newKey, oldKey}, nil, "re-encrypted 0, already current 2, unreadable 0\n", false},
		{"the old key alone opens nothing now", []string{oldKey}, []string{"--dry-run"}, "would re-encrypt 0, already current 0, unreadable 2\n" +
			"no configured key opens the connection of: alice, bob (left untouched; revoke them or add the old key back)\n", true},
	}
	for _, st := range steps {
		out, err := rekey(env(st.keys...), st.args...)
		if out != st.want || (err != nil) != st.wantErr {
			t.Errorf("%s: rekey %v = %q, %v; want %q (error %v)", st.name, st.args, out, err, st.want, st.wantErr)
		}
		if st.wantErr && !errors.Is(err, errUnreadable) {
			t.Errorf("%s: error %v, want errUnreadable (exit 1)", st.name, err)
		}
	}
	// The replica runs with [old] still, but a record re-sealed with the new key is refused, so
	// run one with both keys (the rollout order of the runbook: new key everywhere first).
	s.cfg.Security.EncryptionKeys = []string{newKey, oldKey}
	r2 := s.start(nil)
	if status, body := call(t, "GET", r2.proxyURL+"/api/v1/movies", aliceKey, ""); status != http.StatusOK {
		t.Errorf("alice on a replica with the new key after rekey = %d %s", status, body)
	}
	if c, err := r2.app.store.Connection(context.WithoutCancel(t.Context()), "alice"); err != nil || c.AcademyUser != "John Doe" {
		t.Errorf("alice's record after rekey = %+v, %v", c, err)
	}
}
