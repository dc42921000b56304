package deploy_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lookPrometheus finds a Prometheus binary (Debian's prometheus package
// ships both). Without it the test is skipped, unless
// SSEGATE_PROMETHEUS_REQUIRE=1 (set by .ci/run) makes that a failure.
func lookPrometheus(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("SSEGATE_PROMETHEUS_REQUIRE") == "1" {
		t.Fatalf("no %s in PATH and SSEGATE_PROMETHEUS_REQUIRE=1", name)
	}
	t.Skipf("no %s in PATH: install it (apt-get install prometheus) to check the rules", name)
	return ""
}

// TestPromtool: the rule file is valid and its unit tests pass.
func TestPromtool(t *testing.T) {
	promtool := lookPrometheus(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", filepath.Base(rulesPath)},
		{"test", "rules", filepath.Base(ruleTestsPath)},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Dir(rulesPath)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// prometheus is a Prometheus server run for one test.
type prometheus struct {
	base string // http://127.0.0.1:port
}

// startPrometheus runs Prometheus scraping target every second and
// evaluating the kit's rules every second, until the test ends.
func startPrometheus(t *testing.T, bin, target string) *prometheus {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: ssegate
    static_configs:
      - targets: [%q]
`, rules, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	// A free port: Prometheus cannot be handed a listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("prometheus log:\n%s", b)
			}
		}
	})
	p := &prometheus{base: "http://" + addr}
	deadline := time.Now().Add(failAfter)
	for {
		resp, err := http.Get(p.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("prometheus exited: %v\n%s", err, b)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("prometheus not ready")
		}
	}
}

// sample is one element of an instant vector.
type sample struct {
	Metric map[string]string
	Value  float64
}

// apiError is Prometheus's answer to a query it cannot run.
type apiError struct{ kind, msg string }

func (e *apiError) Error() string { return e.kind + ": " + e.msg }

// query runs an instant query and returns its samples (a scalar is one
// sample without labels).
func (p *prometheus) query(expr string) ([]sample, error) {
	resp, err := http.PostForm(p.base+"/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status    string
		ErrorType string
		Error     string
		Data      struct {
			ResultType string
			Result     json.RawMessage
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("decode answer (%s): %w", resp.Status, err)
	}
	if body.Status != "success" {
		return nil, &apiError{body.ErrorType, body.Error}
	}
	value := func(v [2]any) float64 {
		s, _ := v[1].(string)
		f, _ := strconv.ParseFloat(s, 64)
		return f
	}
	switch body.Data.ResultType {
	case "vector":
		var vs []struct {
			Metric map[string]string
			Value  [2]any
		}
		if err := json.Unmarshal(body.Data.Result, &vs); err != nil {
			return nil, err
		}
		out := make([]sample, len(vs))
		for i, v := range vs {
			out[i] = sample{v.Metric, value(v.Value)}
		}
		return out, nil
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(body.Data.Result, &v); err != nil {
			return nil, err
		}
		return []sample{{nil, value(v)}}, nil
	}
	return nil, fmt.Errorf("result type %s, want vector or scalar", body.Data.ResultType)
}

// getJSON decodes the data of a GET from Prometheus's API.
func (p *prometheus) getJSON(t *testing.T, path string, data any) {
	t.Helper()
	resp, err := http.Get(p.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := struct{ Data any }{data}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

type ruleGroups struct {
	Groups []struct {
		Name  string
		Rules []struct {
			Name      string
			Type      string
			Health    string
			LastError string
			State     string
			Alerts    []struct {
				Labels map[string]string
				State  string
			}
		}
	}
}

// TestLivePrometheus runs a real Prometheus against a running gateway
// under a little load and checks through its HTTP API that the rules load
// and evaluate, that every expression of the rules and the dashboard
// parses, that the dashboard's queries and the recording rules return
// data, and that the one limit the load hits raises its alert and no other
// alert is active. It does so for a single process, where the fleet's
// panels (on fleetOnly metrics) show nothing and the fleet's alerts stay
// silent, and for a gateway on Redis, where every panel shows data (skipped
// without a Redis, unless SSEGATE_REDIS_REQUIRE=1).
func TestLivePrometheus(t *testing.T) {
	bin := lookPrometheus(t, "prometheus")
	for _, s := range []setup{single, fleet} {
		t.Run(s.name, func(t *testing.T) { livePrometheus(t, bin, s) })
	}
}

func livePrometheus(t *testing.T, bin string, st setup) {
	g := startGateway(t, st)
	subs := g.warmUp(t)
	prom := startPrometheus(t, bin, g.metrics)
	g.keepBusy(t, subs)

	rf := loadRules(t)
	job, instance := "ssegate", g.metrics
	exprs := kitExprs(t, job, instance)
	deadline := time.Now().Add(failAfter)

	// Wait until rates have two samples to work on, every rule has been
	// evaluated, and the main panels show traffic.
	main := map[string]bool{ // stat panels that must be above zero
		`panel "Event streams open" A`: true,
		`panel "Keys polled" A`:        true,
		`panel "Upstream polls" A`:     true,
		`panel "Events delivered" A`:   true,
	}
	for {
		var waiting []string
		if s, err := prom.query(fmt.Sprintf(`count_over_time(ssegate_build_info{instance=%q}[1m])`, instance)); err != nil || len(s) == 0 || s[0].Value < 3 {
			waiting = append(waiting, "three scrapes")
		}
		var groups ruleGroups
		prom.getJSON(t, "/api/v1/rules", &groups)
		for _, grp := range groups.Groups {
			for _, r := range grp.Rules {
				if r.Health != "ok" {
					waiting = append(waiting, fmt.Sprintf("rule %s: health %q %s", r.Name, r.Health, r.LastError))
				}
			}
		}
		for _, r := range rf.rules() {
			if r.Record == "" {
				continue
			}
			if s, err := prom.query(r.Record); err != nil || len(s) == 0 {
				waiting = append(waiting, "recording rule "+r.Record)
			}
		}
		for _, k := range exprs {
			where := strings.TrimPrefix(k.where, dashboardPath+" ")
			if main[where] {
				if s, err := prom.query(k.expr); err != nil || len(s) == 0 || !(s[0].Value > 0) {
					waiting = append(waiting, where+" above zero")
				}
			}
		}
		if len(waiting) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s still waiting for: %s", failAfter, strings.Join(waiting, "; "))
		}
		time.Sleep(500 * time.Millisecond)
	}

	var groups ruleGroups
	prom.getJSON(t, "/api/v1/rules", &groups)
	loaded := map[string]bool{}
	for _, grp := range groups.Groups {
		for _, r := range grp.Rules {
			loaded[r.Name] = true
		}
	}
	for _, r := range rf.rules() {
		if !loaded[r.Record+r.Alert] {
			t.Errorf("Prometheus did not load rule %s", r.Record+r.Alert)
		}
	}

	for _, k := range exprs {
		s, err := prom.query(k.expr)
		if err != nil {
			t.Errorf("%s: %v\n\t%s", k.where, err, k.expr)
			continue
		}
		// Alerts return nothing while all is well; the dashboard and the
		// recording rules must show the gateway, but for the fleet's panels
		// on a single process.
		if k.alert || !st.fleet && k.fleetOnly {
			continue
		}
		if len(s) == 0 {
			t.Errorf("%s: no data\n\t%s", k.where, k.expr)
			continue
		}
		if k.label != "" && s[0].Metric[k.label] == "" {
			t.Errorf("%s: no label %s in %v", k.where, k.label, s[0].Metric)
		}
	}

	// The load refuses a stream beyond SSEGATE_MAX_KEYS every second: that
	// alert, and only that one, is pending (its `for` has not run out).
	var alerts struct {
		Alerts []struct {
			Labels map[string]string
			State  string
		}
	}
	for {
		prom.getJSON(t, "/api/v1/alerts", &alerts)
		if len(alerts.Alerts) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	var got []string
	for _, a := range alerts.Alerts {
		got = append(got, fmt.Sprintf("%s{reason=%q} %s", a.Labels["alertname"], a.Labels["reason"], a.State))
	}
	if want := []string{`SsegateStreamsRejected{reason="max_keys"} pending`}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("active alerts: got %v, want %v", got, want)
	}
}
