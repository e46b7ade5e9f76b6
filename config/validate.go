package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	"go.yaml.in/yaml/v3"

	"github.com/academy-gateway/academy-gateway/scope"
)

// Validate checks every value and returns an *Error naming the first offending key.
func (c *Config) Validate() error {
	for key, addr := range map[string]string{"listen.proxy": c.Listen.Proxy, "listen.ops": c.Listen.Ops, "listen.auth": c.Listen.Auth} {
		if key == "listen.auth" && addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return &Error{Key: key, Msg: fmt.Sprintf("%q is not a host:port address", addr)}
		}
	}
	if c.Listen.Proxy == c.Listen.Ops {
		return &Error{Key: "listen.ops", Msg: "must differ from listen.proxy (the admin API is never served to callers)"}
	}
	if c.Listen.Auth != "" && (c.Listen.Auth == c.Listen.Proxy || c.Listen.Auth == c.Listen.Ops) {
		return &Error{Key: "listen.auth", Msg: "must differ from listen.proxy and listen.ops"}
	}
	if (c.Listen.TLSCertFile == "") != (c.Listen.TLSKeyFile == "") {
		return &Error{Key: "listen.tls_key_file", Msg: "listen.tls_cert_file and listen.tls_key_file go together: set both or neither"}
	}
	urls := []struct{ key, val string }{
		{"upstream.base_url", c.Upstream.BaseURL},
		{"oauth.authorize_url", c.OAuth.AuthorizeURL},
		{"oauth.token_url", c.OAuth.TokenURL},
		{"oauth.refresh_url", c.OAuth.RefreshURL},
		{"oauth.invalidate_url", c.OAuth.InvalidateURL},
		{"oauth.redirect_url", c.OAuth.RedirectURL},
	}
	for _, u := range urls {
		if err := checkURL(u.val); err != nil {
			return &Error{Key: u.key, Msg: err.Error()}
		}
	}
	for _, p := range c.Upstream.StripPrefixes {
		if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
			return &Error{Key: "upstream.strip_prefixes", Msg: fmt.Sprintf("%q must start with / and not end with /", p)}
		}
	}
	if err := c.checkRedirect(); err != nil {
		return &Error{Key: "oauth.redirect_url", Msg: err.Error()}
	}
	if c.Upstream.Timeout <= 0 {
		return &Error{Key: "upstream.timeout", Msg: "must be positive"}
	}
	if c.OAuth.ClientID == "" {
		return &Error{Key: "oauth.client_id", Msg: "is required (the Academy client id)"}
	}
	if c.OAuth.ClientSecret == "" {
		return &Error{Key: "oauth.client_secret", Msg: "is required (the Academy client secret)"}
	}
	if _, err := scope.ParseList(c.OAuth.Scopes, scope.All); err != nil {
		return &Error{Key: "oauth.scopes", Msg: "unknown scope: " + err.Error()}
	}
	if !slices.Contains(c.OAuth.Scopes, string(scope.Connect)) {
		return &Error{Key: "oauth.scopes", Msg: "must include connect (the Academy refuses to authorize without it)"}
	}
	if c.OAuth.RefreshBefore < 0 {
		return &Error{Key: "oauth.refresh_before", Msg: "must not be negative"}
	}
	if c.OAuth.ExpiresInUnit <= 0 {
		return &Error{Key: "oauth.expires_in_unit", Msg: "must be positive"}
	}
	if c.Redis.URL != "" && len(c.Redis.Addrs) > 0 {
		return &Error{Key: "redis.addrs", Msg: "set either redis.url or redis.addrs, not both"}
	}
	if c.Redis.MasterName != "" && len(c.Redis.Addrs) == 0 {
		return &Error{Key: "redis.master_name", Msg: "needs redis.addrs (the Sentinel nodes)"}
	}
	if c.Redis.URL != "" {
		if u, err := url.Parse(c.Redis.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			return &Error{Key: "redis.url", Msg: "must be a redis://, rediss:// or unix:// URL"}
		}
	}
	if c.Redis.TLSCAFile != "" && !strings.HasPrefix(c.Redis.URL, "rediss://") {
		return &Error{Key: "redis.tls_ca_file", Msg: "needs a rediss:// redis.url (TLS to Sentinel or Cluster nodes is not supported)"}
	}
	if len(c.Security.EncryptionKeys) == 0 {
		return &Error{Key: "security.encryption_keys", Msg: "at least one key is required (base64 of 32 random bytes: openssl rand -base64 32)"}
	}
	for i, k := range c.Security.EncryptionKeys {
		if b, err := base64.StdEncoding.DecodeString(k); err != nil || len(b) != 32 {
			return &Error{Key: "security.encryption_keys", Msg: fmt.Sprintf("key %d is not base64 of exactly 32 bytes", i+1)}
		}
	}
	switch c.Identity.Mode {
	case ModeAPIKey:
	case ModeStatic:
		if c.Identity.StaticUser == "" {
			return &Error{Key: "identity.static_user", Msg: "is required when identity.mode is static"}
		}
	default:
		return &Error{Key: "identity.mode", Msg: fmt.Sprintf("%q is not api_key or static", c.Identity.Mode)}
	}
	if _, err := zapcore.ParseLevel(c.Log.Level); err != nil {
		return &Error{Key: "log.level", Msg: fmt.Sprintf("%q is not debug, info, warn or error", c.Log.Level)}
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		return &Error{Key: "log.format", Msg: fmt.Sprintf("%q is not json or console", c.Log.Format)}
	}
	if c.Server.ShutdownTimeout <= 0 {
		return &Error{Key: "server.shutdown_timeout", Msg: "must be positive"}
	}
	if c.Server.MaxHeaderBytes < 1024 {
		return &Error{Key: "server.max_header_bytes", Msg: "must be at least 1024"}
	}
	for _, d := range []struct {
		key string
		val Duration
	}{
		{"server.read_header_timeout", c.Server.ReadHeaderTimeout},
		{"server.read_timeout", c.Server.ReadTimeout},
		{"server.idle_timeout", c.Server.IdleTimeout},
	} {
		if d.val <= 0 {
			return &Error{Key: d.key, Msg: "must be positive"}
		}
	}
	if c.Server.ReadHeaderTimeout > c.Server.ReadTimeout {
		return &Error{Key: "server.read_header_timeout", Msg: "must not exceed server.read_timeout"}
	}
	if c.Server.MaxBodyBytes < 0 {
		return &Error{Key: "server.max_body_bytes", Msg: "must not be negative (0: no limit)"}
	}
	return c.Webhooks.validate()
}

// validate checks the webhook settings: a URL makes the secret required.
func (w *Webhooks) validate() error {
	for _, e := range w.Events {
		if !slices.Contains(Events, e) {
			return &Error{Key: "webhooks.events", Msg: fmt.Sprintf("unknown event %q (known: %s)", e, strings.Join(Events, ", "))}
		}
	}
	if w.URL == "" {
		return nil
	}
	if err := checkURL(w.URL); err != nil {
		return &Error{Key: "webhooks.url", Msg: err.Error()}
	}
	raw, ok := strings.CutPrefix(w.Secret, "whsec_")
	if b, err := base64.StdEncoding.DecodeString(raw); !ok || err != nil || len(b) < 24 || len(b) > 64 {
		return &Error{Key: "webhooks.secret", Msg: "is required with webhooks.url: whsec_ followed by base64 of 24 to 64 random bytes (e.g. whsec_$(openssl rand -base64 32))"}
	}
	if len(w.Events) == 0 {
		return &Error{Key: "webhooks.events", Msg: "must list at least one event when webhooks.url is set"}
	}
	return nil
}

// OnboardingStartPath is the path of onboarding links on the proxy listener (onboard.StartPath);
// the redirect URL's path must differ from it.
const OnboardingStartPath = "/oauth/start"

// academyPaths are the first path segments of the Academy's own resources and endpoints (v1 and
// v2), plus "api" for its versioned prefixes: a callback path there would shadow calls that the
// proxy forwards.
var academyPaths = []string{"about", "api", "authorize", "awards", "custom-fields", "files", "genres",
	"helloworld", "info", "invalidate", "movies", "organizations", "people", "refresh", "token", "webhooks"}

// checkRedirect applies the rule for oauth.redirect_url: the gateway serves its path on the
// proxy listener ahead of the proxy, so the path must be one no caller sends to the Academy. It
// must not be "/", the onboarding start path, a path under a strip prefix, or a path whose first
// segment is an Academy resource (movies, info, …) or "api"; /oauth/callback is the usual choice.
// The URL must not carry user info or a fragment (OAuth 2.0, RFC 6749 §3.1.2).
func (c *Config) checkRedirect() error {
	u, err := url.Parse(c.OAuth.RedirectURL)
	if err != nil {
		return fmt.Errorf("%q is not an absolute http(s) URL", c.OAuth.RedirectURL)
	}
	switch {
	case u.User != nil:
		return errors.New("must not carry user info (user:password@)")
	case u.Fragment != "" || strings.Contains(c.OAuth.RedirectURL, "#"):
		return errors.New("must not have a fragment (#…): the Academy appends the code to the URL")
	case u.Path == "" || u.Path == "/":
		return errors.New("needs a path of its own, e.g. /oauth/callback: every other path is forwarded to the Academy")
	case u.Path == OnboardingStartPath:
		return fmt.Errorf("path %s is the onboarding start path; use e.g. /oauth/callback", u.Path)
	}
	for _, p := range c.Upstream.StripPrefixes {
		if u.Path == p || strings.HasPrefix(u.Path, p+"/") {
			return fmt.Errorf("path %s is under the strip prefix %s, so it would shadow calls forwarded to the Academy; use e.g. /oauth/callback", u.Path, p)
		}
	}
	first, _, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if slices.Contains(academyPaths, strings.ToLower(first)) {
		return fmt.Errorf("path %s starts with /%s, an Academy API path, so it would shadow calls forwarded there; use e.g. /oauth/callback", u.Path, first)
	}
	return nil
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	return nil
}

// EnvPrefix starts every override variable: ACADEMY_GATEWAY_<SECTION>_<KEY>.
const EnvPrefix = "ACADEMY_GATEWAY_"

// EnvVars returns the name of every override variable, ACADEMY_GATEWAY_<SECTION>_<KEY>, in
// the order of the configuration file.
func EnvVars() []string {
	var names []string
	_ = walk(&Config{}, func(key string, _ reflect.Value, _ reflect.StructField) error {
		names = append(names, envName(key))
		return nil
	})
	return names
}

func envName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// applyEnv sets every field whose ACADEMY_GATEWAY_<SECTION>_<KEY> variable is non-empty.
// Lists are comma-separated.
func applyEnv(c *Config, getenv func(string) string) error {
	return walk(c, func(key string, f reflect.Value, _ reflect.StructField) error {
		name := envName(key)
		raw := getenv(name)
		if raw == "" {
			return nil
		}
		if err := setFromString(f, raw); err != nil {
			return &Error{Key: key, Msg: fmt.Sprintf("from %s: %v", name, err)}
		}
		return nil
	})
}

// setDefaultVars fills the keys of DefaultVars from their variables (a list key gets one item).
func setDefaultVars(c *Config, getenv func(string) string) {
	_ = walk(c, func(key string, f reflect.Value, _ reflect.StructField) error {
		for _, d := range DefaultVars {
			if d.Key != key {
				continue
			}
			if v := getenv(d.Var); v != "" {
				if f.Kind() == reflect.Slice {
					f.Set(reflect.ValueOf([]string{v}))
				} else {
					f.SetString(v)
				}
			}
		}
		return nil
	})
}

// serviceLink matches the variables Kubernetes sets in every pod for each Service of the
// namespace (service links): a Service named academy-gateway yields ACADEMY_GATEWAY_SERVICE_HOST,
// ACADEMY_GATEWAY_PORT, ACADEMY_GATEWAY_PORT_8080_TCP_ADDR and so on. They are not the
// operator's typos, and refusing them would stop the gateway from starting in Kubernetes.
var serviceLink = regexp.MustCompile(`_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$`)

// checkEnviron refuses ACADEMY_GATEWAY_* variables that nothing reads: a mistyped override
// (ACADEMY_GATEWAY_REDIS_URLL) would otherwise be silently ignored. Kubernetes service-link
// variables are let through.
func checkEnviron(environ []string, referenced map[string]bool) error {
	overrides := EnvVars()
	known := map[string]bool{ConfigVar: true}
	for _, n := range overrides {
		known[n] = true
	}
	for _, d := range DefaultVars {
		known[d.Var] = true
	}
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, EnvPrefix) && !known[name] && !referenced[name] && !serviceLink.MatchString(name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	msg := "unknown environment variable"
	if len(unknown) > 1 {
		msg += "s"
	}
	hints := make([]string, 0, len(unknown))
	for _, u := range unknown {
		near := nearest(u, overrides)
		switch {
		case near == "":
		case len(unknown) == 1:
			hints = append(hints, "did you mean "+near+"?")
		default:
			hints = append(hints, u+": did you mean "+near+"?")
		}
	}
	msg += fmt.Sprintf(" (overrides are %s<SECTION>_<KEY>, e.g. %sREDIS_URL; other names need a ${NAME} reference in the file)", EnvPrefix, EnvPrefix)
	if len(hints) > 0 {
		msg += "; " + strings.Join(hints, "; ")
	}
	return &Error{Key: strings.Join(unknown, ", "), Msg: msg}
}

// nearest returns the candidate within three edits of name, or "".
func nearest(name string, candidates []string) string {
	best, bestD := "", 4
	for _, c := range candidates {
		if d := editDistance(name, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func setFromString(f reflect.Value, raw string) error {
	switch f.Interface().(type) {
	case Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a duration", raw)
		}
		f.Set(reflect.ValueOf(Duration(d)))
	case string:
		f.SetString(raw)
	case []string:
		f.Set(reflect.ValueOf(strings.Split(raw, ",")))
	case bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not true or false", raw)
		}
		f.SetBool(b)
	case int, int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", raw)
		}
		f.SetInt(n)
	default:
		return fmt.Errorf("unsupported type %s", f.Type())
	}
	return nil
}

// walk calls fn for every leaf field of c with its dotted YAML key.
func walk(c *Config, fn func(key string, f reflect.Value, sf reflect.StructField) error) error {
	root := reflect.ValueOf(c).Elem()
	for i := range root.NumField() {
		section := root.Field(i)
		sname := root.Type().Field(i).Tag.Get("yaml")
		for j := range section.NumField() {
			sf := section.Type().Field(j)
			if err := fn(sname+"."+sf.Tag.Get("yaml"), section.Field(j), sf); err != nil {
				return err
			}
		}
	}
	return nil
}

// Masked returns a copy of c with every secret replaced by "****" (empty secrets stay empty) and
// the password of the Redis URL hidden, for printing.
func (c Config) Masked() Config {
	c.OAuth.Scopes = slices.Clone(c.OAuth.Scopes)
	c.Security.EncryptionKeys = slices.Clone(c.Security.EncryptionKeys)
	_ = walk(&c, func(_ string, f reflect.Value, sf reflect.StructField) error {
		switch sf.Tag.Get("secret") {
		case "true":
			switch v := f.Interface().(type) {
			case string:
				if v != "" {
					f.SetString("****")
				}
			case []string:
				for i := range v {
					v[i] = "****"
				}
			}
		case "url":
			if u, err := url.Parse(f.String()); err == nil && u.User != nil {
				if _, ok := u.User.Password(); ok {
					u.User = url.UserPassword(u.User.Username(), "****")
					f.SetString(strings.Replace(u.String(), "%2A%2A%2A%2A", "****", 1))
				}
			}
		}
		return nil
	})
	return c
}

// YAML renders c as YAML, for check-config.
func (c Config) YAML() []byte {
	out, err := yaml.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("marshal config: %v", err)) // Config holds only marshalable types
	}
	return out
}
