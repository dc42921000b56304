package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"go.yaml.in/yaml/v3"
)

const (
	rulesPath     = "prometheus/ssegate-rules.yml"
	ruleTestsPath = "prometheus/ssegate-rules.test.yml"
	dashboardPath = "grafana/ssegate.json"
	readmePath    = "../README.md"
	// runbookBase is where every alert's runbook_url points, followed by the
	// anchor of its paragraph in the README's Operations section.
	runbookBase = "https://github.com/ssegate/ssegate/blob/main/README.md#"
)

type rule struct {
	Record      string
	Alert       string
	Expr        string
	For         string
	Labels      map[string]string
	Annotations map[string]string
}

type ruleFile struct {
	Groups []struct {
		Name  string
		Rules []rule
	}
}

func (f ruleFile) rules() []rule {
	var rs []rule
	for _, g := range f.Groups {
		rs = append(rs, g.Rules...)
	}
	return rs
}

// recorded is the set of recording rule names: series the rules make, not
// the gateway.
func (f ruleFile) recorded() map[string]bool {
	m := map[string]bool{}
	for _, r := range f.rules() {
		if r.Record != "" {
			m[r.Record] = true
		}
	}
	return m
}

type ruleTestFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		InputSeries []struct {
			Series string
			Values string
		} `yaml:"input_series"`
		AlertRuleTest []struct {
			Alertname string
			EvalTime  string `yaml:"eval_time"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
		PromqlExprTest []struct {
			Expr string
		} `yaml:"promql_expr_test"`
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	var f ruleFile
	readYAML(t, rulesPath, &f)
	if len(f.rules()) == 0 {
		t.Fatalf("%s: no rules", rulesPath)
	}
	return f
}

// dashboard is the Grafana JSON, kept generic: the checks walk it.
type dashboard map[string]any

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return d
}

// panelQuery is one query of a panel or a template variable.
type panelQuery struct {
	where string // panel title and refId, or variable name
	expr  string // as written, with Grafana's variables
}

// queries returns every target of every panel (rows' nested panels too)
// and every template variable's query.
func (d dashboard) queries(t *testing.T) []panelQuery {
	t.Helper()
	var qs []panelQuery
	var walk func(panels []any)
	walk = func(panels []any) {
		for _, p := range panels {
			p := p.(map[string]any)
			title, _ := p["title"].(string)
			if nested, ok := p["panels"].([]any); ok {
				walk(nested)
			}
			targets, _ := p["targets"].([]any)
			if p["type"] != "row" && len(targets) == 0 {
				t.Errorf("panel %q has no query", title)
			}
			for _, tg := range targets {
				tg := tg.(map[string]any)
				expr, _ := tg["expr"].(string)
				if expr == "" {
					t.Errorf("panel %q target %v: no expr", title, tg["refId"])
				}
				qs = append(qs, panelQuery{where: fmt.Sprintf("panel %q %v", title, tg["refId"]), expr: expr})
			}
		}
	}
	panels, _ := d["panels"].([]any)
	walk(panels)
	for _, v := range d.variables() {
		if v["type"] != "query" {
			continue
		}
		q, _ := v["query"].(map[string]any)
		expr, _ := q["query"].(string)
		qs = append(qs, panelQuery{where: fmt.Sprintf("variable %v", v["name"]), expr: expr})
	}
	return qs
}

func (d dashboard) variables() []map[string]any {
	tpl, _ := d["templating"].(map[string]any)
	list, _ := tpl["list"].([]any)
	var vs []map[string]any
	for _, v := range list {
		vs = append(vs, v.(map[string]any))
	}
	return vs
}

var labelValues = regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// promQL turns a dashboard query into the PromQL Grafana would send with
// the given variable values: label_values(sel, label) becomes sel, and
// label is returned. A variable it does not know is an error.
func promQL(expr string, vars map[string]string) (string, string, error) {
	label := ""
	if m := labelValues.FindStringSubmatch(expr); m != nil {
		expr, label = m[1], m[2]
	}
	builtin := map[string]string{"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
	var unknown []string
	out := regexp.MustCompile(`\$\{?(\w+)\}?`).ReplaceAllStringFunc(expr, func(v string) string {
		name := strings.Trim(v, "${}")
		if val, ok := builtin[name]; ok {
			return val
		}
		if val, ok := vars[name]; ok {
			return val
		}
		unknown = append(unknown, v)
		return v
	})
	if len(unknown) > 0 {
		return "", "", fmt.Errorf("unknown variables %v", unknown)
	}
	return out, label, nil
}

// kitExpr is one PromQL expression of the kit, ready to run.
type kitExpr struct {
	where     string
	expr      string
	label     string // for label_values: the label whose values the variable lists
	alert     bool   // an alert's expression: no data while all is well
	fleetOnly bool   // every series it reads is in fleetOnly: no data on a single process
}

// kitExprs returns every expression of the rules and the dashboard, with
// the dashboard's variables set to job and instance.
func kitExprs(t *testing.T, job, instance string) []kitExpr {
	t.Helper()
	var out []kitExpr
	for _, r := range loadRules(t).rules() {
		out = append(out, kitExpr{where: rulesPath + " " + r.Record + r.Alert, expr: r.Expr, alert: r.Alert != "", fleetOnly: readsFleetOnly(r.Expr)})
	}
	for _, q := range loadDashboard(t).queries(t) {
		expr, label, err := promQL(q.expr, map[string]string{"job": job, "instance": instance})
		if err != nil {
			t.Errorf("%s %s: %v", dashboardPath, q.where, err)
			continue
		}
		out = append(out, kitExpr{where: dashboardPath + " " + q.where, expr: expr, label: label, fleetOnly: readsFleetOnly(expr)})
	}
	return out
}

// readsFleetOnly reports whether every series expr reads is in fleetOnly.
func readsFleetOnly(expr string) bool {
	p, err := parsePromQL(expr)
	if err != nil || len(p.selectors) == 0 {
		return false
	}
	for _, s := range p.selectors {
		if !isFleetOnly(s.metric) {
			return false
		}
	}
	return true
}

// TestDashboardVariables: the dashboard picks its Prometheus with a
// datasource variable, and every query is scoped to the chosen job and
// gateways (one gateway or the fleet).
func TestDashboardVariables(t *testing.T) {
	d := loadDashboard(t)
	vars := map[string]map[string]any{}
	for _, v := range d.variables() {
		vars[v["name"].(string)] = v
	}
	if ds := vars["datasource"]; ds == nil || ds["type"] != "datasource" || ds["query"] != "prometheus" {
		t.Errorf("want a variable datasource of type datasource for prometheus, got %v", ds)
	}
	for _, name := range []string{"job", "instance"} {
		if v := vars[name]; v == nil || v["includeAll"] != true || v["multi"] != true {
			t.Errorf("want a multi-value variable %s with All, got %v", name, v)
		}
	}
	// Every datasource reference is the variable.
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if k == "datasource" && path != "annotations" {
					if m, ok := c.(map[string]any); ok && m["uid"] != "${datasource}" {
						t.Errorf("%s: datasource %v, want uid ${datasource}", path, m)
					}
				}
				walk(path+"."+k, c)
			}
		case []any:
			for _, c := range v {
				walk(path, c)
			}
		}
	}
	for k, v := range d {
		if k != "annotations" { // Grafana's built-in annotation source
			walk(k, v)
		}
	}
	for _, q := range d.queries(t) {
		if strings.HasPrefix(q.where, "variable") {
			continue
		}
		expr, _, err := promQL(q.expr, map[string]string{"job": "$job", "instance": "$instance"})
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		p, err := parsePromQL(expr)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		for _, s := range p.selectors {
			for _, want := range []matcher{{"job", "=~", "$job"}, {"instance", "=~", "$instance"}} {
				if !slices.Contains(s.matchers, want) {
					t.Errorf("%s: %s lacks %s%s%q, so it ignores the chosen gateways", q.where, s.metric, want.label, want.op, want.value)
				}
			}
		}
	}
}

// TestRulesHaveRunbooksAndTests: every alert has a severity, a summary and
// a runbook in the README's Operations section, and the unit tests hold a
// case where it fires and one where it does not; every recording rule is
// tested too.
func TestRulesHaveRunbooksAndTests(t *testing.T) {
	rf := loadRules(t)
	var tf ruleTestFile
	readYAML(t, ruleTestsPath, &tf)
	if !slices.Contains(tf.RuleFiles, filepath.Base(rulesPath)) {
		t.Errorf("%s does not load %s", ruleTestsPath, filepath.Base(rulesPath))
	}
	anchors := operationsAnchors(t)
	fires, quiet := map[string]bool{}, map[string]bool{}
	tested := map[string]bool{}
	for _, tc := range tf.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
		for _, e := range tc.PromqlExprTest {
			if p, err := parsePromQL(e.Expr); err == nil {
				for _, s := range p.selectors {
					tested[s.metric] = true
				}
			}
		}
	}
	alerts := map[string]bool{}
	for _, r := range rf.rules() {
		if r.Record != "" {
			if !tested[r.Record] {
				t.Errorf("recording rule %s has no promql_expr_test in %s", r.Record, ruleTestsPath)
			}
			continue
		}
		alerts[r.Alert] = true
		if r.Labels["severity"] == "" {
			t.Errorf("alert %s has no severity label", r.Alert)
		}
		if r.Annotations["summary"] == "" {
			t.Errorf("alert %s has no summary", r.Alert)
		}
		anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookBase)
		switch {
		case !ok:
			t.Errorf("alert %s: runbook_url %q does not start with %s", r.Alert, r.Annotations["runbook_url"], runbookBase)
		case !anchors[anchor]:
			t.Errorf("alert %s: runbook_url's #%s is no heading in the README's Operations section", r.Alert, anchor)
		}
		if !fires[r.Alert] {
			t.Errorf("alert %s has no unit test where it fires (alert_rule_test with exp_alerts)", r.Alert)
		}
		if !quiet[r.Alert] {
			t.Errorf("alert %s has no unit test where it does not fire (alert_rule_test with exp_alerts: [])", r.Alert)
		}
	}
	for name := range fires {
		if !alerts[name] {
			t.Errorf("%s tests alert %s, which %s does not define", ruleTestsPath, name, rulesPath)
		}
	}
	for name := range quiet {
		if !alerts[name] {
			t.Errorf("%s tests alert %s, which %s does not define", ruleTestsPath, name, rulesPath)
		}
	}
}

// TestReadmeLinks: every link into the README from the kit lands on a
// heading.
func TestReadmeLinks(t *testing.T) {
	all := readmeAnchors(t, "")
	files, err := filepath.Glob("*/*")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "README.md")
	re := regexp.MustCompile(`README\.md#([A-Za-z0-9_-]+)`)
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			n++
			if !all[m[1]] {
				t.Errorf("%s links to README.md#%s, which is no heading", f, m[1])
			}
		}
	}
	if n == 0 {
		t.Error("no links into the README found; is the glob right?")
	}
}

// readmeAnchors returns the GitHub anchors of the README's headings, all of
// them, or only those below the "## <section>" heading if section is set.
func readmeAnchors(t *testing.T, section string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	in := section == ""
	fenced := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		level := len(line) - len(strings.TrimLeft(line, "#"))
		text := strings.TrimSpace(line[level:])
		if section != "" && level == 2 {
			in = text == section
		}
		if in {
			anchors[githubAnchor(text)] = true
		}
	}
	return anchors
}

func operationsAnchors(t *testing.T) map[string]bool { return readmeAnchors(t, "Operations") }

// githubAnchor is the id GitHub gives a heading: lower case, punctuation
// dropped, spaces as hyphens.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// freeValues are labels whose values depend on the build or the traffic;
// the others are fixed sets the gateway exports from the start.
var freeValues = map[string]bool{"version": true, "goversion": true, "code": true, "method": true}

// checkSelectors reports the selectors of expr that name a series the
// gateway does not export, or a label or label value it does not have.
func checkSelectors(e exported, recorded map[string]bool, expr string) []string {
	p, err := parsePromQL(expr)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	have := map[string]bool{"job": true, "instance": true}
	anyRecorded := false
	for _, s := range p.selectors {
		if recorded[s.metric] {
			anyRecorded = true
			continue
		}
		labels, ok := e.series[s.metric]
		if !ok && !e.fleet && isFleetOnly(s.metric) {
			anyRecorded = true // its labels are unknown here: no grouping check
			continue           // a single process does not export it
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("%s is not a metric ssegate exports", s.metric))
			continue
		}
		for l := range labels {
			have[l] = true
		}
		for _, m := range s.matchers {
			if m.label == "job" || m.label == "instance" || m.label == "__name__" {
				continue
			}
			values, ok := labels[m.label]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s has no label %s", s.metric, m.label))
				continue
			}
			if freeValues[m.label] {
				continue
			}
			var want []string
			switch {
			case m.op == "=" || m.op == "!=":
				want = []string{m.value}
			case regexp.MustCompile(`^[A-Za-z0-9_.+]+(\|[A-Za-z0-9_.+]+)*$`).MatchString(m.value):
				want = strings.Split(m.value, "|")
			}
			for _, v := range want {
				if !values[v] {
					problems = append(problems, fmt.Sprintf("%s{%s} is never %q (it is one of %v)", s.metric, m.label, v, keys(values)))
				}
			}
		}
	}
	if !anyRecorded {
		for _, l := range p.grouping {
			if !have[l] {
				problems = append(problems, fmt.Sprintf("grouping by %s, a label none of its metrics has", l))
			}
		}
	}
	return problems
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestKitUsesExportedMetrics: every series, label and label value that the
// rules, their unit tests and the dashboard name is one a running gateway
// exports (or a recording rule of the kit makes). A dashboard panel on a
// misspelled or retired metric fails here, with or without Prometheus. The
// gateway runs on Redis, so that the fleet's metrics exist too; without a
// Redis (and without SSEGATE_REDIS_REQUIRE=1) it is a single process, and
// the names of fleetOnly are not checked.
func TestKitUsesExportedMetrics(t *testing.T) {
	s := fleet
	if !redisAnswers() && os.Getenv("SSEGATE_REDIS_REQUIRE") != "1" {
		t.Logf("no Redis at %s: the fleet's metrics are not checked", redisAddr)
		s = single
	}
	g := startGateway(t, s)
	g.warmUp(t)
	e := g.scrape(t)
	recorded := loadRules(t).recorded()
	for _, k := range kitExprs(t, ".*", ".*") {
		for _, p := range checkSelectors(e, recorded, k.expr) {
			t.Errorf("%s: %s\n\t%s", k.where, p, k.expr)
		}
	}
	var tf ruleTestFile
	readYAML(t, ruleTestsPath, &tf)
	for i, tc := range tf.Tests {
		for _, s := range tc.InputSeries {
			for _, p := range checkSelectors(e, recorded, s.Series) {
				t.Errorf("%s test %d: input series %s: %s", ruleTestsPath, i+1, s.Series, p)
			}
		}
	}
}

// metricsTable returns the README's metrics table: metric → type and
// labels.
func metricsTable(t *testing.T) map[string]struct {
	typ    string
	labels []string
} {
	t.Helper()
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Metrics\n")
	if !ok {
		t.Fatal("README has no ## Metrics section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows := map[string]struct {
		typ    string
		labels []string
	}{}
	row := regexp.MustCompile("^\\| `([a-z_]+)(?:\\{([a-z_,]+)\\})?` \\| ([a-z]+) \\|")
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("README metrics row %q: want | `name{label,...}` | type | meaning |", line)
			continue
		}
		var labels []string
		if m[2] != "" {
			labels = strings.Split(m[2], ",")
		}
		slices.Sort(labels)
		rows[m[1]] = struct {
			typ    string
			labels []string
		}{m[3], labels}
	}
	if len(rows) == 0 {
		t.Fatal("README's metrics table has no rows")
	}
	return rows
}

// TestReadmeMetricsTable: the README's metrics table, a running gateway and
// the kit agree. Every row is a family the gateway exports, with that type
// and those labels; every ssegate_ family the gateway exports has a row;
// every ssegate_ series the rules or the dashboard use has a row. A single
// process exports every row but those of fleetOnly, and none of those; a
// gateway on Redis exports every row (skipped without a Redis, unless
// SSEGATE_REDIS_REQUIRE=1).
func TestReadmeMetricsTable(t *testing.T) {
	table := metricsTable(t)
	for name := range fleetOnly {
		if _, ok := table[name]; !ok {
			t.Errorf("fleetOnly names %s, which the README's metrics table does not list", name)
		}
	}
	for _, s := range []setup{single, fleet} {
		t.Run(s.name, func(t *testing.T) {
			g := startGateway(t, s)
			g.warmUp(t)
			e := g.scrape(t)
			for name, row := range table {
				mf, ok := e.families[name]
				switch {
				case !s.fleet && fleetOnly[name]:
					if ok {
						t.Errorf("a single process exports %s, which fleetOnly says only a fleet does", name)
					}
					continue
				case !ok:
					t.Errorf("README lists %s, which the gateway does not export", name)
					continue
				}
				if typ := strings.ToLower(mf.GetType().String()); typ != row.typ {
					t.Errorf("README: %s is a %s, the gateway exports a %s", name, row.typ, typ)
				}
				var labels []string
				for _, m := range mf.GetMetric() {
					for _, lp := range m.GetLabel() {
						if !slices.Contains(labels, lp.GetName()) {
							labels = append(labels, lp.GetName())
						}
					}
				}
				slices.Sort(labels)
				if !slices.Equal(labels, row.labels) {
					t.Errorf("README: %s has labels %v, the gateway exports %v", name, row.labels, labels)
				}
			}
			for name, mf := range e.families {
				if strings.HasPrefix(name, "ssegate_") {
					if _, ok := table[name]; !ok {
						t.Errorf("the gateway exports %s (%s), which the README's metrics table does not list", name, mf.GetType())
					}
				}
			}
		})
	}
	recorded := loadRules(t).recorded()
	for _, k := range kitExprs(t, ".*", ".*") {
		p, err := parsePromQL(k.expr)
		if err != nil {
			t.Errorf("%s: %v", k.where, err)
			continue
		}
		for _, s := range p.selectors {
			if recorded[s.metric] || !strings.HasPrefix(s.metric, "ssegate_") {
				continue
			}
			// The series' row: its own, or a histogram's for its _bucket,
			// _sum and _count.
			_, listed := table[s.metric]
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(s.metric, suffix); ok && table[base].typ == "histogram" {
					listed = true
				}
			}
			if !listed {
				t.Errorf("%s uses %s, which the README's metrics table does not list", k.where, s.metric)
			}
		}
	}
}
