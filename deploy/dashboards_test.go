package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/control"
	"github.com/ebb-ml/ebb/internal/drift"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/home"
	"github.com/ebb-ml/ebb/internal/limit"
	"github.com/ebb-ml/ebb/internal/predlog"
	"github.com/ebb-ml/ebb/internal/registry"
)

// descRecorder is a prometheus.Registerer that keeps the names of the
// metrics registered with it, as the constructors of ebb's metrics
// register them in ebb up, the gateway and the operator.
type descRecorder struct{ names map[string]bool }

func (r *descRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return nil
}

func (r *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *descRecorder) Unregister(prometheus.Collector) bool { return true }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// registerers are the constructors of the metrics the dashboard and the
// alert rules may use.
var registerers = []func(prometheus.Registerer){
	func(r prometheus.Registerer) { gateway.NewMetrics(r) },
	func(r prometheus.Registerer) { r.MustRegister(gateway.NewQueueCollector(nil)) },
	func(r prometheus.Registerer) { control.NewMetrics(r) },
	func(r prometheus.Registerer) { activator.New(nil, nil, activator.Options{Registerer: r}) },
	func(r prometheus.Registerer) { limit.NewMetrics(r, 0) },
	func(r prometheus.Registerer) { predlog.NewMetrics(r, 0) },
	func(r prometheus.Registerer) { registry.NewMetrics(r) },
	func(r prometheus.Registerer) { artifact.NewCacheMetrics(r) },
	func(r prometheus.Registerer) { home.NewJobs(home.JobParts{Registerer: r}, home.JobOptions{}, nil) },
	func(r prometheus.Registerer) { drift.NewMetrics(r) },
	func(r prometheus.Registerer) { r.MustRegister(drift.NewCollector(nil)) },
}

// exported returns the names of the metrics ebb registers.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	rec := &descRecorder{names: map[string]bool{}}
	for _, reg := range registerers {
		reg(rec)
	}
	if len(rec.names) < 10 {
		t.Fatalf("found only %d metrics: %v", len(rec.names), rec.names)
	}
	return rec.names
}

// metricRef matches the metric names an expression uses: ebb's are the
// only ones the dashboard and the rules read.
var metricRef = regexp.MustCompile(`\bebb_[a-z0-9_]+\b`)

// known reports whether name is an exported metric, or a histogram's
// series of one (_bucket, _sum, _count).
func known(names map[string]bool, name string) bool {
	if names[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && names[base] {
			return true
		}
	}
	return false
}

// checkExpr fails for a metric expr uses that ebb does not export, and for
// brackets that do not balance.
func checkExpr(t *testing.T, names map[string]bool, where, expr string) {
	t.Helper()
	refs := metricRef.FindAllString(expr, -1)
	if len(refs) == 0 && !strings.Contains(expr, "time()") {
		t.Errorf("%s: %q reads no ebb metric", where, expr)
	}
	for _, m := range refs {
		if !known(names, m) {
			t.Errorf("%s: %s is not a metric ebb exports (expression %q)", where, m, expr)
		}
	}
	depth := map[rune]int{}
	pairs := map[rune]rune{')': '(', '}': '{', ']': '['}
	for _, c := range expr {
		switch c {
		case '(', '{', '[':
			depth[c]++
		case ')', '}', ']':
			depth[pairs[c]]--
		}
	}
	for c, n := range depth {
		if n != 0 {
			t.Errorf("%s: unbalanced %c in %q", where, c, expr)
		}
	}
}

// TestGrafanaDashboardMetrics checks every query of the chart's Grafana
// dashboard against the metrics ebb exports, and that the dashboard covers
// what issue 17 asks: error rate, hold queue, cold starts, job deadlines
// and drift.
func TestGrafanaDashboardMetrics(t *testing.T) {
	names := exported(t)
	b, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "ebb.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboards/ebb.json: %v", err)
	}
	if dash.UID == "" {
		t.Error("the dashboard has no uid: Grafana would make a new one on each import")
	}
	var all []string
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			checkExpr(t, names, "variable "+v.Name, v.Definition)
		}
	}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			checkExpr(t, names, "panel "+p.Title, q.Expr)
			all = append(all, q.Expr)
		}
	}
	joined := strings.Join(all, "\n")
	for _, want := range []string{`code=~"5.."`, "ebb_activator_queue_depth", "ebb_control_cold_start_duration_seconds_bucket",
		"ebb_control_replica_crashes_total", "ebb_job_deadline_timestamp_seconds", "ebb_drift_score"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no panel of the dashboard uses %s", want)
		}
	}
}

// TestAlertRulesMetrics checks the chart's alert rules: each reads metrics
// ebb exports, and there is one for each risk issue 17 names.
func TestAlertRulesMetrics(t *testing.T) {
	names := exported(t)
	b, err := os.ReadFile(filepath.Join(chartDir, "rules", "ebb-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(b, &rules); err != nil {
		t.Fatalf("rules/ebb-alerts.yaml: %v", err)
	}
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			where := g.Name + "/" + r.Alert
			alerts = append(alerts, r.Alert)
			checkExpr(t, names, where, r.Expr)
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: want a severity label, a summary and a description", where)
			}
		}
	}
	for _, want := range []string{"EbbHighErrorRate", "EbbHoldQueueNearlyFull", "EbbRepeatedColdStartFailures", "EbbJobDeadlineAtRisk", "EbbFeatureDrift"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s among %v", want, alerts)
		}
	}
}
