package deploy

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/academy-gateway/academy-gateway/config"
)

// The Helm chart (deploy/helm/academy-gateway) is checked as helm itself would: helm lint and the
// template engine, through helm's own Go packages, for the chart's defaults and every shipped
// values file. Every rendered object is decoded strictly into its Kubernetes API type (an unknown
// or misspelt field fails), and the gateway configuration each values file renders is loaded by
// the config package, as check-config does, with the environment the pod would have.

const (
	chartDir    = "helm/academy-gateway"
	releaseName = "gw"
	namespace   = "gateway"
)

// chartCase is one way to install the chart: a values file, or values given inline.
type chartCase struct {
	name   string
	file   string         // a values file, relative to this directory; "" for inline only
	values map[string]any // over the file, as --set would be
	// kinds are the objects it must render, kind → count.
	kinds map[string]int
}

// testSecrets are what an install with the chart's defaults must add: the client id and the
// secrets, for the chart to create the Secret.
var testSecrets = map[string]any{
	"config": map[string]any{"oauth": map[string]any{"client_id": "gateway-client"}},
	"secrets": map[string]any{
		"clientSecret":   "s3cret",
		"encryptionKeys": []any{base64.StdEncoding.EncodeToString(make([]byte, 32))},
		"adminToken":     "admin-token-value",
	},
}

func chartCases() []chartCase {
	base := map[string]int{"ConfigMap": 1, "Deployment": 1, "ServiceAccount": 1, "Pod": 1}
	with := func(extra map[string]int) map[string]int {
		m := maps.Clone(base)
		maps.Copy(m, extra)
		return m
	}
	return []chartCase{
		{name: "defaults", values: testSecrets,
			kinds: with(map[string]int{"Secret": 1, "Service": 2, "PodDisruptionBudget": 1})},
		{name: "central", file: "helm/values-central.yaml",
			kinds: with(map[string]int{"ConfigMap": 2, "Service": 2, "PodDisruptionBudget": 1, "HorizontalPodAutoscaler": 1,
				"ServiceMonitor": 1, "PrometheusRule": 1, "NetworkPolicy": 1})},
		{name: "sidecar", file: "helm/values-sidecar.yaml",
			kinds: with(map[string]int{"Service": 2, "NetworkPolicy": 1})},
		{name: "forward-auth", file: "helm/values-forward-auth.yaml",
			kinds: with(map[string]int{"Service": 3, "PodDisruptionBudget": 1, "ServiceMonitor": 1, "NetworkPolicy": 1})},
	}
}

// values merges a case's file and inline values, as helm install -f FILE --set … does.
func (c chartCase) valuesMap(t *testing.T) map[string]any {
	t.Helper()
	vals := map[string]any{}
	if c.file != "" {
		v, err := chartutil.ReadValuesFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		vals = v
	}
	return chartutil.CoalesceTables(deepCopy(c.values), vals)
}

func deepCopy(m map[string]any) map[string]any {
	b, _ := yaml.Marshal(m)
	out := map[string]any{}
	_ = yaml.Unmarshal(b, &out)
	return out
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// render runs helm's template engine as helm template gw deploy/helm/academy-gateway -n gateway.
func render(t *testing.T, ch *chart.Chart, vals map[string]any) (map[string]string, error) {
	t.Helper()
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	return engine.Render(ch, rv)
}

// object is one rendered manifest, decoded into its API type.
type object struct {
	file string
	kind string
	name string
	obj  any
	meta metav1.ObjectMeta
}

// typed returns a new value of the API type of apiVersion and kind.
func typed(apiVersion, kind string) (any, bool) {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1 Secret":
		return &corev1.Secret{}, true
	case "v1 Service":
		return &corev1.Service{}, true
	case "v1 Pod":
		return &corev1.Pod{}, true
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, true
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, true
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, true
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, true
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &monitoringv1.PrometheusRule{}, true
	}
	return nil, false
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// decodeAll splits the rendered files into documents and decodes each strictly.
func decodeAll(t *testing.T, rendered map[string]string) []object {
	t.Helper()
	var out []object
	for _, file := range slices.Sorted(maps.Keys(rendered)) {
		if strings.HasSuffix(file, "NOTES.txt") {
			continue
		}
		for _, doc := range docSeparator.Split(rendered[file], -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: not YAML: %v\n%s", file, err, doc)
			}
			obj, ok := typed(tm.APIVersion, tm.Kind)
			if !ok {
				t.Fatalf("%s: %s %s is not a kind this test knows: add it to typed()", file, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s: %s does not decode strictly into its API type: %v\n%s", file, tm.Kind, err, doc)
			}
			var m struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			_ = yaml.Unmarshal([]byte(doc), &m)
			out = append(out, object{file: file, kind: tm.Kind, name: m.Metadata.Name, obj: obj, meta: m.Metadata})
		}
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// TestChartLint runs helm lint (strict: warnings fail too) for every case.
func TestChartLint(t *testing.T) {
	t.Parallel()
	for _, c := range chartCases() {
		t.Run(c.name, func(t *testing.T) {
			linter := lint.All(chartDir, c.valuesMap(t), namespace, false)
			for _, msg := range linter.Messages {
				if msg.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", msg)
				} else {
					t.Logf("helm lint: %s", msg)
				}
			}
		})
	}
}

// wantLabels are the app.kubernetes.io labels every object and pod carries.
var wantLabels = map[string]string{
	"app.kubernetes.io/name":       "academy-gateway",
	"app.kubernetes.io/instance":   releaseName,
	"app.kubernetes.io/managed-by": "Helm",
	"app.kubernetes.io/part-of":    "academy-gateway",
}

func checkLabels(t *testing.T, what string, labels map[string]string) {
	t.Helper()
	for k, v := range wantLabels {
		if labels[k] != v {
			t.Errorf("%s: label %s = %q, want %q", what, k, labels[k], v)
		}
	}
	if labels["app.kubernetes.io/version"] == "" {
		t.Errorf("%s: no app.kubernetes.io/version label", what)
	}
}

// selects reports whether selector (matchLabels) selects a pod with labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestChartRender renders every case and checks the objects.
func TestChartRender(t *testing.T) {
	t.Parallel()
	ch := loadChart(t)
	for _, c := range chartCases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rendered, err := render(t, ch, c.valuesMap(t))
			if err != nil {
				t.Fatalf("helm template: %v", err)
			}
			objs := decodeAll(t, rendered)
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.kind]++
				checkLabels(t, o.kind+" "+o.name, o.meta.Labels)
			}
			if diff := cmp.Diff(c.kinds, kinds); diff != "" {
				t.Errorf("rendered kinds (-want +got):\n%s", diff)
			}
			dep := only[*appsv1.Deployment](t, objs)
			pod := dep.Spec.Template
			checkLabels(t, "pod template", pod.Labels)
			if !selects(dep.Spec.Selector.MatchLabels, pod.Labels) {
				t.Errorf("Deployment selector %v does not select its pods %v", dep.Spec.Selector.MatchLabels, pod.Labels)
			}
			gw := gatewayContainer(t, pod.Spec)
			checkSecurity(t, pod.Spec, gw)
			checkProbes(t, gw)
			checkChecksum(t, rendered, pod.Annotations)
			checkSelectors(t, objs, pod)
			checkConfig(t, c, objs, pod.Spec, gw)
			checkHelmTest(t, objs, gw)
			if c.name == "sidecar" {
				if len(pod.Spec.Containers) != 2 || pod.Spec.Containers[0].Name != "legacy-app" {
					t.Errorf("sidecar: containers %v, want the legacy app next to the gateway", containerNames(pod.Spec))
				}
			}
		})
	}
}

func containerNames(spec corev1.PodSpec) []string {
	var names []string
	for _, c := range spec.Containers {
		names = append(names, c.Name)
	}
	return names
}

// only returns the single object of type T.
func only[T any](t *testing.T, objs []object) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.obj.(T); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T, want 1", len(found), zero)
	}
	return found[0]
}

func all[T any](objs []object) []T {
	var found []T
	for _, o := range objs {
		if v, ok := o.obj.(T); ok {
			found = append(found, v)
		}
	}
	return found
}

func gatewayContainer(t *testing.T, spec corev1.PodSpec) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == "academy-gateway" {
			return c
		}
	}
	t.Fatalf("no academy-gateway container in %v", containerNames(spec))
	return corev1.Container{}
}

// checkSecurity: non-root, read-only root filesystem, no capabilities, no privilege escalation,
// seccomp RuntimeDefault, no service account token.
func checkSecurity(t *testing.T, spec corev1.PodSpec, gw corev1.Container) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext: want seccompProfile RuntimeDefault")
	}
	sc := gw.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("gateway container has no securityContext")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("gateway container: want readOnlyRootFilesystem")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("gateway container: want allowPrivilegeEscalation false")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("gateway container: capabilities %+v, want drop [ALL] and nothing added", sc.Capabilities)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("gateway container: want runAsNonRoot")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("pod: want automountServiceAccountToken false (the gateway never talks to the API server)")
	}
	if gw.Resources.Requests.Cpu().IsZero() || gw.Resources.Limits.Memory().IsZero() {
		t.Errorf("gateway container: resources %+v, want a CPU request and a memory limit", gw.Resources)
	}
}

func checkProbes(t *testing.T, gw corev1.Container) {
	t.Helper()
	ports := map[string]bool{}
	for _, p := range gw.Ports {
		ports[p.Name] = true
	}
	for name, want := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{"readiness": {gw.ReadinessProbe, "/readyz"}, "liveness": {gw.LivenessProbe, "/healthz"}} {
		p := want.probe
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want.path || !ports[p.HTTPGet.Port.String()] || p.HTTPGet.Port.String() != "ops" {
			t.Errorf("%s probe %+v: want GET %s on the ops port", name, p, want.path)
		}
	}
}

// checkChecksum: the pods carry the hash of the rendered ConfigMap, so a change rolls them.
func checkChecksum(t *testing.T, rendered map[string]string, annotations map[string]string) {
	t.Helper()
	sum := sha256.Sum256([]byte(rendered["academy-gateway/templates/configmap.yaml"]))
	if got, want := annotations["checksum/config"], hex.EncodeToString(sum[:]); got != want {
		t.Errorf("checksum/config = %q, want the ConfigMap's sha256 %q", got, want)
	}
}

// checkSelectors: every Service, PodDisruptionBudget and NetworkPolicy selects the gateway's pods,
// and every port a Service or NetworkPolicy names is a container port.
func checkSelectors(t *testing.T, objs []object, pod corev1.PodTemplateSpec) {
	t.Helper()
	ports := map[string]bool{}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
	}
	for _, s := range all[*corev1.Service](objs) {
		if !selects(s.Spec.Selector, pod.Labels) {
			t.Errorf("Service %s selector %v does not select the pods", s.Name, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			if !ports[p.TargetPort.String()] {
				t.Errorf("Service %s port %s targets %q, not a container port (%v)", s.Name, p.Name, p.TargetPort.String(), ports)
			}
		}
	}
	for _, p := range all[*policyv1.PodDisruptionBudget](objs) {
		if !selects(p.Spec.Selector.MatchLabels, pod.Labels) {
			t.Errorf("PodDisruptionBudget selector %v does not select the pods", p.Spec.Selector.MatchLabels)
		}
	}
	for _, np := range all[*networkingv1.NetworkPolicy](objs) {
		if !selects(np.Spec.PodSelector.MatchLabels, pod.Labels) {
			t.Errorf("NetworkPolicy selector %v does not select the pods", np.Spec.PodSelector.MatchLabels)
		}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port != nil && !ports[p.Port.String()] {
					t.Errorf("NetworkPolicy names port %q, not a container port", p.Port.String())
				}
				if p.Port != nil && (p.Port.String() == "ops" || p.Port.String() == "auth") && len(rule.From) == 0 {
					t.Errorf("NetworkPolicy opens %s to everyone: want only the configured peers", p.Port.String())
				}
			}
		}
	}
	for _, sm := range all[*monitoringv1.ServiceMonitor](objs) {
		var found bool
		for _, s := range all[*corev1.Service](objs) {
			if selects(sm.Spec.Selector.MatchLabels, s.Labels) {
				found = true
				if s.Labels[sm.Spec.JobLabel] != "academy-gateway" {
					t.Errorf("ServiceMonitor job label %s on Service %s is %q: the alerts select job=\"academy-gateway\"", sm.Spec.JobLabel, s.Name, s.Labels[sm.Spec.JobLabel])
				}
				if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "ops" }) {
					t.Errorf("ServiceMonitor selects Service %s, which has no ops port", s.Name)
				}
			}
		}
		if !found {
			t.Errorf("ServiceMonitor selector %v selects no Service", sm.Spec.Selector.MatchLabels)
		}
	}
}

// checkConfig runs what check-config does on the configuration the pod would load: the
// ConfigMap's config.yaml at the --config path, and the container's environment with the
// Secret's values (from the rendered Secret, or stand-ins for an existing one).
func checkConfig(t *testing.T, c chartCase, objs []object, spec corev1.PodSpec, gw corev1.Container) {
	t.Helper()
	var cm *corev1.ConfigMap
	var body string
	for _, m := range all[*corev1.ConfigMap](objs) {
		if b, ok := m.Data["config.yaml"]; ok {
			cm, body = m, b
		}
	}
	if cm == nil {
		t.Fatal("no ConfigMap holds config.yaml")
	}
	i := slices.Index(gw.Args, "--config")
	if i < 0 || i+1 >= len(gw.Args) {
		t.Fatalf("gateway args %v: want --config FILE", gw.Args)
	}
	mountedAt := ""
	for _, m := range gw.VolumeMounts {
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
				mountedAt = m.MountPath
			}
		}
	}
	if want := path.Join(mountedAt, "config.yaml"); gw.Args[i+1] != want {
		t.Errorf("--config %s, but the ConfigMap's config.yaml is mounted at %s", gw.Args[i+1], want)
	}

	var created map[string][]byte
	if secrets := all[*corev1.Secret](objs); len(secrets) == 1 {
		created = secrets[0].Data
	}
	env := map[string]string{}
	for _, e := range gw.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			optional := ref.Optional != nil && *ref.Optional
			switch {
			case created != nil:
				v, ok := created[ref.Key]
				if !ok && !optional {
					t.Errorf("env %s needs Secret key %s, which the chart's Secret lacks", e.Name, ref.Key)
				}
				env[e.Name] = string(v)
			case !optional:
				env[e.Name] = standIn(ref.Key)
			}
		default:
			t.Errorf("env %s: unexpected valueFrom %+v", e.Name, e.ValueFrom)
		}
		if strings.HasPrefix(e.Name, config.EnvPrefix) && !slices.Contains(config.EnvVars(), e.Name) {
			t.Errorf("env %s is not a configuration override: the gateway would ignore or refuse it", e.Name)
		}
	}
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadEnv(file, func(k string) string { return env[k] }, environ(env))
	if err != nil {
		t.Fatalf("check-config would fail on the %s configuration: %v\n%s", c.name, err, body)
	}
	// Every file the configuration names lies on a mounted volume.
	for key, f := range map[string]string{"listen.tls_cert_file": cfg.Listen.TLSCertFile, "listen.tls_key_file": cfg.Listen.TLSKeyFile, "redis.tls_ca_file": cfg.Redis.TLSCAFile} {
		if f != "" && !slices.ContainsFunc(gw.VolumeMounts, func(m corev1.VolumeMount) bool { return strings.HasPrefix(f, m.MountPath+"/") }) {
			t.Errorf("%s %s is on no mounted volume", key, f)
		}
	}
	if cfg.Identity.Mode == config.ModeStatic && !strings.HasPrefix(cfg.Listen.Proxy, "127.0.0.1:") {
		t.Errorf("identity.mode static on %s: every caller would act for %s; keep the proxy listener on loopback", cfg.Listen.Proxy, cfg.Identity.StaticUser)
	}
}

// checkHelmTest: helm test runs check-config --connect with the gateway's configuration file,
// environment and mounts, as locked down as the gateway.
func checkHelmTest(t *testing.T, objs []object, gw corev1.Container) {
	t.Helper()
	p := only[*corev1.Pod](t, objs)
	if p.Annotations["helm.sh/hook"] != "test" {
		t.Errorf("Pod %s: annotations %v, want helm.sh/hook: test", p.Name, p.Annotations)
	}
	if len(p.Spec.Containers) != 1 {
		t.Fatalf("test Pod: %d containers, want 1", len(p.Spec.Containers))
	}
	c := p.Spec.Containers[0]
	checkSecurity(t, p.Spec, c)
	want := append([]string{"check-config", "--connect"}, gw.Args[1:]...) // serve --config FILE
	if diff := cmp.Diff(want, c.Args); diff != "" {
		t.Errorf("test Pod args (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(gw.Env, c.Env); diff != "" {
		t.Errorf("test Pod env differs from the gateway's (-gateway +test):\n%s", diff)
	}
	if diff := cmp.Diff(gw.VolumeMounts, c.VolumeMounts); diff != "" {
		t.Errorf("test Pod mounts differ from the gateway's (-gateway +test):\n%s", diff)
	}
	for _, svc := range all[*corev1.Service](objs) {
		if selects(svc.Spec.Selector, p.Labels) {
			t.Errorf("Service %s selects the test Pod", svc.Name)
		}
	}
	for _, pdb := range all[*policyv1.PodDisruptionBudget](objs) {
		if selects(pdb.Spec.Selector.MatchLabels, p.Labels) {
			t.Error("the PodDisruptionBudget counts the test Pod")
		}
	}
	if p.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("test Pod restartPolicy %q, want Never", p.Spec.RestartPolicy)
	}
}

// environ is env as os.Environ lists it.
func environ(env map[string]string) []string {
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// standIn is a well-formed value for a key of an existing Secret.
func standIn(key string) string {
	if key == "encryption-keys" {
		return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	}
	return "stand-in-" + key
}

// TestChartConfigChangeRollsPods: a different configuration gives the pods a different checksum.
func TestChartConfigChangeRollsPods(t *testing.T) {
	t.Parallel()
	ch := loadChart(t)
	sum := func(level string) string {
		vals := chartutil.CoalesceTables(map[string]any{"config": map[string]any{"log": map[string]any{"level": level}}}, deepCopy(testSecrets))
		rendered, err := render(t, ch, vals)
		if err != nil {
			t.Fatal(err)
		}
		return only[*appsv1.Deployment](t, decodeAll(t, rendered)).Spec.Template.Annotations["checksum/config"]
	}
	if a, b := sum("info"), sum("debug"); a == b || a == "" {
		t.Errorf("checksum/config %q for log.level info and %q for debug: want two different hashes", a, b)
	}
}

// TestChartRefuses: values that cannot work, and values the schema (values.schema.json) does not
// know, fail at helm template time, naming the value.
func TestChartRefuses(t *testing.T) {
	t.Parallel()
	ch := loadChart(t)
	tests := []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"unknown mode", map[string]any{"mode": "daemon"}, "/mode': value must be one of 'central', 'sidecar'"},
		{"sidecar without the app", map[string]any{"mode": "sidecar"}, "sidecar.app"},
		{"ops on loopback", map[string]any{"config": map[string]any{"listen": map[string]any{"ops": "127.0.0.1:9090"}}}, "config.listen.ops"},
		{"misspelt value", map[string]any{"replicaCont": 2}, "replicaCont"},
		{"misspelt nested value", map[string]any{"networkPolicy": map[string]any{"authFrm": []any{}}}, "authFrm"},
		{"wrong type", map[string]any{"replicaCount": "three"}, "replicaCount"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, ch, chartutil.CoalesceTables(tc.values, deepCopy(testSecrets)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("helm template: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestChartDashboard: the chart's copy of the dashboard is deploy/grafana/academy-gateway.json,
// and the ConfigMap carries it unchanged, with the label Grafana's sidecar looks for.
func TestChartDashboard(t *testing.T) {
	t.Parallel()
	shipped := wantChartCopy(t, dashboardFile)
	var found bool
	for _, cm := range all[*corev1.ConfigMap](renderFile(t, "helm/values-central.yaml")) {
		if d, ok := cm.Data["academy-gateway.json"]; ok {
			found = true
			if d != string(shipped) {
				t.Error("the dashboard ConfigMap does not carry the dashboard unchanged")
			}
			if cm.Labels["grafana_dashboard"] != "1" {
				t.Errorf("dashboard ConfigMap labels %v, want grafana_dashboard: \"1\"", cm.Labels)
			}
		}
	}
	if !found {
		t.Error("values-central.yaml renders no dashboard ConfigMap")
	}
}

// TestChartAlerts: the chart's copy of the alert rules is deploy/prometheus/alerts.yml, and the
// PrometheusRule carries exactly its groups.
func TestChartAlerts(t *testing.T) {
	t.Parallel()
	shipped := wantChartCopy(t, alertsFile)
	rule := only[*monitoringv1.PrometheusRule](t, renderFile(t, "helm/values-central.yaml"))
	var want monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(shipped, &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, rule.Spec); diff != "" {
		t.Errorf("PrometheusRule spec (-alerts.yml +rendered):\n%s", diff)
	}
	if !slices.ContainsFunc(rule.Spec.Groups, func(g monitoringv1.RuleGroup) bool {
		return slices.ContainsFunc(g.Rules, func(r monitoringv1.Rule) bool { return r.Alert != "" })
	}) {
		t.Error("the PrometheusRule has no alerts")
	}
}

// wantChartCopy fails the test unless the chart's copy of a shipped file (in the chart's files/,
// under the same name) is byte for byte the shipped file; it returns the shipped file's contents.
func wantChartCopy(t *testing.T, shipped string) []byte {
	t.Helper()
	want, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := os.ReadFile(filepath.Join(chartDir, "files", filepath.Base(shipped)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, copied) {
		t.Fatalf("%s/files/%s differs from %s: cp %s %s/files/", chartDir, filepath.Base(shipped), shipped, shipped, chartDir)
	}
	return want
}

// renderFile renders the chart with a values file, as helm template gw -f FILE does, and decodes
// the objects.
func renderFile(t *testing.T, file string) []object {
	t.Helper()
	vals, err := chartutil.ReadValuesFile(file)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := render(t, loadChart(t), vals)
	if err != nil {
		t.Fatalf("helm template -f %s: %v", file, err)
	}
	return decodeAll(t, rendered)
}

// labelSelector finds kubectl label selectors (-l k=v,k=v) in prose.
var labelSelector = regexp.MustCompile(`-l ((?:app\.kubernetes\.io/[a-z-]+=[A-Za-z0-9._-]+,?)+)`)

// TestDocsSelectChartPods: every kubectl -l selector the docs give finds the chart's pods (a
// value in capitals, such as RELEASE, is a placeholder).
func TestDocsSelectChartPods(t *testing.T) {
	t.Parallel()
	pod := only[*appsv1.Deployment](t, renderFile(t, "helm/values-central.yaml")).Spec.Template
	docs, _ := filepath.Glob("../docs/*.md")
	docs = append(docs, "../README.md", filepath.Join(chartDir, "templates", "NOTES.txt"))
	found := 0
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range labelSelector.FindAllStringSubmatch(string(b), -1) {
			found++
			for _, pair := range strings.Split(strings.TrimSuffix(m[1], ","), ",") {
				k, v, _ := strings.Cut(pair, "=")
				if v == strings.ToUpper(v) && strings.ToUpper(v) != strings.ToLower(v) {
					continue // a placeholder
				}
				if pod.Labels[k] != v {
					t.Errorf("%s selects %s=%s, but the chart's pods have %s=%q", doc, k, v, k, pod.Labels[k])
				}
			}
		}
	}
	if found == 0 {
		t.Error("no kubectl -l selector found in the docs: did the pattern break?")
	}
}
