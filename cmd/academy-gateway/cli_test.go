package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/sim"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// The management commands of docs/reference.md §2, run through run() as main does, against a real Redis.

// cliEncryptionKey is base64 of 32 bytes ("0123456789abcdef0123456789abcdef").
const cliEncryptionKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// cliKeyPrefix is a non-default Redis key prefix, so the test sees that commands honour it.
const cliKeyPrefix = "cli:"

// wireConnection is a connection as `connections … --json` prints it (docs/reference.md §5); decoded into a
// struct of the test's own so the test checks the wire format, not a Go type.
type wireConnection struct {
	User             string    `json:"user"`
	Status           string    `json:"status"`
	Scopes           []string  `json:"scopes"`
	AcademyUser      string    `json:"academy_user"`
	AccessExpiresAt  time.Time `json:"access_expires_at"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// mapEnv is a getenv over a fixed map: the tests never see the real environment.
func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// cliFixture is a Redis, a simulator and a configuration file naming both.
type cliFixture struct {
	t      *testing.T
	config string // path of the YAML file
	getenv func(string) string
	redis  *redistest.Server
	sim    *sim.Server
	simURL string
	store  *tokens.Store // the same Redis, prefix and key as the commands use
}

func newCLIFixture(t *testing.T) *cliFixture {
	t.Helper()
	f := &cliFixture{t: t, redis: redistest.Start(t), sim: sim.New(sim.Options{}), getenv: mapEnv(nil)}
	srv := httptest.NewServer(f.sim)
	t.Cleanup(srv.Close)
	f.simURL = srv.URL
	f.config = writeConfig(t, `
oauth:
  client_id: "`+sim.DefaultClientID+`"
  client_secret: "`+sim.DefaultClientSecret+`"
  token_url: "`+f.simURL+`/token"
  refresh_url: "`+f.simURL+`/refresh"
  invalidate_url: "`+f.simURL+`/invalidate"
  redirect_url: "https://gateway.example.test/oauth/callback"
upstream:
  base_url: "`+f.simURL+`"
redis:
  url: "`+f.redis.URL()+`"
  key_prefix: "`+cliKeyPrefix+`"
security:
  encryption_keys: ["`+cliEncryptionKey+`"]
`)
	kr, err := tokens.NewKeyring([]string{cliEncryptionKey})
	if err != nil {
		t.Fatal(err)
	}
	f.store = tokens.NewStore(f.redis.Client(t), cliKeyPrefix, kr, metrics.New(prometheus.NewRegistry(), "t"), nil)
	return f
}

// writeConfig writes a configuration file into the test's temporary directory.
func writeConfig(t *testing.T, yamlText string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(yamlText), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ok runs a command with the fixture's configuration; it must succeed. It returns stdout.
func (f *cliFixture) ok(args ...string) string {
	f.t.Helper()
	return runCLI(f.t, f.getenv, append(args, "--config", f.config)...)
}

// fail runs a command with the fixture's configuration; it must fail with exit status code and
// a message containing msg.
func (f *cliFixture) fail(code int, msg string, args ...string) {
	f.t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(f.t.Context(), append(args, "--config", f.config), f.getenv, &stdout, &stderr)
	wantExit(f.t, err, code, msg)
}

// wantExit checks the exit status and message main would produce for err.
func wantExit(t *testing.T, err error, code int, msg string) {
	t.Helper()
	var printed bytes.Buffer
	if got := exitCode(err, &printed); got != code {
		t.Errorf("exit status %d (err %v), want %d", got, err, code)
	}
	if code != 0 && (!strings.HasPrefix(printed.String(), "academy-gateway: ") || !strings.Contains(printed.String(), msg)) {
		t.Errorf("printed %q, want an academy-gateway: message containing %q", printed.String(), msg)
	}
	if got := exitCode(err, io.Discard); got != code {
		t.Errorf("exitCode with io.Discard = %d, want %d", got, code)
	}
}

// TestCLIKeys: keys create (issued and legacy), list, revoke against Redis; the key is printed
// once, never listed, and the records are what the gateway reads.
func TestCLIKeys(t *testing.T) {
	t.Parallel()
	f := newCLIFixture(t)
	ctx := t.Context()

	before := time.Now().Add(-time.Second)
	out := f.ok("keys", "create", "--user", "alice", "--scopes", "read,write", "--name", "ci", "--json")
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &fields); err != nil {
		t.Fatalf("keys create --json: %v: %s", err, out)
	}
	for _, k := range []string{"id", "key", "user", "scopes", "name", "created_at"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("keys create --json lacks %q: %s", k, out)
		}
	}
	var created struct {
		ID        string    `json:"id"`
		Key       string    `json:"key"`
		User      string    `json:"user"`
		Scopes    []string  `json:"scopes"`
		Name      string    `json:"name"`
		CreatedAt time.Time `json:"created_at"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(created.ID) || !strings.HasPrefix(created.Key, tokens.KeyPrefix) ||
		!tokens.WellFormed(created.Key) || created.User != "alice" || !slices.Equal(created.Scopes, []string{"read", "write"}) ||
		created.Name != "ci" || created.CreatedAt.Before(before) || created.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("keys create --json = %+v", created)
	}
	if k, err := f.store.KeyByHash(ctx, tokens.HashKey(created.Key)); err != nil || k.ID != created.ID || k.User != "alice" {
		t.Errorf("the gateway resolves the new key to %+v, %v", k, err)
	}

	const legacy = "legacy-v1-key-123"
	out = f.ok("keys", "create", "--key", legacy, "--user", "alice")
	if !strings.Contains(out, legacy) || !strings.Contains(out, "alice") {
		t.Errorf("keys create --key printed %q, want the key and user once", out)
	}
	legacyRec, err := f.store.KeyByHash(ctx, tokens.HashKey(legacy))
	if err != nil || legacyRec.User != "alice" || len(legacyRec.Scopes) != 0 {
		t.Fatalf("the legacy key resolves to %+v, %v", legacyRec, err)
	}
	f.fail(1, "already registered", "keys", "create", "--key", legacy, "--user", "bob")

	secrets := []string{created.Key, legacy, tokens.HashKey(created.Key), tokens.HashKey(legacy)}
	noSecrets := func(cmd, out string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s printed a key or its hash: %s", cmd, out)
			}
		}
	}
	listIDs := func(args ...string) []string {
		t.Helper()
		out := f.ok(append([]string{"keys", "list", "--json"}, args...)...)
		noSecrets("keys list --json", out)
		var list struct {
			Keys []map[string]any `json:"keys"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil || list.Keys == nil {
			t.Fatalf("keys list --json: %v: %s", err, out)
		}
		var ids []string
		for _, k := range list.Keys {
			if _, has := k["key"]; has {
				t.Errorf("keys list --json has a key field: %v", k)
			}
			for _, field := range []string{"id", "user", "scopes", "name", "created_at"} {
				if _, has := k[field]; !has {
					t.Errorf("keys list --json entry lacks %q: %v", field, k)
				}
			}
			ids = append(ids, k["id"].(string))
		}
		return ids
	}
	if ids := listIDs(); !slices.Equal(ids, []string{created.ID, legacyRec.ID}) {
		t.Errorf("keys list = %v, want %s and %s oldest first", ids, created.ID, legacyRec.ID)
	}
	if ids := listIDs("--user", "alice"); len(ids) != 2 {
		t.Errorf("keys list --user alice = %v, want both keys", ids)
	}
	if ids := listIDs("--user", "bob"); len(ids) != 0 {
		t.Errorf("keys list --user bob = %v, want none", ids)
	}
	out = f.ok("keys", "list")
	noSecrets("keys list", out)
	for _, want := range []string{"ID", "LAST USED", created.ID, legacyRec.ID, "alice", "read,write", "ci", "(all granted)"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys list table lacks %q:\n%s", want, out)
		}
	}

	out = f.ok("keys", "revoke", created.ID)
	if !strings.Contains(out, created.ID) || !strings.Contains(out, "alice") {
		t.Errorf("keys revoke printed %q", out)
	}
	if ids := listIDs(); !slices.Equal(ids, []string{legacyRec.ID}) {
		t.Errorf("keys list after revoke = %v, want only %s", ids, legacyRec.ID)
	}
	if _, err := f.store.KeyByHash(ctx, tokens.HashKey(created.Key)); !errors.Is(err, tokens.ErrUnknownKey) {
		t.Errorf("the revoked key still resolves: %v", err)
	}
	f.fail(1, "no key with id", "keys", "revoke", created.ID)
	f.fail(1, "no key with id", "keys", "revoke", "0123456789abcdef")
}

// TestCLIKeysWarnings: a key made for a user without an active connection comes with a warning
// on stderr (stdout stays the key, or clean JSON) that names the onboarding command; a user
// with an active connection gets none. The key is never in the warning.
func TestCLIKeysWarnings(t *testing.T) {
	t.Parallel()
	f := newCLIFixture(t)
	create := func(args ...string) (stdout, stderr string) {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(t.Context(), append(append([]string{"keys", "create"}, args...), "--config", f.config), f.getenv, &out, &errOut); err != nil {
			t.Fatalf("keys create %v: %v", args, err)
		}
		return out.String(), errOut.String()
	}
	out, warn := create("--user", "nobody", "--json")
	var created struct{ Key string }
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("stdout is not the JSON alone: %v: %q", err, out)
	}
	if !strings.Contains(warn, "warning: nobody has no connection yet") || !strings.Contains(warn, "academy-gateway connections authorize nobody") {
		t.Errorf("stderr %q, want a warning naming the onboarding command", warn)
	}
	if strings.Contains(warn, created.Key) {
		t.Error("the warning carries the key")
	}

	conn := tokens.Connection{User: "carol", Scopes: []string{"connect", "read"}}.WithGrant(simGrant(t, f.simURL, "john"))
	if _, err := f.store.PutConnection(t.Context(), conn); err != nil {
		t.Fatal(err)
	}
	if _, warn := create("--user", "carol"); strings.Contains(warn, "warning:") { // the audit line stays
		t.Errorf("a connected user got the warning %q", warn)
	}
	conn.User, conn.Status = "dave", tokens.StatusReauthRequired
	if _, err := f.store.PutConnection(t.Context(), conn); err != nil {
		t.Fatal(err)
	}
	if _, warn := create("--user", "dave"); !strings.Contains(warn, "needs reauthorization") {
		t.Errorf("a user in reauth_required got %q, want the reauthorization warning", warn)
	}
}

// simGrant walks the simulator's code flow directly and returns a live token pair of the demo
// user academyUser ("john", "jane").
func simGrant(t *testing.T, simURL, academyUser string) tokens.Grant {
	t.Helper()
	const redirect = "http://127.0.0.1/cb"
	noRedirect := &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"response_type": {"code"}, "client_id": {sim.DefaultClientID}, "redirect_uri": {redirect},
		"scope": {"connect read"}, "sim_user": {academyUser}}
	resp, err := noRedirect.Get(simURL + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("simulator /authorize: %s, %v", resp.Status, err)
	}
	body, _ := json.Marshal(map[string]string{"grant_type": "authorization_code", "client_id": sim.DefaultClientID,
		"client_secret": sim.DefaultClientSecret, "code": loc.Query().Get("code"), "redirect_uri": redirect})
	resp, err = noRedirect.Post(simURL+"/token", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("simulator /token: %s, %v", resp.Status, err)
	}
	now := time.Now()
	return tokens.Grant{AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken, IssuedAt: now,
		AccessExpiresAt: now.Add(5 * time.Minute), RefreshExpiresAt: now.Add(time.Hour)}
}

// TestCLIConnections: connections authorize issues a live single-use link; list and show report
// what the store holds (never a token); show and revoke of an unknown user fail with status 1;
// revoke invalidates an active grant at the Academy and deletes the tokens.
func TestCLIConnections(t *testing.T) {
	t.Parallel()
	f := newCLIFixture(t)
	ctx := t.Context()

	t.Run("authorize", func(t *testing.T) {
		before := time.Now()
		out := f.ok("connections", "authorize", "alice", "--json")
		var link struct {
			URL       string    `json:"authorize_url"`
			ExpiresAt time.Time `json:"expires_at"`
		}
		if err := json.Unmarshal([]byte(out), &link); err != nil {
			t.Fatalf("connections authorize --json: %v: %s", err, out)
		}
		if !strings.HasPrefix(link.URL, "https://gateway.example.test/oauth/start?ticket=") {
			t.Errorf("authorize_url = %q, want the redirect_url origin + /oauth/start?ticket=", link.URL)
		}
		if lo, hi := before.Add(10*time.Minute-2*time.Second), time.Now().Add(10*time.Minute+time.Second); link.ExpiresAt.Before(lo) || link.ExpiresAt.After(hi) {
			t.Errorf("expires_at = %s, want 10 minutes from now", link.ExpiresAt)
		}
		u, err := url.Parse(link.URL)
		if err != nil {
			t.Fatal(err)
		}
		// The link is live in Redis: its ticket binds a state (what opening it does).
		if _, _, err := f.store.BindState(ctx, u.Query().Get("ticket")); err != nil {
			t.Errorf("the printed ticket is not open in Redis: %v", err)
		}
		out = f.ok("connections", "authorize", "bob")
		if !strings.Contains(out, "bob") || !strings.Contains(out, "/oauth/start?ticket=") {
			t.Errorf("connections authorize printed %q", out)
		}
	})

	t.Run("list empty", func(t *testing.T) {
		out := f.ok("connections", "list", "--json")
		var list struct {
			Connections []wireConnection `json:"connections"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil || list.Connections == nil || len(list.Connections) != 0 {
			t.Errorf("connections list --json with none = %q (%v), want an empty list", out, err)
		}
	})

	john := simGrant(t, f.simURL, "john")
	alice := tokens.Connection{User: "alice", Scopes: []string{"connect", "read"}, AcademyID: f.sim.Users()[0].ID,
		AcademyUser: "John Doe"}.WithGrant(john)
	if _, err := f.store.PutConnection(ctx, alice); err != nil {
		t.Fatal(err)
	}
	bob := tokens.Connection{User: "bob", Scopes: []string{"connect", "read", "write"}, AcademyUser: "Jane Black"}.WithGrant(tokens.Grant{
		AccessToken: "at-bob-secret-value", RefreshToken: "rt-bob-secret-value", IssuedAt: time.Now(),
		AccessExpiresAt: time.Now().Add(time.Minute)})
	bob.Status = tokens.StatusReauthRequired
	if _, err := f.store.PutConnection(ctx, bob); err != nil {
		t.Fatal(err)
	}
	secrets := []string{john.AccessToken, john.RefreshToken, bob.AccessToken, bob.RefreshToken}
	noTokens := func(cmd, out string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s printed a token: %s", cmd, out)
			}
		}
	}

	t.Run("list and show", func(t *testing.T) {
		out := f.ok("connections", "list", "--json")
		noTokens("connections list --json", out)
		var list struct {
			Connections []map[string]any `json:"connections"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Connections) != 2 {
			t.Fatalf("connections list --json = %q (%v), want 2", out, err)
		}
		for _, k := range []string{"user", "status", "scopes", "academy_user", "access_expires_at", "refresh_expires_at", "updated_at"} {
			if _, ok := list.Connections[0][k]; !ok {
				t.Errorf("connections list --json entry lacks %q: %v", k, list.Connections[0])
			}
		}
		got := []string{}
		for _, c := range list.Connections {
			got = append(got, c["user"].(string)+"/"+c["status"].(string)+"/"+c["academy_user"].(string))
		}
		if want := []string{"alice/active/John Doe", "bob/reauth_required/Jane Black"}; !slices.Equal(got, want) {
			t.Errorf("connections list --json = %v, want %v", got, want)
		}

		out = f.ok("connections", "list")
		noTokens("connections list", out)
		for _, want := range []string{"USER", "STATUS", "alice", "active", "connect,read", "John Doe", "bob", "reauth_required", "Jane Black"} {
			if !strings.Contains(out, want) {
				t.Errorf("connections list table lacks %q:\n%s", want, out)
			}
		}

		out = f.ok("connections", "show", "alice", "--json")
		noTokens("connections show --json", out)
		var one wireConnection
		if err := json.Unmarshal([]byte(out), &one); err != nil {
			t.Fatalf("connections show --json: %v: %s", err, out)
		}
		if one.User != "alice" || one.Status != tokens.StatusActive || !slices.Equal(one.Scopes, alice.Scopes) ||
			one.AcademyUser != "John Doe" || one.AccessExpiresAt.Sub(alice.AccessExpiresAt).Abs() > time.Millisecond {
			t.Errorf("connections show alice --json = %+v", one)
		}

		out = f.ok("connections", "show", "bob")
		noTokens("connections show", out)
		if !strings.Contains(out, "bob") || !strings.Contains(out, "reauth_required") || strings.Contains(out, "alice") {
			t.Errorf("connections show bob table:\n%s", out)
		}
		f.fail(1, "nobody has no connection", "connections", "show", "nobody")
	})

	t.Run("revoke", func(t *testing.T) {
		if st := bearerStatus(t, f.simURL+"/info", john.AccessToken); st != http.StatusOK {
			t.Fatalf("alice's token at the Academy before revoke: %d", st)
		}
		out := f.ok("connections", "revoke", "alice")
		if !strings.Contains(out, "alice") {
			t.Errorf("connections revoke printed %q", out)
		}
		if _, err := f.store.Connection(ctx, "alice"); !errors.Is(err, tokens.ErrNotConnected) {
			t.Errorf("alice after revoke: %v, want ErrNotConnected", err)
		}
		if n := f.sim.Stats().Invalidations; n != 1 {
			t.Errorf("the Academy saw %d invalidations, want 1", n)
		}
		if st := bearerStatus(t, f.simURL+"/info", john.AccessToken); st != http.StatusUnauthorized {
			t.Errorf("alice's token at the Academy after revoke: %d, want 401", st)
		}

		// bob's tokens are not live at the Academy: whatever the Academy says (or whether it is
		// asked at all), revoke deletes them.
		f.ok("connections", "revoke", "bob")
		if _, err := f.store.Connection(ctx, "bob"); !errors.Is(err, tokens.ErrNotConnected) {
			t.Errorf("bob after revoke: %v, want ErrNotConnected", err)
		}
		if n := f.sim.Stats().Invalidations; n != 1 {
			t.Errorf("the Academy saw %d successful invalidations, want still 1", n)
		}
		f.fail(1, "nobody", "connections", "revoke", "nobody")
		if out := f.ok("connections", "list", "--json"); strings.Contains(out, "alice") || strings.Contains(out, "bob") {
			t.Errorf("connections list after revoking both: %s", out)
		}
	})
}

// bearerStatus sends a GET with a bearer token and returns the status.
func bearerStatus(t *testing.T, u, token string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// closedPortURL returns a redis:// URL on a loopback port nothing listens on.
func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "redis://" + addr + "/0"
}

// TestCLIExitCodes: usage and configuration mistakes exit 2 with a message naming the flag or
// key; other failures exit 1 (docs/reference.md §2). None of these needs Redis, except that a store that
// cannot be reached is a failure, not a usage error.
func TestCLIExitCodes(t *testing.T) {
	t.Parallel()
	valid := `
oauth:
  client_id: id
  client_secret: secret
security:
  encryption_keys: ["` + cliEncryptionKey + `"]
redis:
  url: "` + closedPortURL(t) + `"
`
	tests := []struct {
		name   string
		args   []string
		config string // file content; "" means the valid configuration
		env    map[string]string
		bare   bool // run args as they are, without --config
		code   int
		msg    string
	}{
		{name: "no command", args: []string{}, bare: true, code: 2, msg: "no command"},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, msg: `unknown command "frobnicate"`},
		{name: "keys without subcommand", args: []string{"keys"}, bare: true, code: 2, msg: "keys: want create, list, revoke, import or reindex"},
		{name: "keys unknown subcommand", args: []string{"keys", "rotate"}, code: 2, msg: `"rotate"`},
		{name: "keys create without --user", args: []string{"keys", "create", "--scopes", "read"}, code: 2, msg: "--user"},
		{name: "keys create bad --user", args: []string{"keys", "create", "--user", "a{b}"}, code: 2, msg: "--user"},
		{name: "keys create bad --scopes", args: []string{"keys", "create", "--user", "alice", "--scopes", "read,admin"}, code: 2, msg: `"admin"`},
		{name: "keys create bad --key", args: []string{"keys", "create", "--user", "alice", "--key", "agw_typo"}, code: 2, msg: "--key"},
		{name: "keys create --key agw_abc says what a key is", args: []string{"keys", "create", "--user", "alice", "--key", "agw_abc"}, code: 2, msg: "--key: malformed API key: " + tokens.KeyRule},
		{name: "keys create --key of 3 characters", args: []string{"keys", "create", "--user", "alice", "--key", "abc"}, code: 2, msg: "12 to 512 printable ASCII characters"},
		{name: "keys create --key from an unset variable", args: []string{"keys", "create", "--user", "alice", "--key", ""}, code: 2, msg: "--key is empty (an unset variable?)"},
		{name: "keys create --key= empty", args: []string{"keys", "create", "--user", "alice", "--key="}, code: 2, msg: "--key is empty"},
		{name: "keys create unknown flag", args: []string{"keys", "create", "--user", "alice", "--bogus"}, code: 2, msg: "bogus"},
		{name: "keys revoke without id", args: []string{"keys", "revoke"}, code: 2, msg: "keys revoke: missing ID"},
		{name: "connections without subcommand", args: []string{"connections"}, bare: true, code: 2, msg: "connections: want"},
		{name: "connections show without user", args: []string{"connections", "show"}, code: 2, msg: "connections show: missing USER"},
		{name: "connections list with argument", args: []string{"connections", "list", "alice"}, code: 2, msg: "takes no arguments"},
		{name: "connections unknown subcommand", args: []string{"connections", "purge", "alice"}, code: 2, msg: `"purge"`},
		{
			name: "unknown key", args: []string{"check-config"}, code: 2, msg: "oauth.bogus",
			config: "oauth:\n  client_id: id\n  client_secret: secret\n  bogus: 1\nsecurity:\n  encryption_keys: [\"" + cliEncryptionKey + "\"]\n",
		},
		{
			name: "bad duration", args: []string{"check-config"}, code: 2, msg: "upstream.timeout",
			config: "upstream:\n  timeout: soon\noauth:\n  client_id: id\n  client_secret: secret\nsecurity:\n  encryption_keys: [\"" + cliEncryptionKey + "\"]\n",
		},
		{
			name: "bad duration from the environment", args: []string{"check-config"}, code: 2, msg: "upstream.timeout",
			env: map[string]string{"ACADEMY_GATEWAY_UPSTREAM_TIMEOUT": "soon"},
		},
		{
			name: "missing client secret", args: []string{"check-config"}, code: 2, msg: "oauth.client_secret",
			config: "oauth:\n  client_id: id\nsecurity:\n  encryption_keys: [\"" + cliEncryptionKey + "\"]\n",
		},
		{
			name: "client secret from an unset variable", args: []string{"check-config"}, code: 2, msg: "oauth.client_secret",
			config: "oauth:\n  client_id: id\n  client_secret: \"${UNSET_SECRET}\"\nsecurity:\n  encryption_keys: [\"" + cliEncryptionKey + "\"]\n",
		},
		{
			name: "bad encryption key", args: []string{"check-config"}, code: 2, msg: "security.encryption_keys",
			config: "oauth:\n  client_id: id\n  client_secret: secret\nsecurity:\n  encryption_keys: [\"c2hvcnQ=\"]\n",
		},
		{
			name: "a management command with a bad configuration", args: []string{"keys", "list"}, code: 2, msg: "oauth.client_secret",
			config: "oauth:\n  client_id: id\nsecurity:\n  encryption_keys: [\"" + cliEncryptionKey + "\"]\n",
		},
		{name: "Redis unreachable", args: []string{"keys", "list"}, code: 1, msg: "token store unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := tt.config
			if content == "" {
				content = valid
			}
			args := tt.args
			if !tt.bare {
				args = append(slices.Clone(tt.args), "--config", writeConfig(t, content))
			}
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), args, mapEnv(tt.env), &stdout, &stderr)
			wantExit(t, err, tt.code, tt.msg)
		})
	}

	t.Run("missing configuration file", func(t *testing.T) {
		err := run(t.Context(), []string{"check-config", "--config", filepath.Join(t.TempDir(), "absent.yaml")}, mapEnv(nil), io.Discard, io.Discard)
		wantExit(t, err, 2, "absent.yaml")
	})
}

// TestCLICheckConfig: a valid configuration is printed as YAML with every secret replaced by
// **** (the client secret, encryption keys, admin token and the Redis password), never the
// real values; ${VAR} and ACADEMY_GATEWAY_* overrides are applied.
func TestCLICheckConfig(t *testing.T) {
	t.Parallel()
	const (
		clientSecret  = "client-secret-value-42"
		adminToken    = "admin-token-value-42"
		redisPassword = "redis-password-42"
	)
	path := writeConfig(t, `
oauth:
  client_id: "gateway-client"
  client_secret: "${MY_CLIENT_SECRET}"
redis:
  url: "redis://default:`+redisPassword+`@127.0.0.1:6379/0"
security:
  encryption_keys: ["`+cliEncryptionKey+`"]
  admin_token: "`+adminToken+`"
`)
	env := mapEnv(map[string]string{
		"MY_CLIENT_SECRET":                 clientSecret,
		"ACADEMY_GATEWAY_UPSTREAM_TIMEOUT": "45s",
	})
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"check-config", "--config", path}, env, &stdout, &stderr); err != nil {
		t.Fatalf("check-config: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, secret := range []string{clientSecret, adminToken, redisPassword, cliEncryptionKey} {
		if strings.Contains(out, secret) || strings.Contains(stderr.String(), secret) {
			t.Errorf("check-config printed the secret %q:\n%s", secret, out)
		}
	}
	header, body, _ := strings.Cut(out, "\n")
	if !strings.HasPrefix(header, "# configuration is valid") || !strings.Contains(header, path) {
		t.Errorf("first line = %q, want it to say the configuration in %s is valid", header, path)
	}
	var printed struct {
		Upstream struct {
			Timeout string `yaml:"timeout"`
		} `yaml:"upstream"`
		OAuth struct {
			ClientID     string `yaml:"client_id"`
			ClientSecret string `yaml:"client_secret"`
		} `yaml:"oauth"`
		Redis struct {
			URL string `yaml:"url"`
		} `yaml:"redis"`
		Security struct {
			EncryptionKeys []string `yaml:"encryption_keys"`
			AdminToken     string   `yaml:"admin_token"`
		} `yaml:"security"`
	}
	if err := yaml.Unmarshal([]byte(body), &printed); err != nil {
		t.Fatalf("check-config output is not YAML: %v\n%s", err, body)
	}
	if printed.OAuth.ClientSecret != "****" || !slices.Equal(printed.Security.EncryptionKeys, []string{"****"}) ||
		printed.Security.AdminToken != "****" || printed.Redis.URL != "redis://default:****@127.0.0.1:6379/0" {
		t.Errorf("secrets printed as %+v, want ****", printed)
	}
	if printed.OAuth.ClientID != "gateway-client" || printed.Upstream.Timeout != "45s" {
		t.Errorf("effective values: client_id %q, upstream.timeout %q; want gateway-client and the override 45s",
			printed.OAuth.ClientID, printed.Upstream.Timeout)
	}
}

// TestCLIVersionAndHelp: version names the program and the Go version; help prints the usage
// and succeeds.
func TestCLIVersionAndHelp(t *testing.T) {
	t.Parallel()
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"version"}, mapEnv(nil), &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if out := stdout.String(); !strings.HasPrefix(out, "academy-gateway ") || !strings.Contains(out, runtime.Version()) || !strings.Contains(out, "commit") {
		t.Errorf("version printed %q, want academy-gateway, the commit and %s", out, runtime.Version())
	}
	stdout.Reset()
	if err := run(t.Context(), []string{"help"}, mapEnv(nil), &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"serve", "demo", "sim", "keys create", "connections authorize", "check-config", "version"} {
		if !strings.Contains(stdout.String(), cmd) {
			t.Errorf("help lacks %q:\n%s", cmd, stdout.String())
		}
	}
}

// TestCLIUsage: every command's --help succeeds on stdout with its synopsis (positional
// arguments shown); the command groups and the program answer --help too; junk arguments and
// unknown flags are usage errors reported once (exit 2), nothing printed by the flag package.
func TestCLIUsage(t *testing.T) {
	t.Parallel()
	type helpCase struct {
		args []string
		want string // the first line of stdout
	}
	helps := []helpCase{
		{args: []string{"--help"}, want: "usage: academy-gateway <command> [flags] [arguments]"},
		{args: []string{"-h"}, want: "usage: academy-gateway <command> [flags] [arguments]"},
		{args: []string{"help"}, want: "usage: academy-gateway <command> [flags] [arguments]"},
		{args: []string{"keys", "--help"}, want: "usage: academy-gateway keys <subcommand> [flags] [arguments]"},
		{args: []string{"connections", "-h"}, want: "usage: academy-gateway connections <subcommand> [flags] [arguments]"},
		{args: []string{"help", "keys", "revoke"}, want: "usage: academy-gateway keys revoke [flags] ID"},
	}
	for _, c := range commands {
		helps = append(helps, helpCase{args: append(strings.Fields(c.name), "--help"), want: "usage: " + usageLine(c)})
	}
	for _, tt := range helps {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if err := run(t.Context(), tt.args, mapEnv(nil), &stdout, &stderr); err != nil {
				t.Fatalf("exit status %d: %v", exitCode(err, io.Discard), err)
			}
			if first, _, _ := strings.Cut(stdout.String(), "\n"); first != tt.want {
				t.Errorf("first line %q, want %q\n%s", first, tt.want, stdout.String())
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr %q, want nothing", stderr.String())
			}
		})
	}
	if out := runCLI(t, mapEnv(nil), "keys", "create", "--help"); !strings.Contains(out, "--user USER") || !strings.Contains(out, "--key KEY") {
		t.Errorf("keys create --help does not show --user USER and --key KEY:\n%s", out)
	}
	if out := runCLI(t, mapEnv(nil), "--version"); !strings.HasPrefix(out, "academy-gateway ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("--version printed %q", out)
	}

	junk := []struct {
		args []string
		msg  string
	}{
		{[]string{"version", "--bogus"}, "version: unknown flag --bogus (see academy-gateway version --help)"},
		{[]string{"version", "extra"}, `version: takes no arguments, got "extra"`},
		{[]string{"serve", "extra"}, `serve: takes no arguments, got "extra"`},
		{[]string{"check-config", "extra"}, `check-config: takes no arguments, got "extra"`},
		{[]string{"rekey", "extra"}, `rekey: takes no arguments, got "extra"`},
		{[]string{"keys", "create", "alice"}, `keys create: takes no arguments, got "alice" (usage: academy-gateway keys create --user USER [flags])`},
		{[]string{"keys", "revoke", "a", "b"}, `keys revoke: unexpected argument "b" (usage: academy-gateway keys revoke [flags] ID)`},
		{[]string{"connections", "show", "alice", "bob"}, `connections show: unexpected argument "bob"`},
		{[]string{"connections", "show", "a{b}"}, `connections show: "a{b}" is not a user id`},
		{[]string{"sim", "--minute", "soon"}, `sim: invalid value "soon" for flag -minute`},
		{[]string{"demo", "--bogus"}, "demo: unknown flag --bogus"},
		{[]string{"keys", "list", "--bogus"}, "keys list: unknown flag --bogus"},
		{[]string{"--bogus"}, `unknown command "--bogus" (see academy-gateway --help)`},
	}
	for _, tt := range junk {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tt.args, mapEnv(nil), &stdout, &stderr)
			wantExit(t, err, 2, tt.msg)
			if stdout.Len() != 0 || stderr.Len() != 0 {
				t.Errorf("printed stdout %q stderr %q besides the error, want nothing (the error is printed once, by main)", stdout.String(), stderr.String())
			}
		})
	}
	t.Run("a positional after --", func(t *testing.T) {
		f, _ := env{stdout: io.Discard, stderr: io.Discard}.newFlags("keys revoke")
		pos, err := parse(f, []string{"--", "-dash-id"})
		if err != nil || !slices.Equal(pos, []string{"-dash-id"}) {
			t.Errorf("parse(-- -dash-id) = %q, %v; want the argument", pos, err)
		}
	})
}

// TestCLIEnvironment: the README's exports work with no configuration file, and a mistyped
// ACADEMY_GATEWAY_* variable in the process environment is a configuration error naming it
// (exit 2), as main passes the environment.
func TestCLIEnvironment(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"ACADEMY_CLIENT_ID": "readme-id", "ACADEMY_CLIENT_SECRET": "readme-secret-value",
		"ACADEMY_GATEWAY_ENCRYPTION_KEY": cliEncryptionKey, "ACADEMY_GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/0",
	}
	environ := func(m map[string]string) func() []string {
		return func() []string {
			var out []string
			for k, v := range m {
				out = append(out, k+"="+v)
			}
			return out
		}
	}
	var stdout, stderr bytes.Buffer
	e := env{getenv: mapEnv(vars), environ: environ(vars), stdout: &stdout, stderr: &stderr}
	if err := e.run(t.Context(), []string{"check-config"}); err != nil {
		t.Fatalf("check-config with the README's variables and no file: %v", err)
	}
	if !strings.Contains(stdout.String(), "client_id: readme-id") || strings.Contains(stdout.String(), "readme-secret-value") {
		t.Errorf("check-config printed:\n%s", stdout.String())
	}

	typo := map[string]string{"ACADEMY_GATEWAY_REDIS_URLL": "redis://127.0.0.1:6379/0"}
	for k, v := range vars {
		typo[k] = v
	}
	e = env{getenv: mapEnv(typo), environ: environ(typo), stdout: io.Discard, stderr: io.Discard}
	wantExit(t, e.run(t.Context(), []string{"check-config"}), 2, "ACADEMY_GATEWAY_REDIS_URLL: unknown environment variable")
}
