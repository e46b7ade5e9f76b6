package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/academy-gateway/academy-gateway/config"
)

// Test keys: base64 of exactly 32 bytes ("0123456789abcdef0123456789abcdef" and 32 × 'k').
const (
	testKey1 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	testKey2 = "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="
)

// specExample is the configuration of docs/reference.md §3, verbatim but for its comments' alignment.
const specExample = `listen:
  proxy: ":8080"            # legacy callers and the OAuth2 callback
  ops: ":9090"              # /metrics, /healthz, /readyz, /admin/
upstream:
  base_url: "https://app-academy.make.com/api/v2"   # request path (after strip_prefixes) is appended
  strip_prefixes: ["/api/v1", "/api/v2"]             # legacy v1 paths land on v2
  timeout: 30s
oauth:
  client_id: "${ACADEMY_CLIENT_ID}"
  client_secret: "${ACADEMY_CLIENT_SECRET}"
  authorize_url: "https://app-academy.make.com/api/v2/authorize"
  token_url: "https://app-academy.make.com/api/v2/token"
  refresh_url: "https://app-academy.make.com/api/v2/refresh"
  invalidate_url: "https://app-academy.make.com/api/v2/invalidate"
  redirect_url: "https://gateway.example.com/oauth/callback"  # its path is served on the proxy listener
  scopes: [connect, read, write, delete]
  refresh_before: 60s       # refresh when less than this remains (capped at half the token lifetime)
  expires_in_unit: 1m       # what one unit of expires_in / refresh_expires_in lasts: the Academy counts
                            # minutes; tests and ` + "`demo`" + ` shorten it together with ` + "`sim --minute`" + `
  keep_alive: true          # refresh idle connections before their refresh token expires
redis:
  url: "redis://localhost:6379/0"   # empty: embedded in-process Redis, not persisted (warned at start)
  addrs: []                 # Sentinel or Cluster nodes instead of url
  master_name: ""           # Sentinel
  key_prefix: "agw:"
security:
  encryption_keys: ["${ACADEMY_GATEWAY_ENCRYPTION_KEY}"]  # base64 32-byte keys; first encrypts, all decrypt
  admin_token: "${ACADEMY_GATEWAY_ADMIN_TOKEN}"           # empty: admin API disabled
identity:
  mode: api_key             # api_key (x-api-key header) | static (sidecar: every request is static_user)
  static_user: ""
log:
  level: info
  format: json              # json | console
server:
  shutdown_timeout: 20s
  max_header_bytes: 65536
`

// specEnv supplies the variables specExample refers to.
var specEnv = map[string]string{
	"ACADEMY_CLIENT_ID":              "client-123",
	"ACADEMY_CLIENT_SECRET":          "s3cret",
	"ACADEMY_GATEWAY_ENCRYPTION_KEY": testKey1,
	"ACADEMY_GATEWAY_ADMIN_TOKEN":    "admin-tok",
}

// nonDefaultFile sets every key to a value that differs from its default, so a key that is
// silently ignored shows up as a difference.
const nonDefaultFile = `listen:
  proxy: "127.0.0.1:8081"
  ops: "127.0.0.1:9091"
  auth: "127.0.0.1:9092"
  tls_cert_file: /tls/tls.crt
  tls_key_file: /tls/tls.key
upstream:
  base_url: "http://academy.test:8000/api/v2"
  strip_prefixes:
    - /legacy
  timeout: 1m30s
oauth:
  client_id: id-1
  client_secret: secret-1
  authorize_url: "http://academy.test/authorize"
  token_url: "http://academy.test/token"
  refresh_url: "http://academy.test/refresh"
  invalidate_url: "http://academy.test/invalidate"
  redirect_url: "https://gw.test/cb"
  scopes: [connect, read]
  refresh_before: 0s
  expires_in_unit: 1s
  keep_alive: false
redis:
  url: ""
  addrs: ["10.0.0.1:26379", "10.0.0.2:26379"]
  master_name: mymaster
  key_prefix: "t:"
security:
  encryption_keys:
    - ` + testKey2 + `
    - ` + testKey1 + `
  admin_token: adm
  forward_auth_token: fwd
identity:
  mode: static
  static_user: alice
log:
  level: debug
  format: console
server:
  shutdown_timeout: 5s
  max_header_bytes: 4096
  read_header_timeout: 2s
  read_timeout: 30s
  idle_timeout: 45s
  max_body_bytes: 0
webhooks:
  url: "https://hooks.test/academy"
  secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
  events: [key.revoked]
`

// credEnv supplies the credentials the defaults lack, through the override variables.
var credEnv = map[string]string{
	"ACADEMY_GATEWAY_OAUTH_CLIENT_ID":          "env-id",
	"ACADEMY_GATEWAY_OAUTH_CLIENT_SECRET":      "env-secret",
	"ACADEMY_GATEWAY_SECURITY_ENCRYPTION_KEYS": testKey1,
}

// cfgOpts compares configurations; an empty list and a nil list mean the same.
var cfgOpts = cmp.Options{cmpopts.EquateEmpty()}

func envFunc(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// mergeEnv returns a copy of base with over applied; an empty value in over deletes the key.
func mergeEnv(base, over map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if v == "" {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

func mustWriteConfig(tb testing.TB, content string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func mustLoad(tb testing.TB, path string, env map[string]string) config.Config {
	tb.Helper()
	cfg, err := config.Load(path, envFunc(env))
	if err != nil {
		tb.Fatalf("Load(%q) error: %v", path, err)
	}
	return cfg
}

func TestLoadDefaults(t *testing.T) {
	want := config.Default()
	want.OAuth.ClientID = "env-id"
	want.OAuth.ClientSecret = "env-secret"
	want.Security.EncryptionKeys = []string{testKey1}

	got := mustLoad(t, "", credEnv)
	if diff := cmp.Diff(want, got, cfgOpts); diff != "" {
		t.Errorf("Load(\"\") mismatch (-want +got):\n%s", diff)
	}

	// The built-in defaults carry no credentials, so on their own they do not validate.
	_, err := config.Load("", envFunc(nil))
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Key != "oauth.client_id" {
		t.Errorf("Load(\"\") without credentials: got error %v, want *config.Error for oauth.client_id", err)
	}
}

func TestLoadFile(t *testing.T) {
	specWant := config.Default()
	specWant.OAuth.ClientID = "client-123"
	specWant.OAuth.ClientSecret = "s3cret"
	specWant.OAuth.RedirectURL = "https://gateway.example.com/oauth/callback"
	specWant.Security.EncryptionKeys = []string{testKey1}
	specWant.Security.AdminToken = "admin-tok"

	tests := []struct {
		name    string
		content string
		env     map[string]string
		want    config.Config
	}{
		{
			name:    "reference example",
			content: specExample,
			env:     specEnv,
			want:    specWant,
		},
		{
			name:    "every key non-default",
			content: nonDefaultFile,
			want: config.Config{
				Listen: config.Listen{Proxy: "127.0.0.1:8081", Ops: "127.0.0.1:9091", Auth: "127.0.0.1:9092",
					TLSCertFile: "/tls/tls.crt", TLSKeyFile: "/tls/tls.key"},
				Upstream: config.Upstream{
					BaseURL:       "http://academy.test:8000/api/v2",
					StripPrefixes: []string{"/legacy"},
					Timeout:       config.Duration(90 * time.Second),
				},
				OAuth: config.OAuth{
					ClientID:      "id-1",
					ClientSecret:  "secret-1",
					AuthorizeURL:  "http://academy.test/authorize",
					TokenURL:      "http://academy.test/token",
					RefreshURL:    "http://academy.test/refresh",
					InvalidateURL: "http://academy.test/invalidate",
					RedirectURL:   "https://gw.test/cb",
					Scopes:        []string{"connect", "read"},
					RefreshBefore: 0,
					ExpiresInUnit: config.Duration(time.Second),
					KeepAlive:     false,
				},
				Redis: config.Redis{
					Addrs:      []string{"10.0.0.1:26379", "10.0.0.2:26379"},
					MasterName: "mymaster",
					KeyPrefix:  "t:",
				},
				Security: config.Security{EncryptionKeys: []string{testKey2, testKey1}, AdminToken: "adm", ForwardAuthToken: "fwd"},
				Identity: config.Identity{Mode: config.ModeStatic, StaticUser: "alice"},
				Log:      config.Log{Level: "debug", Format: "console"},
				Server: config.Server{ShutdownTimeout: config.Duration(5 * time.Second), MaxHeaderBytes: 4096,
					ReadHeaderTimeout: config.Duration(2 * time.Second), ReadTimeout: config.Duration(30 * time.Second),
					IdleTimeout: config.Duration(45 * time.Second), MaxBodyBytes: 0},
				Webhooks: config.Webhooks{URL: "https://hooks.test/academy", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
					Events: []string{"key.revoked"}},
			},
		},
		{
			name: "partial file keeps the other defaults",
			content: "oauth:\n  client_id: a\n  client_secret: b\n" +
				"security:\n  encryption_keys: [\"" + testKey1 + "\"]\n",
			want: func() config.Config {
				c := config.Default()
				c.OAuth.ClientID, c.OAuth.ClientSecret = "a", "b"
				c.Security.EncryptionKeys = []string{testKey1}
				return c
			}(),
		},
		{
			name:    "empty file keeps the defaults",
			content: "",
			env:     credEnv,
			want: func() config.Config {
				c := config.Default()
				c.OAuth.ClientID, c.OAuth.ClientSecret = "env-id", "env-secret"
				c.Security.EncryptionKeys = []string{testKey1}
				return c
			}(),
		},
		{
			name: "blank list entries are dropped",
			content: "oauth:\n  client_id: a\n  client_secret: b\n  scopes: [connect, \"\", \" read \"]\n" +
				"security:\n  encryption_keys: [\"" + testKey1 + "\", \"${UNSET}\"]\n",
			want: func() config.Config {
				c := config.Default()
				c.OAuth.ClientID, c.OAuth.ClientSecret = "a", "b"
				c.OAuth.Scopes = []string{"connect", "read"}
				c.Security.EncryptionKeys = []string{testKey1}
				return c
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustLoad(t, mustWriteConfig(t, tt.content), tt.env)
			if diff := cmp.Diff(tt.want, got, cfgOpts); diff != "" {
				t.Errorf("Load mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadExpandsVariables(t *testing.T) {
	const creds = "security:\n  encryption_keys: [\"" + testKey1 + "\"]\n"
	tests := []struct {
		name    string
		oauth   string // the body of the oauth section
		env     map[string]string
		wantID  string
		wantSec string
		wantTok string // security.admin_token, which a value must not be able to set
	}{
		{
			name:    "quoted reference",
			oauth:   "  client_id: \"${ID}\"\n  client_secret: \"${SEC}\"\n",
			env:     map[string]string{"ID": "the-id", "SEC": "the-secret"},
			wantID:  "the-id",
			wantSec: "the-secret",
		},
		{
			name:    "plain reference",
			oauth:   "  client_id: ${ID}\n  client_secret: ${SEC}\n",
			env:     map[string]string{"ID": "the-id", "SEC": "the-secret"},
			wantID:  "the-id",
			wantSec: "the-secret",
		},
		{
			name:    "reference inside a longer value",
			oauth:   "  client_id: pre-${ID}-post\n  client_secret: ${A}${B}\n",
			env:     map[string]string{"ID": "x", "A": "1", "B": "2"},
			wantID:  "pre-x-post",
			wantSec: "12",
		},
		{
			name:    "YAML flow syntax stays a string",
			oauth:   "  client_id: id\n  client_secret: ${SEC}\n",
			env:     map[string]string{"SEC": `": {}`},
			wantID:  "id",
			wantSec: `": {}`,
		},
		{
			name:  "newline and a key cannot add a key",
			oauth: "  client_id: id\n  client_secret: \"${SEC}\"\n",
			env: map[string]string{
				"SEC": "x\"\nsecurity:\n  admin_token: injected\n  encryption_keys: [\"" + testKey2 + "\"]\n#",
			},
			wantID:  "id",
			wantSec: "x\"\nsecurity:\n  admin_token: injected\n  encryption_keys: [\"" + testKey2 + "\"]\n#",
		},
		{
			name:    "value that looks like a list, a null or a number stays a string",
			oauth:   "  client_id: ${ID}\n  client_secret: ${SEC}\n",
			env:     map[string]string{"ID": "[a, b]", "SEC": "~"},
			wantID:  "[a, b]",
			wantSec: "~",
		},
		{
			name:    "no expansion of $VAR or unterminated references",
			oauth:   "  client_id: $ID\n  client_secret: \"${SEC\"\n",
			env:     map[string]string{"ID": "no", "SEC": "no"},
			wantID:  "$ID",
			wantSec: "${SEC",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustLoad(t, mustWriteConfig(t, "oauth:\n"+tt.oauth+creds), tt.env)
			got := [3]string{cfg.OAuth.ClientID, cfg.OAuth.ClientSecret, cfg.Security.AdminToken}
			want := [3]string{tt.wantID, tt.wantSec, tt.wantTok}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("[client_id client_secret admin_token] mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{testKey1}, cfg.Security.EncryptionKeys); diff != "" {
				t.Errorf("encryption_keys changed by a variable (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadExpandsUnsetVariableToEmpty(t *testing.T) {
	p := mustWriteConfig(t, "oauth:\n  client_id: a\n  client_secret: \"${UNSET_SECRET}\"\n"+
		"security:\n  encryption_keys: [\""+testKey1+"\"]\n")
	_, err := config.Load(p, envFunc(nil))
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Key != "oauth.client_secret" {
		t.Errorf("Load with an unset variable: got %v, want *config.Error for oauth.client_secret", err)
	}
}

func TestLoadExpandsNonStringFields(t *testing.T) {
	p := mustWriteConfig(t, "oauth:\n  client_id: a\n  client_secret: b\n  keep_alive: ${K}\n"+
		"security:\n  encryption_keys: [\""+testKey1+"\"]\nserver:\n  max_header_bytes: ${M}\n")
	cfg := mustLoad(t, p, map[string]string{"K": "false", "M": "2048"})
	if got, want := [2]any{cfg.OAuth.KeepAlive, cfg.Server.MaxHeaderBytes}, [2]any{false, 2048}; got != want {
		t.Errorf("[keep_alive max_header_bytes] = %v, want %v", got, want)
	}
}

func TestLoadEnvOverrides(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		get  func(config.Config) any
		want any
	}{
		{
			name: "string",
			env:  map[string]string{"ACADEMY_GATEWAY_OAUTH_CLIENT_ID": "from-env"},
			get:  func(c config.Config) any { return c.OAuth.ClientID },
			want: "from-env",
		},
		{
			name: "string in another section",
			env:  map[string]string{"ACADEMY_GATEWAY_REDIS_URL": "redis://other:6379/1"},
			get:  func(c config.Config) any { return c.Redis.URL },
			want: "redis://other:6379/1",
		},
		{
			name: "comma-separated list",
			env:  map[string]string{"ACADEMY_GATEWAY_UPSTREAM_STRIP_PREFIXES": "/a,/b/c"},
			get:  func(c config.Config) any { return c.Upstream.StripPrefixes },
			want: []string{"/a", "/b/c"},
		},
		{
			name: "comma-separated list with spaces",
			env:  map[string]string{"ACADEMY_GATEWAY_OAUTH_SCOPES": "connect, read ,write,"},
			get:  func(c config.Config) any { return c.OAuth.Scopes },
			want: []string{"connect", "read", "write"},
		},
		{
			name: "comma-separated strip_prefixes with spaces",
			env:  map[string]string{"ACADEMY_GATEWAY_UPSTREAM_STRIP_PREFIXES": "/a, /b/c,"},
			get:  func(c config.Config) any { return c.Upstream.StripPrefixes },
			want: []string{"/a", "/b/c"},
		},
		{
			name: "list of keys",
			env:  map[string]string{"ACADEMY_GATEWAY_SECURITY_ENCRYPTION_KEYS": testKey2 + "," + testKey1},
			get:  func(c config.Config) any { return c.Security.EncryptionKeys },
			want: []string{testKey2, testKey1},
		},
		{
			name: "duration",
			env:  map[string]string{"ACADEMY_GATEWAY_UPSTREAM_TIMEOUT": "5s"},
			get:  func(c config.Config) any { return c.Upstream.Timeout.D() },
			want: 5 * time.Second,
		},
		{
			name: "bool",
			env:  map[string]string{"ACADEMY_GATEWAY_OAUTH_KEEP_ALIVE": "false"},
			get:  func(c config.Config) any { return c.OAuth.KeepAlive },
			want: false,
		},
		{
			name: "int",
			env:  map[string]string{"ACADEMY_GATEWAY_SERVER_MAX_HEADER_BYTES": "2048"},
			get:  func(c config.Config) any { return c.Server.MaxHeaderBytes },
			want: 2048,
		},
		{
			name: "empty variable leaves the file's value",
			env:  map[string]string{"ACADEMY_GATEWAY_UPSTREAM_TIMEOUT": ""},
			get:  func(c config.Config) any { return c.Upstream.Timeout.D() },
			want: 45 * time.Second,
		},
	}
	// The file sets every overridden key to something else, so a file value that won would show.
	const file = `oauth:
  client_id: from-file
  client_secret: secret
  keep_alive: true
redis:
  url: "redis://file:6379/0"
upstream:
  strip_prefixes: ["/file"]
  timeout: 45s
security:
  encryption_keys: ["` + testKey1 + `"]
server:
  max_header_bytes: 8192
`
	p := mustWriteConfig(t, file)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.get(mustLoad(t, p, tt.env))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("overridden value mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string            // the file; "" loads no file
		env     map[string]string // merged over credEnv; an empty value removes the variable
		wantKey string
	}{
		{name: "unknown section", content: "bogus:\n  x: 1\n", wantKey: "bogus"},
		{name: "unknown key in a section", content: "oauth:\n  bogus: x\n", wantKey: "oauth.bogus"},
		{name: "unknown key after known ones", content: "log:\n  level: info\n  colour: red\n", wantKey: "log.colour"},
		{name: "bad duration", content: "upstream:\n  timeout: abc\n", wantKey: "upstream.timeout"},
		{name: "duration without unit", content: "oauth:\n  refresh_before: 60\n", wantKey: "oauth.refresh_before"},
		{name: "negative refresh_before", content: "oauth:\n  refresh_before: -1s\n", wantKey: "oauth.refresh_before"},
		{name: "zero timeout", content: "upstream:\n  timeout: 0s\n", wantKey: "upstream.timeout"},
		{name: "wrong type", content: "server:\n  max_header_bytes: lots\n", wantKey: "server.max_header_bytes"},
		{name: "too small max_header_bytes", content: "server:\n  max_header_bytes: 10\n", wantKey: "server.max_header_bytes"},
		{name: "auth not host:port", content: "listen:\n  auth: nope\n", wantKey: "listen.auth"},
		{name: "auth on the ops address", content: "listen:\n  ops: \":9090\"\n  auth: \":9090\"\n", wantKey: "listen.auth"},
		{name: "tls cert without key", content: "listen:\n  tls_cert_file: /c.pem\n", wantKey: "listen.tls_key_file"},
		{name: "tls key without cert", content: "listen:\n  tls_key_file: /k.pem\n", wantKey: "listen.tls_key_file"},
		{name: "tls_ca_file with a plain redis url", content: "redis:\n  url: \"redis://h:6379/0\"\n  tls_ca_file: /ca.pem\n", wantKey: "redis.tls_ca_file"},
		{name: "tls_ca_file with the embedded redis", content: "redis:\n  url: \"\"\n  tls_ca_file: /ca.pem\n", wantKey: "redis.tls_ca_file"},
		{name: "tls_ca_file with sentinel addrs", content: "redis:\n  url: \"\"\n  addrs: [\"h:26379\"]\n  master_name: m\n  tls_ca_file: /ca.pem\n", wantKey: "redis.tls_ca_file"},
		{name: "zero read_header_timeout", content: "server:\n  read_header_timeout: 0s\n", wantKey: "server.read_header_timeout"},
		{name: "zero read_timeout", content: "server:\n  read_timeout: 0s\n", wantKey: "server.read_timeout"},
		{name: "zero idle_timeout", content: "server:\n  idle_timeout: 0s\n", wantKey: "server.idle_timeout"},
		{name: "header timeout over read timeout", content: "server:\n  read_header_timeout: 2m\n  read_timeout: 1m\n", wantKey: "server.read_header_timeout"},
		{name: "negative max_body_bytes", content: "server:\n  max_body_bytes: -1\n", wantKey: "server.max_body_bytes"},
		{name: "unknown webhook event", content: "webhooks:\n  events: [key.created]\n", wantKey: "webhooks.events"},
		{name: "webhook url not http", content: "webhooks:\n  url: ftp://x\n  secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", wantKey: "webhooks.url"},
		{name: "webhook url without secret", content: "webhooks:\n  url: https://hooks.test/\n", wantKey: "webhooks.secret"},
		{name: "webhook secret without prefix", content: "webhooks:\n  url: https://hooks.test/\n  secret: MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", wantKey: "webhooks.secret"},
		{name: "webhook secret too short", content: "webhooks:\n  url: https://hooks.test/\n  secret: whsec_c2hvcnQ=\n", wantKey: "webhooks.secret"},
		{name: "webhooks with no events", content: "webhooks:\n  url: https://hooks.test/\n  secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n  events: []\n", wantKey: "webhooks.events"},
		{name: "missing client_id", env: map[string]string{"ACADEMY_GATEWAY_OAUTH_CLIENT_ID": ""}, wantKey: "oauth.client_id"},
		{name: "missing client_secret", env: map[string]string{"ACADEMY_GATEWAY_OAUTH_CLIENT_SECRET": ""}, wantKey: "oauth.client_secret"},
		{name: "scopes without connect", content: "oauth:\n  scopes: [read, write]\n", wantKey: "oauth.scopes"},
		{name: "unknown scope", content: "oauth:\n  scopes: [connect, admin]\n", wantKey: "oauth.scopes"},
		{name: "encryption key not base64", env: map[string]string{"ACADEMY_GATEWAY_SECURITY_ENCRYPTION_KEYS": "not base64!"}, wantKey: "security.encryption_keys"},
		{name: "encryption key of 16 bytes", env: map[string]string{"ACADEMY_GATEWAY_SECURITY_ENCRYPTION_KEYS": "MDEyMzQ1Njc4OWFiY2RlZg=="}, wantKey: "security.encryption_keys"},
		{name: "second encryption key bad", env: map[string]string{"ACADEMY_GATEWAY_SECURITY_ENCRYPTION_KEYS": testKey1 + ",short"}, wantKey: "security.encryption_keys"},
		{name: "no encryption key", env: map[string]string{"ACADEMY_GATEWAY_SECURITY_ENCRYPTION_KEYS": ""}, wantKey: "security.encryption_keys"},
		{name: "only empty encryption keys", content: "security:\n  encryption_keys: [\"\", \"${UNSET}\"]\n", env: map[string]string{"ACADEMY_GATEWAY_SECURITY_ENCRYPTION_KEYS": ""}, wantKey: "security.encryption_keys"},
		{name: "bad identity.mode", content: "identity:\n  mode: header\n", wantKey: "identity.mode"},
		{name: "static without static_user", content: "identity:\n  mode: static\n", wantKey: "identity.static_user"},
		{name: "bad log.level", content: "log:\n  level: loud\n", wantKey: "log.level"},
		{name: "bad log.format", content: "log:\n  format: xml\n", wantKey: "log.format"},
		{name: "redis url and addrs", content: "redis:\n  url: \"redis://h:6379/0\"\n  addrs: [\"h:26379\"]\n", wantKey: "redis.addrs"},
		{name: "master_name without addrs", content: "redis:\n  master_name: m\n", wantKey: "redis.master_name"},
		{name: "redis url with a bad scheme", content: "redis:\n  url: \"http://h:6379\"\n", wantKey: "redis.url"},
		{name: "bad listen.proxy", content: "listen:\n  proxy: \"8080\"\n", wantKey: "listen.proxy"},
		{name: "bad listen.ops", content: "listen:\n  ops: \"localhost\"\n", wantKey: "listen.ops"},
		{name: "equal listen addresses", content: "listen:\n  proxy: \":7000\"\n  ops: \":7000\"\n", wantKey: "listen.ops"},
		{name: "relative base_url", content: "upstream:\n  base_url: \"/api/v2\"\n", wantKey: "upstream.base_url"},
		{name: "base_url without host", content: "upstream:\n  base_url: \"https:///api/v2\"\n", wantKey: "upstream.base_url"},
		{name: "non-http token_url", content: "oauth:\n  token_url: \"ftp://academy/token\"\n", wantKey: "oauth.token_url"},
		{name: "strip prefix with trailing slash", content: "upstream:\n  strip_prefixes: [\"/api/v1/\"]\n", wantKey: "upstream.strip_prefixes"},
		{name: "redirect_url at the root", content: "oauth:\n  redirect_url: \"https://gw.test/\"\n", wantKey: "oauth.redirect_url"},
		{name: "redirect_url without a path", content: "oauth:\n  redirect_url: \"https://gw.test\"\n", wantKey: "oauth.redirect_url"},
		{name: "redirect_url on a proxied v1 path", content: "oauth:\n  redirect_url: \"https://gw.test/api/v1/movies\"\n", wantKey: "oauth.redirect_url"},
		{name: "redirect_url equal to a strip prefix", content: "oauth:\n  redirect_url: \"https://gw.test/api/v2\"\n", wantKey: "oauth.redirect_url"},
		{name: "redirect_url under a custom strip prefix", content: "upstream:\n  strip_prefixes: [/legacy]\noauth:\n  redirect_url: \"https://gw.test/legacy/cb\"\n", wantKey: "oauth.redirect_url"},
		{name: "redirect_url on an Academy resource", content: "oauth:\n  redirect_url: \"https://gw.test/movies/callback\"\n", wantKey: "oauth.redirect_url"},
		{name: "redirect_url on /info", content: "oauth:\n  redirect_url: \"https://gw.test/info\"\n", wantKey: "oauth.redirect_url"},
		{name: "redirect_url under /api", content: "oauth:\n  redirect_url: \"https://gw.test/api/v3/cb\"\n", wantKey: "oauth.redirect_url"},
		{name: "redirect_url on the onboarding start path", content: "oauth:\n  redirect_url: \"https://gw.test/oauth/start\"\n", wantKey: "oauth.redirect_url"},
		{name: "redirect_url with a fragment", content: "oauth:\n  redirect_url: \"https://gw.test/oauth/callback#x\"\n", wantKey: "oauth.redirect_url"},
		{name: "redirect_url with an empty fragment", content: "oauth:\n  redirect_url: \"https://gw.test/oauth/callback#\"\n", wantKey: "oauth.redirect_url"},
		{name: "redirect_url with user info", content: "oauth:\n  redirect_url: \"https://user:pw@gw.test/oauth/callback\"\n", wantKey: "oauth.redirect_url"},
		{name: "bad duration override", env: map[string]string{"ACADEMY_GATEWAY_UPSTREAM_TIMEOUT": "abc"}, wantKey: "upstream.timeout"},
		{name: "bad bool override", env: map[string]string{"ACADEMY_GATEWAY_OAUTH_KEEP_ALIVE": "maybe"}, wantKey: "oauth.keep_alive"},
		{name: "bad int override", env: map[string]string{"ACADEMY_GATEWAY_SERVER_MAX_HEADER_BYTES": "64k"}, wantKey: "server.max_header_bytes"},
		{name: "bad override beats a good file", content: "upstream:\n  timeout: 5s\n", env: map[string]string{"ACADEMY_GATEWAY_UPSTREAM_TIMEOUT": "5"}, wantKey: "upstream.timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.content != "" {
				path = mustWriteConfig(t, tt.content)
			}
			got, err := config.Load(path, envFunc(mergeEnv(credEnv, tt.env)))
			ce, ok := err.(*config.Error)
			if !ok {
				t.Fatalf("Load error = %#v (config %+v), want *config.Error", err, got)
			}
			if ce.Key != tt.wantKey {
				t.Errorf("Error.Key = %q (%v), want %q", ce.Key, ce, tt.wantKey)
			}
			if !strings.Contains(ce.Error(), tt.wantKey) {
				t.Errorf("Error() = %q, does not name %q", ce.Error(), tt.wantKey)
			}
			if diff := cmp.Diff(config.Config{}, got, cfgOpts); diff != "" {
				t.Errorf("Load returned a config with its error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	tests := []struct {
		name string
		path func(t *testing.T) string
	}{
		{name: "missing file", path: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope.yaml") }},
		{name: "invalid YAML", path: func(t *testing.T) string { return mustWriteConfig(t, "listen: [\n") }},
		{name: "not a mapping", path: func(t *testing.T) string { return mustWriteConfig(t, "- a\n- b\n") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load(tt.path(t), envFunc(credEnv))
			if _, ok := err.(*config.Error); !ok {
				t.Errorf("Load error = %#v, want *config.Error", err)
			}
		})
	}
}

// TestLoadErrorKeyWithBlankLines checks that the offending key is found in a file laid out
// the way people write them: blank lines between sections, comments on their own lines.
func TestLoadErrorKeyWithBlankLines(t *testing.T) {
	tests := []struct {
		name    string
		content string
		wantKey string
	}{
		{name: "bad duration", content: "log:\n  level: info\n\n\n\nupstream:\n\n  timeout: abc\n", wantKey: "upstream.timeout"},
		{name: "one blank line", content: "log:\n  level: info\n\nupstream:\n  timeout: abc\n", wantKey: "upstream.timeout"},
		{name: "unknown key", content: "# gateway\n\nlog:\n  level: info\n\noauth:\n  # the client\n\n  bogus: x\n", wantKey: "oauth.bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load(mustWriteConfig(t, tt.content), envFunc(credEnv))
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != tt.wantKey {
				t.Errorf("Load error = %#v, want *config.Error for %q", err, tt.wantKey)
			}
		})
	}
}

func TestPath(t *testing.T) {
	tests := []struct {
		name       string
		flag       string
		env        string // $ACADEMY_GATEWAY_CONFIG
		configYAML bool   // whether ./config.yaml exists
		want       string
	}{
		{name: "flag wins over everything", flag: "/etc/flag.yaml", env: "/etc/env.yaml", configYAML: true, want: "/etc/flag.yaml"},
		{name: "env wins over ./config.yaml", env: "/etc/env.yaml", configYAML: true, want: "/etc/env.yaml"},
		{name: "./config.yaml when present", configYAML: true, want: "config.yaml"},
		{name: "built-in defaults", want: ""},
		{name: "flag without env", flag: "x.yaml", want: "x.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			if tt.configYAML {
				if err := os.WriteFile(filepath.Join(dir, "config.yaml"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			env := map[string]string{"ACADEMY_GATEWAY_CONFIG": tt.env}
			if got := config.Path(tt.flag, envFunc(env)); got != tt.want {
				t.Errorf("Path(%q) = %q, want %q", tt.flag, got, tt.want)
			}
		})
	}
}

func TestMasked(t *testing.T) {
	const (
		secret = "client-secret-value"
		admin  = "admin-token-value"
	)
	tests := []struct {
		name  string
		input func(*config.Config)
		want  func(*config.Config) // applied to the input to get the masked config
	}{
		{
			name: "all secrets set",
			input: func(c *config.Config) {
				c.OAuth.ClientSecret = secret
				c.Security.AdminToken = admin
				c.Security.EncryptionKeys = []string{testKey1, testKey2}
				c.Redis.URL = "redis://user:p%40ss@redis.test:6379/0"
			},
			want: func(c *config.Config) {
				c.OAuth.ClientSecret = "****"
				c.Security.AdminToken = "****"
				c.Security.EncryptionKeys = []string{"****", "****"}
				c.Redis.URL = "redis://user:****@redis.test:6379/0"
			},
		},
		{
			name: "password without user",
			input: func(c *config.Config) {
				c.Redis.URL = "rediss://:hunter2@redis.test:6380/2"
			},
			want: func(c *config.Config) {
				c.Redis.URL = "rediss://:****@redis.test:6380/2"
			},
		},
		{
			name: "empty secrets stay empty",
			input: func(c *config.Config) {
				c.OAuth.ClientSecret = ""
				c.Security.AdminToken = ""
				c.Security.EncryptionKeys = nil
			},
			want: func(c *config.Config) {},
		},
		{
			name:  "URL without password is unchanged",
			input: func(c *config.Config) { c.Redis.URL = "redis://user@redis.test:6379/0" },
			want:  func(c *config.Config) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := config.Default()
			orig.OAuth.ClientID = "client-id"
			tt.input(&orig)
			want := orig
			want.Security.EncryptionKeys = append([]string(nil), orig.Security.EncryptionKeys...)
			tt.want(&want)
			snapshot := orig
			snapshot.Security.EncryptionKeys = append([]string(nil), orig.Security.EncryptionKeys...)
			snapshot.OAuth.Scopes = append([]string(nil), orig.OAuth.Scopes...)
			snapshot.Upstream.StripPrefixes = append([]string(nil), orig.Upstream.StripPrefixes...)

			got := orig.Masked()
			if diff := cmp.Diff(want, got, cfgOpts); diff != "" {
				t.Errorf("Masked() mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(snapshot, orig, cfgOpts); diff != "" {
				t.Errorf("Masked() modified the original (-before +after):\n%s", diff)
			}
			out := string(got.YAML())
			for _, s := range []string{secret, admin, testKey1, testKey2, "p%40ss", "p@ss", "hunter2"} {
				if strings.Contains(out, s) {
					t.Errorf("Masked().YAML() contains secret %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		content string
		env     map[string]string
	}{
		{name: "reference example", content: specExample, env: specEnv},
		{name: "every key non-default", content: nonDefaultFile},
		{
			name: "secrets and values that need quoting",
			content: "oauth:\n  client_id: \"yes\"\n  client_secret: \"a: b # c\"\n" +
				"redis:\n  url: \"redis://u:p%40ss@h:6379/0\"\n  key_prefix: \"@x:\"\n" +
				"security:\n  encryption_keys: [\"" + testKey1 + "\"]\n  admin_token: \"'quoted'\"\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := mustLoad(t, mustWriteConfig(t, tt.content), tt.env)

			got := mustLoad(t, mustWriteConfig(t, string(want.YAML())), nil)
			if diff := cmp.Diff(want, got, cfgOpts); diff != "" {
				t.Errorf("Load(YAML()) mismatch (-want +got):\n%s", diff)
			}

			// The masked output, as check-config prints it, loads again once the secrets are
			// supplied through the environment.
			secrets := map[string]string{
				"ACADEMY_GATEWAY_OAUTH_CLIENT_SECRET":         want.OAuth.ClientSecret,
				"ACADEMY_GATEWAY_SECURITY_ENCRYPTION_KEYS":    strings.Join(want.Security.EncryptionKeys, ","),
				"ACADEMY_GATEWAY_SECURITY_ADMIN_TOKEN":        want.Security.AdminToken,
				"ACADEMY_GATEWAY_REDIS_URL":                   want.Redis.URL,
				"ACADEMY_GATEWAY_SECURITY_FORWARD_AUTH_TOKEN": want.Security.ForwardAuthToken,
				"ACADEMY_GATEWAY_WEBHOOKS_SECRET":             want.Webhooks.Secret,
			}
			got = mustLoad(t, mustWriteConfig(t, string(want.Masked().YAML())), secrets)
			if diff := cmp.Diff(want, got, cfgOpts); diff != "" {
				t.Errorf("Load(Masked().YAML()) with secrets mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  *config.Error
		want string
	}{
		{err: &config.Error{Key: "oauth.client_id", Msg: "is required"}, want: "config: oauth.client_id: is required"},
		{err: &config.Error{Msg: "parse YAML: boom"}, want: "config: parse YAML: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRedirectURLAccepted: callback paths that no caller sends to the Academy are accepted,
// with or without a query.
func TestRedirectURLAccepted(t *testing.T) {
	for _, u := range []string{
		"https://gw.test/oauth/callback", "http://localhost:8080/oauth/callback", "https://gw.test/gateway/cb",
		"https://gw.test/oauth/callback?tenant=a", "https://gw.test:8443/cb", "https://gw.test/apis/cb",
	} {
		t.Run(u, func(t *testing.T) {
			env := mergeEnv(credEnv, map[string]string{"ACADEMY_GATEWAY_OAUTH_REDIRECT_URL": u})
			if got := mustLoad(t, "", env).OAuth.RedirectURL; got != u {
				t.Errorf("redirect_url = %q, want %q", got, u)
			}
		})
	}
}

// TestDefaultVars: with no file the built-in defaults read the same variables as
// config.example.yaml (ACADEMY_CLIENT_ID, ACADEMY_CLIENT_SECRET, ACADEMY_GATEWAY_ENCRYPTION_KEY,
// ACADEMY_GATEWAY_ADMIN_TOKEN, ACADEMY_GATEWAY_WEBHOOK_SECRET), so the README's exports work
// without a file; a file's value beats them and an override beats both.
func TestDefaultVars(t *testing.T) {
	vars := map[string]string{
		"ACADEMY_CLIENT_ID": "readme-id", "ACADEMY_CLIENT_SECRET": "readme-secret",
		"ACADEMY_GATEWAY_ENCRYPTION_KEY": testKey1, "ACADEMY_GATEWAY_ADMIN_TOKEN": "adm",
		"ACADEMY_GATEWAY_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	}
	want := config.Default()
	want.OAuth.ClientID, want.OAuth.ClientSecret = "readme-id", "readme-secret"
	want.Security.EncryptionKeys, want.Security.AdminToken = []string{testKey1}, "adm"
	want.Webhooks.Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	if diff := cmp.Diff(want, mustLoad(t, "", vars), cfgOpts); diff != "" {
		t.Errorf("no file, the README's variables (-want +got):\n%s", diff)
	}

	file := mustWriteConfig(t, "oauth:\n  client_id: from-file\n")
	if got := mustLoad(t, file, vars).OAuth; got.ClientID != "from-file" || got.ClientSecret != "readme-secret" {
		t.Errorf("file sets client_id only: id %q secret %q, want from-file and the variable's", got.ClientID, got.ClientSecret)
	}
	over := mergeEnv(vars, map[string]string{"ACADEMY_GATEWAY_OAUTH_CLIENT_ID": "override"})
	if got := mustLoad(t, file, over).OAuth.ClientID; got != "override" {
		t.Errorf("client_id = %q, want the ACADEMY_GATEWAY_OAUTH_CLIENT_ID override", got)
	}
}

// TestLoadEnviron: an ACADEMY_GATEWAY_* variable nothing reads is an error naming it (with the
// override it most resembles), as an unknown key is; overrides, ACADEMY_GATEWAY_CONFIG, the
// defaults' variables and any variable the file references as ${NAME} are fine, and other
// variables are none of the gateway's business.
func TestLoadEnviron(t *testing.T) {
	environ := func(m map[string]string) []string {
		var out []string
		for k, v := range m {
			out = append(out, k+"="+v)
		}
		return out
	}
	withRef := mustWriteConfig(t, "security:\n  admin_token: \"${ACADEMY_GATEWAY_CUSTOM_ADMIN}\"\n")
	tests := []struct {
		name    string
		path    string
		env     map[string]string // merged over credEnv
		wantKey string            // "" means no error
		wantMsg string
	}{
		{name: "overrides only", env: map[string]string{"ACADEMY_GATEWAY_REDIS_URL": "redis://h:6379/0"}},
		{name: "the config file variable", env: map[string]string{"ACADEMY_GATEWAY_CONFIG": "/nonexistent-but-unused.yaml"}},
		{name: "the defaults' variables", env: map[string]string{"ACADEMY_GATEWAY_ENCRYPTION_KEY": testKey1,
			"ACADEMY_GATEWAY_ADMIN_TOKEN": "a", "ACADEMY_GATEWAY_WEBHOOK_SECRET": "s"}},
		{name: "a variable the file references", path: withRef, env: map[string]string{"ACADEMY_GATEWAY_CUSTOM_ADMIN": "x"}},
		{name: "Kubernetes service links", env: map[string]string{
			"ACADEMY_GATEWAY_SERVICE_HOST": "10.0.0.7", "ACADEMY_GATEWAY_SERVICE_PORT": "8080", "ACADEMY_GATEWAY_SERVICE_PORT_PROXY": "8080",
			"ACADEMY_GATEWAY_PORT": "tcp://10.0.0.7:8080", "ACADEMY_GATEWAY_PORT_8080_TCP": "tcp://10.0.0.7:8080",
			"ACADEMY_GATEWAY_PORT_8080_TCP_PROTO": "tcp", "ACADEMY_GATEWAY_PORT_8080_TCP_PORT": "8080", "ACADEMY_GATEWAY_PORT_8080_TCP_ADDR": "10.0.0.7",
			"ACADEMY_GATEWAY_OPS_SERVICE_HOST": "10.0.0.8", "ACADEMY_GATEWAY_REDIS_PORT_6379_TCP": "tcp://10.0.0.9:6379",
		}},
		{
			name: "not quite a service link", env: map[string]string{"ACADEMY_GATEWAY_PORT_HTTP": "1"},
			wantKey: "ACADEMY_GATEWAY_PORT_HTTP", wantMsg: "unknown environment variable",
		},
		{name: "other variables", env: map[string]string{"HOME": "/root", "ACADEMY_GATEWAYX": "1", "REDIS_URLL": "x"}},
		{
			name: "mistyped override", env: map[string]string{"ACADEMY_GATEWAY_REDIS_URLL": "redis://h:6379/0"},
			wantKey: "ACADEMY_GATEWAY_REDIS_URLL", wantMsg: "did you mean ACADEMY_GATEWAY_REDIS_URL?",
		},
		{
			name: "reference variable without the file", env: map[string]string{"ACADEMY_GATEWAY_CUSTOM_ADMIN": "x"},
			wantKey: "ACADEMY_GATEWAY_CUSTOM_ADMIN", wantMsg: "unknown environment variable",
		},
		{
			name: "two unknown", env: map[string]string{"ACADEMY_GATEWAY_LOG_LEVL": "debug", "ACADEMY_GATEWAY_ZZZ": "1"},
			wantKey: "ACADEMY_GATEWAY_LOG_LEVL, ACADEMY_GATEWAY_ZZZ", wantMsg: "ACADEMY_GATEWAY_LOG_LEVL: did you mean ACADEMY_GATEWAY_LOG_LEVEL?",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := mergeEnv(credEnv, tt.env)
			_, err := config.LoadEnv(tt.path, envFunc(env), environ(env))
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("LoadEnv: %v", err)
				}
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != tt.wantKey || !strings.Contains(ce.Msg, tt.wantMsg) {
				t.Errorf("LoadEnv error %v, want key %q and a message containing %q", err, tt.wantKey, tt.wantMsg)
			}
		})
	}
	if _, err := config.Load("", envFunc(mergeEnv(credEnv, map[string]string{"ACADEMY_GATEWAY_REDIS_URLL": "x"}))); err != nil {
		t.Errorf("Load (no environ) checks names it was not given: %v", err)
	}
}
