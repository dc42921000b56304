package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ssegate/ssegate/config"
)

type object struct {
	Kind     string
	Metadata struct {
		Name   string
		Labels map[string]string
	}
	Data map[string]string // ConfigMap
	Spec struct {
		Replicas *int
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		}
		MaxUnavailable *int `yaml:"maxUnavailable"` // PodDisruptionBudget
		MinAvailable   *int `yaml:"minAvailable"`
		Ports          []struct {
			Name       string
			Port       int
			TargetPort string `yaml:"targetPort"`
		}
		Template struct {
			Metadata struct {
				Labels map[string]string
			}
			Spec podSpec
		}
	}
}

// serviceSelector is a Service's spec.selector, a plain label map (a
// Deployment's is under matchLabels).
type serviceSelector struct {
	Spec struct {
		Selector map[string]string
	}
}

type podSpec struct {
	TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
	Containers                    []container
	Volumes                       []struct {
		Name   string
		Secret *struct {
			SecretName string `yaml:"secretName"`
		}
	}
}

type probe struct {
	HTTPGet *struct {
		Path string
		Port string
	} `yaml:"httpGet"`
}

type container struct {
	Name    string
	EnvFrom []struct {
		ConfigMapRef *struct{ Name string } `yaml:"configMapRef"`
	} `yaml:"envFrom"`
	Env []struct {
		Name      string
		Value     string
		ValueFrom *struct {
			SecretKeyRef *struct{ Name, Key string } `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	}
	Ports []struct {
		Name          string
		ContainerPort int `yaml:"containerPort"`
	}
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Sleep *struct{ Seconds int }
		} `yaml:"preStop"`
	}
	VolumeMounts []struct {
		Name      string
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

func (c container) port(name string) int {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// manifest is one object with its Service selector, if it is a Service.
type manifest struct {
	object
	serviceSelector map[string]string
}

func loadManifests(t *testing.T, file string) []manifest {
	t.Helper()
	b, err := os.ReadFile(path.Join("kubernetes", file))
	if err != nil {
		t.Fatal(err)
	}
	var out []manifest
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var m manifest
		var sel serviceSelector
		if err := n.Decode(&m.object); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if m.Kind == "Service" {
			if err := n.Decode(&sel); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			m.serviceSelector = sel.Spec.Selector
		}
		out = append(out, m)
	}
	return out
}

func find(ms []manifest, kind string) []manifest {
	var out []manifest
	for _, m := range ms {
		if m.Kind == kind {
			out = append(out, m)
		}
	}
	return out
}

// selects reports whether every pair of sel is in labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

// TestKubernetes checks each variant of the Kubernetes example, applied
// with common.yaml: its settings are ones the gateway knows and accepts,
// its replicas are drained one at a time within the grace period, and its
// probes, ports and selectors fit together.
func TestKubernetes(t *testing.T) {
	common := loadManifests(t, "common.yaml")
	configMaps := find(common, "ConfigMap")
	pdbs := find(common, "PodDisruptionBudget")
	if len(configMaps) != 1 || len(pdbs) != 1 {
		t.Fatalf("common.yaml: want one ConfigMap and one PodDisruptionBudget, got %d and %d", len(configMaps), len(pdbs))
	}
	for _, variant := range []string{"tls.yaml", "h2c.yaml"} {
		t.Run(variant, func(t *testing.T) {
			ms := append(loadManifests(t, variant), common...)
			deps := find(ms, "Deployment")
			if len(deps) != 1 {
				t.Fatalf("want one Deployment, got %d", len(deps))
			}
			d := deps[0]
			pod := d.Spec.Template
			if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
				t.Errorf("replicas %v, want 2 or more", d.Spec.Replicas)
			}
			if !selects(d.Spec.Selector.MatchLabels, pod.Metadata.Labels) {
				t.Errorf("the Deployment's selector %v does not select its pods %v", d.Spec.Selector.MatchLabels, pod.Metadata.Labels)
			}
			pdb := pdbs[0]
			if !selects(pdb.Spec.Selector.MatchLabels, pod.Metadata.Labels) {
				t.Errorf("the PodDisruptionBudget's selector %v does not select the pods %v", pdb.Spec.Selector.MatchLabels, pod.Metadata.Labels)
			}
			if (pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != 1) && (pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable < 1) {
				t.Error("the PodDisruptionBudget lets more than one replica go at once")
			}
			if len(pod.Spec.Containers) != 1 {
				t.Fatalf("want one container, got %d", len(pod.Spec.Containers))
			}
			c := pod.Spec.Containers[0]

			// The environment the gateway sees: the ConfigMap, then env.
			vars := map[string]string{}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef == nil || ef.ConfigMapRef.Name != configMaps[0].Metadata.Name {
					t.Fatalf("envFrom %v: want the ConfigMap %s", ef, configMaps[0].Metadata.Name)
				}
				maps.Copy(vars, configMaps[0].Data)
			}
			for _, e := range c.Env {
				v := e.Value
				if e.ValueFrom != nil { // a Secret's value: any valid one
					v = "a-token-from-the-secret"
				}
				vars[e.Name] = v
			}
			var environ []string
			for k, v := range vars {
				environ = append(environ, k+"="+v)
			}
			slices.Sort(environ)
			for _, u := range config.UnknownVariables(environ) {
				t.Errorf("%s: the gateway does not know it and warns at start", u)
			}
			cfg, err := config.Load(environ)
			if err == nil {
				err = cfg.Validate()
			}
			if err != nil {
				t.Fatalf("the gateway would not start: %v", err)
			}
			checkRedisURL(t, vars["SSEGATE_REDIS_URL"])

			// Drained one at a time, within the grace period.
			if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0 {
				t.Fatal("want a preStop sleep, so balancers stop sending before the listener closes")
			}
			pause := c.Lifecycle.PreStop.Sleep.Seconds
			grace := 30 // Kubernetes' default
			if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
				grace = *g
			}
			if need := pause + int(cfg.ShutdownTimeout.Seconds()); grace <= need {
				t.Errorf("terminationGracePeriodSeconds %d, want more than the preStop pause plus SSEGATE_SHUTDOWN_TIMEOUT (%d s)", grace, need)
			}

			// Probes on the admin listener.
			if cfg.MetricsAddr == "" {
				t.Fatal("SSEGATE_METRICS_ADDR is off: no /readyz, no /metrics")
			}
			metricsPort := portOf(t, cfg.MetricsAddr)
			for name, p := range map[string]*probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
				want := map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"}[name]
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || c.port(p.HTTPGet.Port) != metricsPort {
					t.Errorf("%s: want GET %s on the admin listener's port %d", name, want, metricsPort)
				}
			}

			// The Services reach the pods' listeners.
			listen := portOf(t, cfg.ListenAddr)
			for _, s := range find(ms, "Service") {
				if !selects(s.serviceSelector, pod.Metadata.Labels) {
					t.Errorf("Service %s selects %v, not the pods %v", s.Metadata.Name, s.serviceSelector, pod.Metadata.Labels)
				}
				for _, p := range s.Spec.Ports {
					got := c.port(p.TargetPort)
					if got != listen && got != metricsPort {
						t.Errorf("Service %s port %s: targetPort %q is neither the listener (%d) nor the admin listener (%d)", s.Metadata.Name, p.Name, p.TargetPort, listen, metricsPort)
					}
				}
			}

			switch variant {
			case "tls.yaml":
				if cfg.H2C || cfg.TLSCertFile == "" {
					t.Fatal("want TLS from a certificate file")
				}
				mounted := false
				for _, vm := range c.VolumeMounts {
					for _, v := range pod.Spec.Volumes {
						if v.Name == vm.Name && v.Secret != nil && path.Dir(cfg.TLSCertFile) == vm.MountPath && path.Dir(cfg.TLSKeyFile) == vm.MountPath {
							mounted = true
						}
					}
				}
				if !mounted {
					t.Errorf("%s and %s are not in a mounted Secret", cfg.TLSCertFile, cfg.TLSKeyFile)
				}
			case "h2c.yaml":
				proxies, _ := cfg.TrustedProxyPrefixes()
				if !cfg.H2C || len(proxies) == 0 {
					t.Error("want SSEGATE_H2C=true and SSEGATE_TRUSTED_PROXIES behind a balancer")
				}
			}
		})
	}
}

// checkRedisURL: the replicas form a fleet on the Redis of redis.yaml, its
// Service's name and port in SSEGATE_REDIS_URL.
func checkRedisURL(t *testing.T, raw string) {
	t.Helper()
	svcs := find(loadManifests(t, "redis.yaml"), "Service")
	if len(svcs) != 1 || len(svcs[0].Spec.Ports) != 1 {
		t.Fatal("redis.yaml: want one Service with one port")
	}
	svc := svcs[0]
	if raw == "" {
		t.Errorf("SSEGATE_REDIS_URL is not set: each replica would poll alone instead of sharing polls through the Redis of redis.yaml (Service %s)", svc.Metadata.Name)
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("SSEGATE_REDIS_URL: %v", err)
	}
	if u.Hostname() != svc.Metadata.Name || u.Port() != strconv.Itoa(svc.Spec.Ports[0].Port) {
		t.Errorf("SSEGATE_REDIS_URL %s: want the Service of redis.yaml, %s:%d", raw, svc.Metadata.Name, svc.Spec.Ports[0].Port)
	}
}

// TestKubernetesRedis: the Redis for the fleet is a Service in front of a
// StatefulSet it selects.
func TestKubernetesRedis(t *testing.T) {
	ms := loadManifests(t, "redis.yaml")
	sts, svcs := find(ms, "StatefulSet"), find(ms, "Service")
	if len(sts) != 1 || len(svcs) != 1 {
		t.Fatalf("want one StatefulSet and one Service, got %d and %d", len(sts), len(svcs))
	}
	labels := sts[0].Spec.Template.Metadata.Labels
	if !selects(svcs[0].serviceSelector, labels) || !selects(sts[0].Spec.Selector.MatchLabels, labels) {
		t.Errorf("selectors %v and %v do not select the Redis pods %v", svcs[0].serviceSelector, sts[0].Spec.Selector.MatchLabels, labels)
	}
	if c := sts[0].Spec.Template.Spec.Containers; len(c) != 1 || c[0].port(svcs[0].Spec.Ports[0].TargetPort) != 6379 {
		t.Error("the Service does not reach Redis on 6379")
	}
	if !strings.Contains(svcs[0].Metadata.Name, "redis") {
		t.Errorf("Service %s: a name that says Redis", svcs[0].Metadata.Name)
	}
}
