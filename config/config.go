// Package config loads, validates and prints the gateway's configuration (docs/reference.md §3): YAML with
// ${VAR} expansion, ACADEMY_GATEWAY_<SECTION>_<KEY> environment overrides, built-in defaults and
// validation errors that name the offending key. It is the only package that reads files or the
// environment for configuration; everything else receives plain values.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/academy-gateway/academy-gateway/scope"
)

// Config is the whole configuration. Field tags are the YAML keys of docs/reference.md §3.
type Config struct {
	Listen   Listen   `yaml:"listen"`
	Upstream Upstream `yaml:"upstream"`
	OAuth    OAuth    `yaml:"oauth"`
	Redis    Redis    `yaml:"redis"`
	Security Security `yaml:"security"`
	Identity Identity `yaml:"identity"`
	Log      Log      `yaml:"log"`
	Server   Server   `yaml:"server"`
	Webhooks Webhooks `yaml:"webhooks"`
}

// Listen holds the listener addresses and the TLS files of the proxy and auth listeners.
type Listen struct {
	Proxy string `yaml:"proxy"` // legacy callers and the OAuth2 callback
	Ops   string `yaml:"ops"`   // metrics, health and the admin API
	Auth  string `yaml:"auth"`  // forward-auth checks of an ingress (docs/reference.md §4.1); empty: off
	// TLSCertFile and TLSKeyFile, both set, make the proxy and auth listeners serve HTTPS; the
	// files are re-read when they change.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
}

// Upstream describes the Academy API v2 the gateway forwards to.
type Upstream struct {
	BaseURL       string   `yaml:"base_url"`
	StripPrefixes []string `yaml:"strip_prefixes"`
	Timeout       Duration `yaml:"timeout"`
}

// OAuth holds the gateway's Academy client registration and token policy.
type OAuth struct {
	ClientID      string   `yaml:"client_id"`
	ClientSecret  string   `yaml:"client_secret" secret:"true"`
	AuthorizeURL  string   `yaml:"authorize_url"`
	TokenURL      string   `yaml:"token_url"`
	RefreshURL    string   `yaml:"refresh_url"`
	InvalidateURL string   `yaml:"invalidate_url"`
	RedirectURL   string   `yaml:"redirect_url"`
	Scopes        []string `yaml:"scopes"`
	RefreshBefore Duration `yaml:"refresh_before"`
	ExpiresInUnit Duration `yaml:"expires_in_unit"`
	KeepAlive     bool     `yaml:"keep_alive"`
}

// Redis selects the token store. An empty URL and no Addrs means an embedded, unpersisted Redis.
type Redis struct {
	URL        string   `yaml:"url" secret:"url"`
	Addrs      []string `yaml:"addrs"`
	MasterName string   `yaml:"master_name"`
	KeyPrefix  string   `yaml:"key_prefix"`
	TLSCAFile  string   `yaml:"tls_ca_file"` // CA bundle for rediss://; empty: the system's roots
}

// Security holds the token encryption keys and the tokens of the admin API and forward-auth.
type Security struct {
	EncryptionKeys []string `yaml:"encryption_keys" secret:"true"`
	AdminToken     string   `yaml:"admin_token" secret:"true"`
	// ForwardAuthToken, when set, must arrive as X-Gateway-Auth on every forward-auth check.
	ForwardAuthToken string `yaml:"forward_auth_token" secret:"true"`
}

// Identity selects how a caller is identified.
type Identity struct {
	Mode       string `yaml:"mode"` // api_key | static
	StaticUser string `yaml:"static_user"`
}

// Log configures the zap logger.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"` // json | console
}

// Server configures the HTTP servers.
type Server struct {
	ShutdownTimeout   Duration `yaml:"shutdown_timeout"`
	MaxHeaderBytes    int      `yaml:"max_header_bytes"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"` // a request's headers must arrive within it
	ReadTimeout       Duration `yaml:"read_timeout"`        // the whole request, body included
	IdleTimeout       Duration `yaml:"idle_timeout"`        // idle keep-alive connections are closed after it
	MaxBodyBytes      int64    `yaml:"max_body_bytes"`      // larger request bodies get 413; 0: no limit
}

// Webhooks configures the lifecycle events of docs/reference.md §9.
type Webhooks struct {
	URL    string   `yaml:"url"` // where events are POSTed; empty: off
	Secret string   `yaml:"secret" secret:"true"`
	Events []string `yaml:"events"` // the event types sent
}

// Webhook event types (docs/reference.md §9).
const (
	EventConnected      = "connection.connected"
	EventReauthRequired = "connection.reauth_required"
	EventRevoked        = "connection.revoked"
	EventKeyRevoked     = "key.revoked"
)

// Events lists every webhook event type, the default of webhooks.events.
var Events = []string{EventConnected, EventReauthRequired, EventRevoked, EventKeyRevoked}

// Identity modes.
const (
	ModeAPIKey = "api_key"
	ModeStatic = "static"
)

// Default returns the built-in defaults, the values of docs/reference.md §3 without credentials.
func Default() Config {
	const academy = "https://app-academy.make.com/api/v2"
	return Config{
		Listen: Listen{Proxy: ":8080", Ops: ":9090"},
		Upstream: Upstream{
			BaseURL:       academy,
			StripPrefixes: []string{"/api/v1", "/api/v2"},
			Timeout:       Duration(30 * time.Second),
		},
		OAuth: OAuth{
			AuthorizeURL:  academy + "/authorize",
			TokenURL:      academy + "/token",
			RefreshURL:    academy + "/refresh",
			InvalidateURL: academy + "/invalidate",
			RedirectURL:   "http://localhost:8080/oauth/callback",
			Scopes:        scope.Strings(scope.All),
			RefreshBefore: Duration(60 * time.Second),
			ExpiresInUnit: Duration(time.Minute),
			KeepAlive:     true,
		},
		Redis:    Redis{URL: "redis://localhost:6379/0", KeyPrefix: "agw:"},
		Identity: Identity{Mode: ModeAPIKey},
		Log:      Log{Level: "info", Format: "json"},
		Server: Server{
			ShutdownTimeout:   Duration(20 * time.Second),
			MaxHeaderBytes:    65536,
			ReadHeaderTimeout: Duration(10 * time.Second),
			ReadTimeout:       Duration(60 * time.Second),
			IdleTimeout:       Duration(120 * time.Second),
			MaxBodyBytes:      10 << 20,
		},
		Webhooks: Webhooks{Events: slices.Clone(Events)},
	}
}

// Error is a configuration error that names the offending key (e.g. "oauth.client_id").
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return "config: " + e.Msg
	}
	return "config: " + e.Key + ": " + e.Msg
}

// Path resolves which file to load: the --config flag, else $ACADEMY_GATEWAY_CONFIG, else
// ./config.yaml when it exists, else "" (built-in defaults).
func Path(flag string, getenv func(string) string) string {
	if flag != "" {
		return flag
	}
	if p := getenv(ConfigVar); p != "" {
		return p
	}
	if _, err := os.Stat("config.yaml"); err == nil {
		return "config.yaml"
	}
	return ""
}

// DefaultVars names the variables the built-in defaults take credentials from, the same
// ${VAR} references config.example.yaml makes: with no file (or a file that leaves these keys
// out) `export ACADEMY_CLIENT_ID=…` works as the README says. A file's value, and then an
// ACADEMY_GATEWAY_<SECTION>_<KEY> override, take precedence.
var DefaultVars = []struct{ Key, Var string }{
	{"oauth.client_id", "ACADEMY_CLIENT_ID"},
	{"oauth.client_secret", "ACADEMY_CLIENT_SECRET"},
	{"security.encryption_keys", "ACADEMY_GATEWAY_ENCRYPTION_KEY"},
	{"security.admin_token", "ACADEMY_GATEWAY_ADMIN_TOKEN"},
	{"webhooks.secret", "ACADEMY_GATEWAY_WEBHOOK_SECRET"},
}

// ConfigVar names the configuration file when --config is not given.
const ConfigVar = "ACADEMY_GATEWAY_CONFIG"

// Load reads the file at path (none when empty) over the defaults, applies environment overrides
// and validates the result. Every error it returns is an *Error.
func Load(path string, getenv func(string) string) (Config, error) {
	return LoadEnv(path, getenv, nil)
}

// LoadEnv is Load that also refuses unknown ACADEMY_GATEWAY_* variables, as unknown keys are
// refused: environ lists the environment as NAME=value (os.Environ), and a variable with the
// prefix must be an override (EnvVars), ConfigVar, one of DefaultVars, or referenced as ${NAME}
// in the file. A nil environ skips the check.
func LoadEnv(path string, getenv func(string) string, environ []string) (Config, error) {
	cfg := Default()
	setDefaultVars(&cfg, getenv)
	referenced := map[string]bool{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, &Error{Msg: fmt.Sprintf("read %s: %v", path, err)}
		}
		if err := decode(data, getenv, &cfg, referenced); err != nil {
			return Config{}, err
		}
	}
	if err := checkEnviron(environ, referenced); err != nil {
		return Config{}, err
	}
	if err := applyEnv(&cfg, getenv); err != nil {
		return Config{}, err
	}
	cfg.Upstream.StripPrefixes = compact(cfg.Upstream.StripPrefixes)
	cfg.OAuth.Scopes = compact(cfg.OAuth.Scopes)
	cfg.Security.EncryptionKeys = compact(cfg.Security.EncryptionKeys)
	cfg.Redis.Addrs = compact(cfg.Redis.Addrs)
	cfg.Webhooks.Events = compact(cfg.Webhooks.Events)
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// varRef matches ${NAME} references in YAML scalar values.
var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// decode parses YAML into cfg, expanding ${VAR} in scalar values (not in keys, and after
// parsing, so a value can never change the document's structure) and rejecting unknown keys.
func decode(data []byte, getenv func(string) string, cfg *Config, referenced map[string]bool) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return &Error{Msg: fmt.Sprintf("parse YAML: %v", err)}
	}
	if len(doc.Content) == 0 {
		return nil // an empty file keeps the defaults
	}
	expand(&doc, func(name string) string {
		referenced[name] = true
		return getenv(name)
	})
	expanded, err := yaml.Marshal(&doc)
	if err != nil {
		return &Error{Msg: fmt.Sprintf("expand variables: %v", err)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(expanded))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		// Line numbers in err are those of the re-written document.
		var rewritten yaml.Node
		_ = yaml.Unmarshal(expanded, &rewritten)
		return decodeError(&rewritten, err)
	}
	return nil
}

func expand(n *yaml.Node, getenv func(string) string) {
	switch n.Kind {
	case yaml.ScalarNode:
		if strings.Contains(n.Value, "${") {
			n.Value = varRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
				return getenv(ref[2 : len(ref)-1])
			})
			// A value that reads as a boolean or a number stays plain so it decodes into its
			// field; anything else is quoted, so a value can never add structure.
			n.Style, n.Tag = yaml.DoubleQuotedStyle, "!!str"
			if _, err := strconv.ParseBool(n.Value); err == nil {
				n.Style, n.Tag = 0, "!!bool"
			} else if _, err := strconv.Atoi(n.Value); err == nil {
				n.Style, n.Tag = 0, "!!int"
			}
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 { // values only, never keys
			expand(n.Content[i], getenv)
		}
	default:
		for _, c := range n.Content {
			expand(c, getenv)
		}
	}
}

// errLine finds the line number yaml.v3 puts in its messages ("line 3: ...").
var errLine = regexp.MustCompile(`line (\d+)`)

// keyAt returns the dotted path ("oauth.client_id") of the key on the given line of doc.
func keyAt(n *yaml.Node, line int, prefix string) string {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return keyAt(n.Content[0], line, prefix)
	}
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		path := k.Value
		if prefix != "" {
			path = prefix + "." + k.Value
		}
		if k.Line == line {
			return path
		}
		if sub := keyAt(v, line, path); sub != "" {
			return sub
		}
		if v.Kind == yaml.SequenceNode {
			for _, item := range v.Content {
				if item.Line == line {
					return path
				}
			}
		}
	}
	return ""
}

func decodeError(doc *yaml.Node, err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msg = strings.Join(te.Errors, "; ")
	}
	key := ""
	if m := errLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		key = keyAt(doc, line, "")
	}
	if strings.Contains(msg, "not found in type") {
		msg = "unknown key"
	}
	return &Error{Key: key, Msg: msg}
}

func compact(list []string) []string {
	out := list[:0:0]
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Duration is a time.Duration written as "30s" in YAML and environment variables.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML parses a Go duration string such as "1m30s".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (write e.g. 30s or 1m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
