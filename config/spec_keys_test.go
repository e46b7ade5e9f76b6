package config_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/academy-gateway/academy-gateway/config"
)

// specKeys are the configuration keys of the product specification (SPEC.md §3); each is also
// settable as ACADEMY_GATEWAY_<SECTION>_<KEY>.
var specKeys = []string{
	"listen.proxy", "listen.ops", "listen.auth", "listen.tls_cert_file", "listen.tls_key_file",
	"upstream.base_url", "upstream.strip_prefixes", "upstream.timeout",
	"oauth.client_id", "oauth.client_secret", "oauth.authorize_url", "oauth.token_url", "oauth.refresh_url",
	"oauth.invalidate_url", "oauth.redirect_url", "oauth.scopes", "oauth.refresh_before", "oauth.expires_in_unit",
	"oauth.keep_alive",
	"redis.url", "redis.addrs", "redis.master_name", "redis.key_prefix", "redis.tls_ca_file",
	"security.encryption_keys", "security.admin_token", "security.forward_auth_token",
	"identity.mode", "identity.static_user",
	"log.level", "log.format",
	"server.shutdown_timeout", "server.max_header_bytes", "server.read_header_timeout", "server.read_timeout",
	"server.idle_timeout", "server.max_body_bytes",
	"webhooks.url", "webhooks.secret", "webhooks.events",
}

func sortedEnvNames(keys []string) []string {
	var names []string
	for _, k := range keys {
		names = append(names, "ACADEMY_GATEWAY_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_")))
	}
	slices.Sort(names)
	return names
}

// TestSpecKeys: the configuration has exactly the keys of SPEC.md §3, each with its override
// variable, and config.example.yaml (which "documents every key") lists each of them.
func TestSpecKeys(t *testing.T) {
	want := sortedEnvNames(specKeys)
	got := slices.Sorted(slices.Values(config.EnvVars()))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("override variables (-spec +config):\n%s", diff)
	}

	data, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var example map[string]map[string]yaml.Node
	if err := yaml.Unmarshal(data, &example); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for section, fields := range example {
		for k := range fields {
			keys = append(keys, section+"."+k)
		}
	}
	if diff := cmp.Diff(want, sortedEnvNames(keys)); diff != "" {
		t.Errorf("config.example.yaml keys (-spec +example):\n%s", diff)
	}
}
