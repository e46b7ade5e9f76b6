package deploy

import (
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/academy-gateway/academy-gateway/config"
)

// manifest holds the parts of Kubernetes objects the test reads.
type manifest struct {
	Kind string            `yaml:"kind"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Template struct {
			Spec struct {
				Containers []container `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type container struct {
	Name string   `yaml:"name"`
	Args []string `yaml:"args"`
	Env  []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom any    `yaml:"valueFrom"`
	} `yaml:"env"`
}

var varRef = regexp.MustCompile(`\$\{([A-Z0-9_]+)\}`)

// TestKubernetesManifests: the gateway container of every example manifest starts with a valid
// configuration (check-config would pass), and every ACADEMY_GATEWAY_* variable it sets is a
// real override or a variable its configuration file refers to, so no setting is silently ignored.
func TestKubernetesManifests(t *testing.T) {
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			docs := readManifests(t, file)
			configFile := ""
			for _, d := range docs {
				if d.Kind == "ConfigMap" && d.Data["config.yaml"] != "" {
					configFile = d.Data["config.yaml"]
				}
			}
			var found bool
			for _, d := range docs {
				for _, c := range d.Spec.Template.Spec.Containers {
					if c.Name != "academy-gateway" {
						continue
					}
					found = true
					env := map[string]string{}
					for _, e := range c.Env {
						env[e.Name] = e.Value
						if e.ValueFrom != nil { // a Secret: any well-formed value
							env[e.Name] = "secret-" + strings.ToLower(e.Name)
							if strings.Contains(e.Name, "ENCRYPTION_KEY") {
								env[e.Name] = key
							}
						}
						referenced := slices.ContainsFunc(varRef.FindAllStringSubmatch(configFile, -1), func(m []string) bool { return m[1] == e.Name })
						if strings.HasPrefix(e.Name, config.EnvPrefix) && !slices.Contains(config.EnvVars(), e.Name) && !referenced {
							t.Errorf("%s sets %s, which is neither a configuration override nor used by its config file", file, e.Name)
						}
					}
					path := ""
					if i := slices.Index(c.Args, "--config"); i >= 0 {
						if configFile == "" {
							t.Fatalf("%s passes --config but has no config.yaml ConfigMap", file)
						}
						path = filepath.Join(t.TempDir(), "config.yaml")
						if err := os.WriteFile(path, []byte(configFile), 0o600); err != nil {
							t.Fatal(err)
						}
					}
					cfg, err := config.Load(path, func(k string) string { return env[k] })
					if err != nil {
						t.Fatalf("%s: the gateway would not start: %v", file, err)
					}
					if env["ACADEMY_GATEWAY_IDENTITY_MODE"] == config.ModeStatic && cfg.Identity.StaticUser == "" {
						t.Errorf("%s: static mode without a user", file)
					}
				}
			}
			if !found {
				t.Errorf("%s has no academy-gateway container", file)
			}
		})
	}
}

func readManifests(t *testing.T, file string) []manifest {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var out []manifest
	for {
		var m manifest
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, m)
	}
}
