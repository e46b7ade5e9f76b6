package admin_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"go.yaml.in/yaml/v3"

	"github.com/academy-gateway/academy-gateway/admin"
	"github.com/academy-gateway/academy-gateway/audit"
	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/onboard"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// The real implementations satisfy the admin API's consumer-side interfaces.
var (
	_ admin.Store      = (*tokens.Store)(nil)
	_ admin.Revoker    = (*tokens.Manager)(nil)
	_ admin.Authorizer = (*onboard.Service)(nil)
)

const adminToken = "s3cret-admin-token"

var bearer = "Bearer " + adminToken

// env is the admin API over the real stack: redis-server, tokens.Store, tokens.Manager and
// onboard.Service, with an httptest Academy that counts invalidations.
type env struct {
	rs            *redistest.Server
	store         *tokens.Store
	h             *admin.Handler
	logs          *observer.ObservedLogs
	invalidations atomic.Int64
	invalidated   chan string // access tokens the Academy was asked to invalidate
}

// newEnv builds the stack over a fresh redis-server; tune, if given, adjusts the Redis client.
func newEnv(t *testing.T, tune ...func(*redis.Options)) *env {
	t.Helper()
	e := &env{rs: redistest.Start(t), invalidated: make(chan string, 10)}
	rdb := e.rs.Client(t)
	if len(tune) > 0 {
		o := &redis.Options{Addr: e.rs.Addr}
		for _, f := range tune {
			f(o)
		}
		rdb = redis.NewClient(o)
		t.Cleanup(func() { rdb.Close() })
	}
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/invalidate" {
			http.NotFound(w, r)
			return
		}
		e.invalidations.Add(1)
		e.invalidated <- strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{}`)
	}))
	t.Cleanup(fake.Close)

	kr, err := tokens.NewKeyring([]string{randomKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry(), "test")
	e.store = tokens.NewStore(rdb, "agw:", kr, m, nil)
	academy := tokens.NewAcademy(&http.Client{Timeout: 5 * time.Second}, tokens.AcademyConfig{
		ClientID: "c", ClientSecret: "s",
		TokenURL: fake.URL + "/token", RefreshURL: fake.URL + "/refresh",
		InfoURL: fake.URL + "/info", InvalidateURL: fake.URL + "/invalidate",
		Retries: -1,
	})
	mgr := tokens.NewManager(e.store, academy, m, tokens.ManagerOptions{})
	ob := onboard.New(e.store, academy, onboard.Options{
		RedirectURL:  mustParse(t, "http://127.0.0.1:8080/oauth/callback"),
		AuthorizeURL: fake.URL + "/authorize",
		ClientID:     "c",
		Scopes:       []string{"connect", "read"},
	})
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	e.h = admin.New(e.store, mgr, ob, admin.Options{Token: adminToken, Logger: zap.New(core), Audit: audit.New(zap.New(core))})
	return e
}

func randomKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// call sends one request to h; auth is the Authorization header ("" for none).
func call(t *testing.T, h http.Handler, method, path, auth, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func (e *env) call(t *testing.T, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	return call(t, e.h, method, path, bearer, body)
}

// object decodes a JSON object answer.
func object(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("answer %q is not a JSON object: %v", rec.Body, err)
	}
	return m
}

// fieldNames returns the sorted names of m's fields.
func fieldNames(m map[string]any) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// wantError checks that rec is the JSON error of status and code.
func wantError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Errorf("status = %d, want %d (body %s)", rec.Code, status, rec.Body)
	}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("error body: %v", err)
	}
	if body.Error.Code != code || body.Error.Message == "" {
		t.Errorf("error = %+v, want code %q and a message", body.Error, code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
}

// seed stores the connections the connection tests use.
func (e *env) seed(t *testing.T, now time.Time) (alice, bob tokens.Connection) {
	t.Helper()
	ctx := context.Background()
	alice = tokens.Connection{User: "alice", Status: tokens.StatusActive, Scopes: []string{"connect", "read"},
		AccessToken: "at-alice-secret", RefreshToken: "rt-alice-secret", IssuedAt: now,
		AccessExpiresAt: now.Add(time.Hour), RefreshExpiresAt: now.Add(30 * 24 * time.Hour),
		AcademyID: "42", AcademyUser: "alice@academy", UpdatedAt: now}
	bob = tokens.Connection{User: "bob", Status: tokens.StatusReauthRequired, Scopes: []string{"read"},
		AccessToken: "at-bob-secret", RefreshToken: "rt-bob-secret", IssuedAt: now,
		AccessExpiresAt: now.Add(-time.Minute), AcademyUser: "bob@academy", UpdatedAt: now}
	for _, c := range []tokens.Connection{alice, bob} {
		if _, err := e.store.PutConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	return alice, bob
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name    string
		headers []string // Authorization values
		path    string
		want    int
	}{
		{"no header", nil, "/admin/connections", 401},
		{"wrong token", []string{"Bearer nope"}, "/admin/connections", 401},
		{"token prefix", []string{"Bearer " + adminToken[:5]}, "/admin/connections", 401},
		{"token and more", []string{bearer + "x"}, "/admin/connections", 401},
		{"basic scheme", []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+adminToken))}, "/admin/connections", 401},
		{"token without scheme", []string{adminToken}, "/admin/connections", 401},
		{"empty bearer", []string{"Bearer "}, "/admin/connections", 401},
		{"two headers", []string{bearer, bearer}, "/admin/connections", 401},
		{"correct token", []string{bearer}, "/admin/connections", 200},
		{"scheme case-insensitive", []string{"bearer " + adminToken}, "/admin/connections", 200},
		{"no header, unknown path", nil, "/admin/nope", 401},
		{"no header, wrong method", nil, "/admin/keys/0123456789abcdef", 401},
		{"correct token, unknown path", []string{bearer}, "/admin/nope", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := http.MethodGet
			req := httptest.NewRequest(method, tt.path, nil)
			for _, v := range tt.headers {
				req.Header.Add("Authorization", v)
			}
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status = %d, want %d (body %s)", rec.Code, tt.want, rec.Body)
			}
			switch tt.want {
			case 401:
				if got, want := rec.Header().Get("WWW-Authenticate"), `Bearer realm="academy-gateway-admin"`; got != want {
					t.Errorf("WWW-Authenticate = %q, want %q", got, want)
				}
				wantError(t, rec, 401, "unauthorized")
			case 404:
				wantError(t, rec, 404, "not_found")
			}
		})
	}
}

// instantiate fills a route template's variables.
func instantiate(path string) string {
	return strings.NewReplacer("{id}", "0123456789abcdef", "{user}", "alice").Replace(path)
}

func TestDisabled(t *testing.T) {
	// No dependencies at all: a disabled API must not touch them.
	h := admin.New(nil, nil, nil, admin.Options{})
	routes := h.Routes()
	if len(routes) == 0 {
		t.Fatal("Routes() is empty")
	}
	paths := []admin.Route{{Method: http.MethodGet, Path: "/admin/"}, {Method: http.MethodGet, Path: "/admin/nope"},
		{Method: http.MethodPut, Path: "/admin/keys"}}
	paths = append(paths, routes...)
	for _, r := range paths {
		for _, auth := range []string{"", "Bearer ", "Bearer x", bearer} {
			t.Run(r.Method+" "+r.Path+" "+auth, func(t *testing.T) {
				body := ""
				if r.Method == http.MethodPost {
					body = `{"user":"alice"}`
				}
				rec := call(t, h, r.Method, instantiate(r.Path), auth, body)
				wantError(t, rec, 404, "not_found")
				if rec.Header().Get("WWW-Authenticate") != "" {
					t.Error("a disabled API sent a challenge")
				}
			})
		}
	}
}

func TestCreateKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	legacy := "legacy-v1-" + base64.RawURLEncoding.EncodeToString([]byte("0123456789"))
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantCode   string   // for errors
		wantScopes []string // for 201
		wantKey    string   // for 201 when registering; "" for an issued key
	}{
		{name: "new key", body: `{"user":"alice","scopes":["read","write"],"name":"reporting"}`, wantStatus: 201, wantScopes: []string{"read", "write"}},
		{name: "no scopes", body: `{"user":"alice"}`, wantStatus: 201, wantScopes: []string{}},
		{name: "repeated scopes", body: `{"user":"alice","scopes":["read","read","delete"]}`, wantStatus: 201, wantScopes: []string{"read", "delete"}},
		{name: "legacy key", body: `{"user":"bob","key":"` + legacy + `","name":"old client"}`, wantStatus: 201, wantScopes: []string{}, wantKey: legacy},
		{name: "duplicate legacy key", body: `{"user":"carol","key":"` + legacy + `"}`, wantStatus: 409, wantCode: "conflict"},
		{name: "gateway key with bad checksum", body: `{"user":"bob","key":"agw_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "key too long", body: `{"user":"bob","key":"` + strings.Repeat("k", 513) + `"}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "malformed JSON", body: `{"user":"alice"`, wantStatus: 400, wantCode: "bad_request"},
		{name: "not an object", body: `["alice"]`, wantStatus: 400, wantCode: "bad_request"},
		{name: "empty body", body: ``, wantStatus: 400, wantCode: "bad_request"},
		{name: "trailing data", body: `{"user":"alice"} {}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "unknown field", body: `{"user":"alice","admin":true}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "wrong type", body: `{"user":"alice","scopes":"read"}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "bad scope", body: `{"user":"alice","scopes":["read","admin"]}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "connect is not a key scope", body: `{"user":"alice","scopes":["connect"]}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "no user", body: `{"scopes":["read"]}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "bad user", body: `{"user":"a{b}"}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "user too long", body: `{"user":"` + strings.Repeat("u", 129) + `"}`, wantStatus: 400, wantCode: "bad_request"},
		{name: "body over 64 KiB", body: `{"user":"alice","name":"` + strings.Repeat("n", 64<<10) + `"}`, wantStatus: 400, wantCode: "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now().UTC()
			rec := e.call(t, http.MethodPost, "/admin/keys", tt.body)
			if tt.wantStatus != 201 {
				wantError(t, rec, tt.wantStatus, tt.wantCode)
				return
			}
			if rec.Code != 201 {
				t.Fatalf("status = %d, want 201 (body %s)", rec.Code, rec.Body)
			}
			if got := rec.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			if diff := cmp.Diff([]string{"created_at", "id", "key", "name", "scopes", "user"}, fieldNames(object(t, rec))); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
			var got struct {
				ID, Key, User, Name string
				Scopes              []string
				CreatedAt           time.Time `json:"created_at"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			var req struct{ User, Name string }
			_ = json.Unmarshal([]byte(tt.body), &req)
			if got.User != req.User || got.Name != req.Name || got.ID == "" {
				t.Errorf("created %+v, want user %q and name %q", got, req.User, req.Name)
			}
			if diff := cmp.Diff(tt.wantScopes, got.Scopes); diff != "" {
				t.Errorf("scopes (-want +got):\n%s", diff)
			}
			if got.CreatedAt.Before(before.Add(-time.Second)) || got.CreatedAt.After(time.Now().Add(time.Second)) {
				t.Errorf("created_at = %s, want about now", got.CreatedAt)
			}
			switch {
			case tt.wantKey != "" && got.Key != tt.wantKey:
				t.Errorf("key = %q, want the registered %q", got.Key, tt.wantKey)
			case tt.wantKey == "" && (!strings.HasPrefix(got.Key, tokens.KeyPrefix) || !tokens.WellFormed(got.Key)):
				t.Errorf("key = %q, want a fresh %s key", got.Key, tokens.KeyPrefix)
			}
			// The key works: the request path finds it by its hash.
			k, err := e.store.KeyByHash(ctx, tokens.HashKey(got.Key))
			if err != nil {
				t.Fatalf("KeyByHash(created key): %v", err)
			}
			if k.ID != got.ID || k.User != got.User {
				t.Errorf("stored key %+v, want id %s of %s", k, got.ID, got.User)
			}
		})
	}
}

func TestListKeys(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	created := map[string]string{} // id → key
	for _, k := range []struct {
		user   string
		scopes []string
	}{{"alice", []string{"read"}}, {"alice", nil}, {"bob", []string{"write", "delete"}}} {
		rec, key, err := e.store.IssueKey(ctx, k.user, k.scopes, "key of "+k.user, "")
		if err != nil {
			t.Fatal(err)
		}
		created[rec.ID] = key
	}
	// Mark one of bob's uses, so last_used_at shows.
	bobKeys, err := e.store.Keys(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	used := time.Now().UTC().Truncate(time.Millisecond)
	if err := e.store.TouchKeys(ctx, map[string]time.Time{bobKeys[0].ID: used}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		query     string
		wantUsers []string // users of the listed keys, in order
	}{
		{"one user", "?user=alice", []string{"alice", "alice"}},
		{"other user", "?user=bob", []string{"bob"}},
		{"all users", "", []string{"alice", "alice", "bob"}},
		{"empty user means all", "?user=", []string{"alice", "alice", "bob"}},
		{"user without keys", "?user=nobody", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.call(t, http.MethodGet, "/admin/keys"+tt.query, "")
			if rec.Code != 200 {
				t.Fatalf("status = %d, want 200 (body %s)", rec.Code, rec.Body)
			}
			if diff := cmp.Diff([]string{"keys"}, fieldNames(object(t, rec))); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
			if len(tt.wantUsers) == 0 && strings.TrimSpace(rec.Body.String()) != `{"keys":[]}` {
				t.Errorf("body = %s, want {\"keys\":[]}", rec.Body)
			}
			for _, key := range created {
				if strings.Contains(rec.Body.String(), key) || strings.Contains(rec.Body.String(), tokens.HashKey(key)) {
					t.Errorf("the list shows a key or its hash: %s", rec.Body)
				}
			}
			var got struct{ Keys []map[string]any }
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			users := []string{}
			for _, k := range got.Keys {
				users = append(users, k["user"].(string))
				want := []string{"created_at", "id", "name", "scopes", "user"}
				if k["id"] == bobKeys[0].ID {
					want = []string{"created_at", "id", "last_used_at", "name", "scopes", "user"}
					if k["last_used_at"] != used.Format(time.RFC3339Nano) {
						t.Errorf("last_used_at = %v, want %s", k["last_used_at"], used.Format(time.RFC3339Nano))
					}
				}
				if diff := cmp.Diff(want, fieldNames(k)); diff != "" {
					t.Errorf("fields of key %v (-want +got):\n%s", k["id"], diff)
				}
				if _, ok := created[k["id"].(string)]; !ok {
					t.Errorf("listed unknown key id %v", k["id"])
				}
				if k["scopes"] == nil {
					t.Errorf("scopes of %v is null, want a list", k["id"])
				}
			}
			if diff := cmp.Diff(tt.wantUsers, users); diff != "" {
				t.Errorf("users (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("bad user", func(t *testing.T) {
		wantError(t, e.call(t, http.MethodGet, "/admin/keys?user=%7Bx%7D", ""), 400, "bad_request")
	})
}

func TestDeleteKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	k, key, err := e.store.IssueKey(ctx, "alice", nil, "", "")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name       string
		id         string
		wantStatus int
	}{
		{"delete", k.ID, 204},
		{"again", k.ID, 404},
		{"unknown id", "0123456789abcdef", 404},
		{"not an id", "zz", 404},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			rec := e.call(t, http.MethodDelete, "/admin/keys/"+s.id, "")
			if s.wantStatus != 204 {
				wantError(t, rec, s.wantStatus, "not_found")
				return
			}
			if rec.Code != 204 || rec.Body.Len() != 0 {
				t.Fatalf("answer = %d %q, want 204 and no body", rec.Code, rec.Body)
			}
			if _, err := e.store.KeyByHash(ctx, tokens.HashKey(key)); !errors.Is(err, tokens.ErrUnknownKey) {
				t.Errorf("KeyByHash(deleted key) = %v, want ErrUnknownKey", err)
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name       string
		user       string
		body       string
		wantStatus int
		wantNewID  bool
	}{
		{"valid user", "alice", "", 200, false},
		{"user with dots and at", "a.b+c@example.com", "", 200, false},
		{"new identity allowed", "alice", `{"allow_new_identity":true}`, 200, true},
		{"new identity not allowed", "alice", `{"allow_new_identity":false}`, 200, false},
		{"unknown field", "alice", `{"new_identity":true}`, 400, false},
		{"bad user", url.PathEscape("a{b}"), "", 400, false},
		{"user too long", strings.Repeat("u", 129), "", 400, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			audited := e.logs.FilterLoggerName("audit").Len()
			rec := e.call(t, http.MethodPost, "/admin/connections/"+tt.user+"/authorize", tt.body)
			if tt.wantStatus != 200 {
				wantError(t, rec, tt.wantStatus, "bad_request")
				return
			}
			if rec.Code != 200 {
				t.Fatalf("status = %d, want 200 (body %s)", rec.Code, rec.Body)
			}
			if diff := cmp.Diff([]string{"authorize_url", "expires_at"}, fieldNames(object(t, rec))); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
			var got struct {
				URL       string    `json:"authorize_url"`
				ExpiresAt time.Time `json:"expires_at"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got.URL, "http://127.0.0.1:8080/oauth/start?ticket=") || len(got.URL) <= len("http://127.0.0.1:8080/oauth/start?ticket=") {
				t.Errorf("authorize_url = %q, want an onboarding link with a ticket", got.URL)
			}
			if d := time.Until(got.ExpiresAt); d < onboard.TicketTTL-5*time.Second || d > onboard.TicketTTL+time.Second {
				t.Errorf("expires_at = %s, %s from now; want about %s", got.ExpiresAt, d, onboard.TicketTTL)
			}
			// The link's ticket is live: it binds a state for the user.
			u := mustParse(t, got.URL)
			state, _, err := e.store.BindState(context.Background(), u.Query().Get("ticket"))
			if err != nil {
				t.Fatalf("the issued ticket does not work: %v", err)
			}
			tk, err := e.store.ConsumeTicket(context.Background(), state)
			if err != nil || tk.AllowNewIdentity != tt.wantNewID {
				t.Errorf("ticket = %+v, %v; want allow_new_identity %v stored with it", tk, err, tt.wantNewID)
			}
			// One audit line, with where the request came from and never the link.
			lines := e.logs.FilterLoggerName("audit").All()[audited:]
			if len(lines) != 1 || lines[0].ContextMap()["action"] != "link.issued" || lines[0].ContextMap()["from"] == "" ||
				lines[0].ContextMap()["allow_new_identity"] != tt.wantNewID ||
				strings.Contains(fmt.Sprint(lines[0].ContextMap()), u.Query().Get("ticket")) {
				t.Errorf("audit lines %+v, want one link.issued with from and no ticket", lines)
			}
		})
	}
}

func TestConnections(t *testing.T) {
	e := newEnv(t)
	t.Run("empty list", func(t *testing.T) {
		rec := e.call(t, http.MethodGet, "/admin/connections", "")
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"connections":[]}` {
			t.Errorf("answer = %d %s, want 200 {\"connections\":[]}", rec.Code, rec.Body)
		}
	})

	now := time.Now().UTC().Truncate(time.Second)
	alice, bob := e.seed(t, now)
	// carol's record was sealed with a key this gateway does not have.
	other, err := tokens.NewKeyring([]string{randomKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	foreign := tokens.NewStore(e.rs.Client(t), "agw:", other, metrics.New(prometheus.NewRegistry(), "test"), nil)
	if _, err := foreign.PutConnection(context.Background(), tokens.Connection{User: "carol", Status: tokens.StatusActive,
		AccessToken: "at-carol", RefreshToken: "rt-carol", UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}

	ts := func(t time.Time) string { return t.Format(time.RFC3339) }
	wantAlice := map[string]any{"user": "alice", "status": "active", "scopes": []any{"connect", "read"},
		"academy_user": "alice@academy", "access_expires_at": ts(alice.AccessExpiresAt),
		"refresh_expires_at": ts(alice.RefreshExpiresAt), "updated_at": ts(now)}
	wantBob := map[string]any{"user": "bob", "status": "reauth_required", "scopes": []any{"read"},
		"academy_user": "bob@academy", "access_expires_at": ts(bob.AccessExpiresAt), "updated_at": ts(now)}
	zero := ts(time.Time{})
	wantCarol := map[string]any{"user": "carol", "status": "undecryptable", "scopes": []any{},
		"academy_user": "", "access_expires_at": zero, "updated_at": zero}

	t.Run("list", func(t *testing.T) {
		rec := e.call(t, http.MethodGet, "/admin/connections", "")
		if rec.Code != 200 {
			t.Fatalf("status = %d, want 200 (body %s)", rec.Code, rec.Body)
		}
		want := map[string]any{"connections": []any{wantAlice, wantBob, wantCarol}}
		if diff := cmp.Diff(want, object(t, rec)); diff != "" {
			t.Errorf("answer (-want +got):\n%s", diff)
		}
		if strings.Contains(rec.Body.String(), "secret") {
			t.Errorf("the list shows a token: %s", rec.Body)
		}
	})

	shows := []struct {
		user       string
		wantStatus int
		want       map[string]any
		wantCode   string
	}{
		{"alice", 200, wantAlice, ""},
		{"bob", 200, wantBob, ""},
		{"carol", 200, wantCarol, ""},
		{"dave", 404, nil, "not_found"},
		{url.PathEscape("a{b}"), 400, nil, "bad_request"},
	}
	for _, s := range shows {
		t.Run("show "+s.user, func(t *testing.T) {
			rec := e.call(t, http.MethodGet, "/admin/connections/"+s.user, "")
			if s.want == nil {
				wantError(t, rec, s.wantStatus, s.wantCode)
				return
			}
			if rec.Code != s.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", rec.Code, s.wantStatus, rec.Body)
			}
			if diff := cmp.Diff(s.want, object(t, rec)); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRevokeConnection(t *testing.T) {
	e := newEnv(t)
	e.seed(t, time.Now().UTC())
	steps := []struct {
		name              string
		user              string
		wantStatus        int
		wantCode          string
		wantInvalidations int64 // in total, after the step
	}{
		{"active connection", "alice", 204, "", 1},
		{"again", "alice", 404, "not_found", 1},
		// A connection that needs re-authorization has no live grant to invalidate.
		{"reauth_required connection", "bob", 204, "", 1},
		{"never connected", "dave", 404, "not_found", 1},
		{"bad user", url.PathEscape("a{b}"), 400, "bad_request", 1},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			rec := e.call(t, http.MethodDelete, "/admin/connections/"+s.user, "")
			if s.wantStatus == 204 {
				if rec.Code != 204 || rec.Body.Len() != 0 {
					t.Fatalf("answer = %d %q, want 204 and no body", rec.Code, rec.Body)
				}
				if _, err := e.store.Connection(context.Background(), s.user); !errors.Is(err, tokens.ErrNotConnected) {
					t.Errorf("Connection(%s) after revoke = %v, want ErrNotConnected", s.user, err)
				}
				wantError(t, e.call(t, http.MethodGet, "/admin/connections/"+s.user, ""), 404, "not_found")
			} else {
				wantError(t, rec, s.wantStatus, s.wantCode)
			}
			if got := e.invalidations.Load(); got != s.wantInvalidations {
				t.Errorf("Academy invalidations = %d, want %d", got, s.wantInvalidations)
			}
		})
	}
	if got := <-e.invalidated; got != "at-alice-secret" {
		t.Errorf("invalidated access token %q, want alice's", got)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		method, path string
		wantAllow    string
	}{
		{http.MethodPut, "/admin/keys", "GET, POST"},
		{http.MethodDelete, "/admin/keys", "GET, POST"},
		{http.MethodGet, "/admin/keys/0123456789abcdef", "DELETE"},
		{http.MethodPost, "/admin/connections", "GET"},
		{http.MethodPatch, "/admin/connections/alice", "GET, DELETE"},
		{http.MethodPost, "/admin/connections/alice", "GET, DELETE"},
		{http.MethodGet, "/admin/connections/alice/authorize", "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := e.call(t, tt.method, tt.path, "")
			wantError(t, rec, 405, "method_not_allowed")
			if got := rec.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
		})
	}
}

func TestStoreUnavailable(t *testing.T) {
	// Without retries a stopped Redis fails each call at once rather than after go-redis's
	// dial retries and backoff.
	e := newEnv(t, func(o *redis.Options) { o.MaxRetries, o.DialerRetries = -1, 1 })
	e.seed(t, time.Now().UTC())
	e.rs.Stop()
	tests := []struct{ method, path, body string }{
		{http.MethodPost, "/admin/keys", `{"user":"alice"}`},
		{http.MethodGet, "/admin/keys?user=alice", ""},
		{http.MethodDelete, "/admin/keys/0123456789abcdef", ""},
		{http.MethodPost, "/admin/connections/alice/authorize", ""},
		{http.MethodGet, "/admin/connections", ""},
		{http.MethodGet, "/admin/connections/alice", ""},
		{http.MethodDelete, "/admin/connections/alice", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := e.call(t, tt.method, tt.path, tt.body)
			wantError(t, rec, 503, "token_store_unavailable")
			if got := rec.Header().Get("Retry-After"); got == "" {
				t.Error("no Retry-After")
			}
		})
	}
	if n := e.invalidations.Load(); n != 0 {
		t.Errorf("Academy invalidations = %d with Redis down, want 0", n)
	}
}

// failingStore fails every call with an error the admin API does not know.
type failingStore struct{ err error }

func (f failingStore) IssueKey(context.Context, string, []string, string, string) (tokens.APIKey, string, error) {
	return tokens.APIKey{}, "", f.err
}
func (f failingStore) KeysPage(context.Context, string, string, int) ([]tokens.APIKey, string, error) {
	return nil, "", f.err
}
func (f failingStore) ConnectionsPage(context.Context, string, int) ([]tokens.Connection, string, error) {
	return nil, "", f.err
}
func (f failingStore) UsersPage(context.Context, string, int) ([]tokens.UserSummary, string, error) {
	return nil, "", f.err
}
func (f failingStore) ImportKeys(context.Context, []tokens.ImportEntry, bool) ([]tokens.ImportResult, error) {
	return nil, f.err
}
func (f failingStore) DeleteKey(context.Context, string) (tokens.APIKey, error) {
	return tokens.APIKey{}, f.err
}
func (f failingStore) Connection(context.Context, string) (tokens.Connection, error) {
	return tokens.Connection{}, f.err
}
func (f failingStore) Revoke(context.Context, string) error { return f.err }
func (f failingStore) Authorize(context.Context, string, bool) (string, time.Time, error) {
	return "", time.Time{}, f.err
}

func TestInternalError(t *testing.T) {
	cause := errors.New("disk on fire at 10.0.0.7")
	fs := failingStore{err: fmt.Errorf("wrapped: %w", cause)}
	core, logs := observer.New(zapcore.DebugLevel)
	h := admin.New(fs, fs, fs, admin.Options{Token: adminToken, Logger: zap.New(core)})
	for _, r := range h.Routes() {
		t.Run(r.Method+" "+r.Path, func(t *testing.T) {
			body := ""
			if r.Path == "/admin/keys" && r.Method == http.MethodPost {
				body = `{"user":"alice"}`
			}
			if r.Path == "/admin/keys/import" {
				body = `{"keys":[{"user":"alice","key":"legacy-key-0001"}]}`
			}
			rec := call(t, h, r.Method, instantiate(r.Path), bearer, body)
			if strings.Contains(rec.Body.String(), "fire") {
				t.Errorf("the answer leaks the cause: %s", rec.Body)
			}
			wantError(t, rec, 500, "internal")
		})
	}
	logged := logs.FilterLevelExact(zapcore.ErrorLevel).FilterField(zap.Error(fs.err)).Len()
	if want := len(h.Routes()); logged != want {
		t.Errorf("%d error entries carry the cause, want %d", logged, want)
	}
}

// TestNoSecretsLogged runs every kind of request and checks that no log entry holds the admin
// token, an API key, an onboarding ticket or an access token.
func TestNoSecretsLogged(t *testing.T) {
	e := newEnv(t)
	e.seed(t, time.Now().UTC())
	secrets := []string{adminToken, "at-alice-secret", "rt-alice-secret"}

	if rec := e.call(t, http.MethodPost, "/admin/keys", `{"user":"alice","key":"legacy-key-0001"}`); rec.Code != http.StatusCreated {
		t.Fatalf("register legacy key: %d", rec.Code)
	}
	secrets = append(secrets, "legacy-key-0001")
	rec := e.call(t, http.MethodPost, "/admin/keys", `{"user":"alice"}`)
	var created struct{ ID, Key string }
	_ = json.Unmarshal(rec.Body.Bytes(), &created)
	secrets = append(secrets, created.Key, tokens.HashKey(created.Key))
	rec = e.call(t, http.MethodPost, "/admin/connections/alice/authorize", "")
	var link struct {
		URL string `json:"authorize_url"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &link)
	secrets = append(secrets, mustParse(t, link.URL).Query().Get("ticket"))
	e.call(t, http.MethodPost, "/admin/keys", `{"user":"bob","key":"legacy-key-0001"}`)
	e.call(t, http.MethodPost, "/admin/keys", `{"user":"bob","key":"agw_`+strings.Repeat("a", 39)+`"}`)
	e.call(t, http.MethodPost, "/admin/keys", `{"user":"bob","key":"legacy-key-0002","extra":"legacy-key-0002"}`)
	secrets = append(secrets, "legacy-key-0002", "agw_"+strings.Repeat("a", 39))
	e.call(t, http.MethodGet, "/admin/keys", "")
	e.call(t, http.MethodDelete, "/admin/keys/"+created.ID, "")
	e.call(t, http.MethodDelete, "/admin/connections/alice", "")
	call(t, e.h, http.MethodGet, "/admin/connections", "Bearer "+adminToken+"x", "")
	call(t, e.h, http.MethodGet, "/admin/connections", "Basic "+adminToken, "")

	if e.logs.Len() == 0 {
		t.Fatal("nothing was logged")
	}
	for _, entry := range e.logs.All() {
		text := fmt.Sprint(entry.Message, entry.ContextMap())
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("log entry holds the secret %q: %s", s, text)
			}
		}
	}
}

// TestMounted checks the handler where cmd mounts it: under /admin/ of the ops router.
func TestMounted(t *testing.T) {
	e := newEnv(t)
	e.seed(t, time.Now().UTC())
	ops := mux.NewRouter()
	ops.Path("/healthz").HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})
	ops.PathPrefix("/admin/").Handler(e.h)
	rec := call(t, ops, http.MethodGet, "/admin/connections/alice", bearer, "")
	if rec.Code != 200 || object(t, rec)["user"] != "alice" {
		t.Errorf("answer = %d %s, want alice's connection", rec.Code, rec.Body)
	}
	wantError(t, call(t, ops, http.MethodGet, "/admin/connections/alice", "", ""), 401, "unauthorized")
}

// wantStatuses is every status each route documents (docs/reference.md §5 and the error codes).
var wantStatuses = map[admin.Route][]string{
	{Method: "POST", Path: "/admin/keys"}:                         {"201", "400", "401", "404", "405", "409", "500", "503"},
	{Method: "GET", Path: "/admin/keys"}:                          {"200", "400", "401", "404", "405", "500", "503"},
	{Method: "DELETE", Path: "/admin/keys/{id}"}:                  {"204", "401", "404", "405", "500", "503"},
	{Method: "POST", Path: "/admin/connections/{user}/authorize"}: {"200", "400", "401", "404", "405", "500", "503"},
	{Method: "GET", Path: "/admin/connections"}:                   {"200", "400", "401", "404", "405", "500", "503"},
	{Method: "POST", Path: "/admin/keys/import"}:                  {"200", "400", "401", "404", "405", "413", "415", "500", "503"},
	{Method: "GET", Path: "/admin/users"}:                         {"200", "400", "401", "404", "405", "500", "503"},
	{Method: "GET", Path: "/admin/connections/{user}"}:            {"200", "400", "401", "404", "405", "500", "503"},
	{Method: "DELETE", Path: "/admin/connections/{user}"}:         {"204", "400", "401", "404", "405", "500", "503"},
}

// plain drops the pattern of each path variable ({id:[0-9a-f]+} → {id}), on both sides.
func plain(path string) string {
	var b strings.Builder
	depth := 0
	skip := false
	for _, c := range path {
		switch {
		case c == '{':
			depth++
		case c == '}':
			depth--
			if depth == 0 {
				skip = false
			}
		case c == ':' && depth == 1:
			skip = true
		}
		if !skip {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// TestDocMatchesRoutes checks docs/admin-api.yaml against the router both ways: the same
// (method, path) pairs, and the statuses each route documents.
func TestDocMatchesRoutes(t *testing.T) {
	data, err := os.ReadFile("../docs/admin-api.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                          `yaml:"openapi"`
		Paths   map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("parse docs/admin-api.yaml: %v", err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	methods := []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}
	documented := map[admin.Route][]string{}
	for path, item := range doc.Paths {
		for key, node := range item {
			if !slices.Contains(methods, key) {
				continue // parameters, summary, …
			}
			var op struct {
				Responses map[string]yaml.Node `yaml:"responses"`
			}
			if err := node.Decode(&op); err != nil {
				t.Fatalf("%s %s: %v", key, path, err)
			}
			var codes []string
			for code := range op.Responses {
				codes = append(codes, code)
			}
			slices.Sort(codes)
			documented[admin.Route{Method: strings.ToUpper(key), Path: plain(path)}] = codes
		}
	}

	served := map[admin.Route]bool{}
	for _, r := range admin.New(nil, nil, nil, admin.Options{Token: "x"}).Routes() {
		r.Path = plain(r.Path)
		served[r] = true
		if _, ok := documented[r]; !ok {
			t.Errorf("%s %s is served but not in docs/admin-api.yaml", r.Method, r.Path)
		}
	}
	for r, codes := range documented {
		if !served[r] {
			t.Errorf("%s %s is in docs/admin-api.yaml but not served", r.Method, r.Path)
		}
		if diff := cmp.Diff(wantStatuses[r], codes); diff != "" {
			t.Errorf("statuses of %s %s (-want +documented):\n%s", r.Method, r.Path, diff)
		}
	}
	if len(served) != len(wantStatuses) {
		t.Errorf("%d routes served, wantStatuses lists %d", len(served), len(wantStatuses))
	}
}
