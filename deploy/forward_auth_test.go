package deploy

import (
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestTraefikForwardAuth: Traefik is not in Debian, so CI cannot run traefik.yml the way it runs
// the nginx and Caddy files (cmd/academy-gateway/ingress_test.go). This checks what can be
// checked without it: the file parses, the router applies the check before any rewrite, the
// check asks /forward-auth without trusting callers' X-Forwarded-*, copies Authorization back,
// and x-api-key is removed after the check.
func TestTraefikForwardAuth(t *testing.T) {
	b, err := os.ReadFile("forward-auth/traefik.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		HTTP struct {
			Routers map[string]struct {
				Middlewares []string `yaml:"middlewares"`
				Service     string   `yaml:"service"`
			} `yaml:"routers"`
			Middlewares map[string]struct {
				ForwardAuth *struct {
					Address             string   `yaml:"address"`
					TrustForwardHeader  bool     `yaml:"trustForwardHeader"`
					AuthRequestHeaders  []string `yaml:"authRequestHeaders"`
					AuthResponseHeaders []string `yaml:"authResponseHeaders"`
				} `yaml:"forwardAuth"`
				Headers *struct {
					CustomRequestHeaders map[string]string `yaml:"customRequestHeaders"`
				} `yaml:"headers"`
				StripPrefixRegex *struct {
					Regex []string `yaml:"regex"`
				} `yaml:"stripPrefixRegex"`
			} `yaml:"middlewares"`
			Services map[string]any `yaml:"services"`
		} `yaml:"http"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("traefik.yml: %v", err)
	}
	router, ok := doc.HTTP.Routers["academy"]
	if !ok || doc.HTTP.Services[router.Service] == nil {
		t.Fatalf("router academy with a defined service missing: %+v", doc.HTTP.Routers)
	}
	check, clean, strip := -1, -1, -1
	for i, name := range router.Middlewares {
		mw, ok := doc.HTTP.Middlewares[name]
		if !ok {
			t.Fatalf("router uses undefined middleware %q", name)
		}
		switch {
		case mw.ForwardAuth != nil:
			check = i
			fa := mw.ForwardAuth
			if !strings.HasSuffix(fa.Address, "/forward-auth") || fa.TrustForwardHeader ||
				!slices.Contains(fa.AuthResponseHeaders, "Authorization") || !slices.Contains(fa.AuthRequestHeaders, "X-Api-Key") {
				t.Errorf("forwardAuth = %+v", *fa)
			}
		case mw.Headers != nil && check >= 0:
			if v, ok := mw.Headers.CustomRequestHeaders["X-Api-Key"]; ok && v == "" {
				clean = i
			}
		case mw.StripPrefixRegex != nil:
			strip = i
		}
	}
	if check < 0 || clean < check || strip < check {
		t.Errorf("middleware order %v: want the check first, then x-api-key removed and the prefix stripped", router.Middlewares)
	}
}
