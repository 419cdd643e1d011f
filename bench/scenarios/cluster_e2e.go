package scenarios

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
)

// ClusterE2E runs two tests of the end-to-end suite in the Kubernetes home
// (a real control plane with kwok and the fake kubelet, the chart's own
// operator and gateway pods, PostgreSQL and S3) and reports the figures
// they measure: how long a standby operator takes to lead after the leader
// is killed under steady load, with the requests that failed meanwhile,
// and how the second replica pod of a deployment on a node finds the model
// artifact in the node's cache (TestHomeCluster). The tests write their
// figures to the file named by $EBB_E2E_FIGURES (test/e2e/figures_test.go).
type ClusterE2E struct{}

// Name implements harness.Scenario.
func (ClusterE2E) Name() string { return "cluster" }

// Title implements harness.Scenario.
func (ClusterE2E) Title() string {
	return "10. Kubernetes home: leader failover and the node artifact cache (e2e)"
}

// clusterTests are the tests run, and the lease their chart installs.
const (
	clusterTests = "^(TestLeaderKilledUnderLoad|TestHomeCluster)$"
	clusterLease = 4 * time.Second
)

// e2eFigure is one line of the figures file.
type e2eFigure struct {
	Test  string  `json:"test"`
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Run implements harness.Scenario.
func (ClusterE2E) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	path := filepath.Join(env.Work, "e2e-figures.jsonl")
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "./test/e2e/", "-run", clusterTests, "-count=1", "-timeout=20m", "-v")
	cmd.Dir = env.Root
	cmd.Env = append(os.Environ(), "EBB_E2E_FIGURES="+path)
	started := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(started)
	if err != nil {
		return res, fmt.Errorf("go test -run '%s' ./test/e2e: %v; the end of its output:\n%s", clusterTests, err, tail(out, 3000))
	}
	if strings.Contains(string(out), "--- SKIP") {
		return res, fmt.Errorf("the cluster tests skipped (build the control plane with hack/build-kube.sh):\n%s", tail(out, 2000))
	}
	figs, err := readE2EFigures(path)
	if err != nil {
		return res, err
	}
	return clusterReport(figs, took)
}

// readE2EFigures reads the figures file, keyed by test name and figure.
func readE2EFigures(path string) (map[string]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("the cluster tests wrote no figures: %w", err)
	}
	defer f.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var fig e2eFigure
		if err := json.Unmarshal(sc.Bytes(), &fig); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, sc.Text(), err)
		}
		out[fig.Test+"."+fig.Name] = fig.Value
	}
	return out, sc.Err()
}

// clusterReport turns the tests' figures into the scenario's result.
func clusterReport(figs map[string]float64, took time.Duration) (harness.Result, error) {
	var res harness.Result
	need := []string{
		"TestLeaderKilledUnderLoad.takeover", "TestLeaderKilledUnderLoad.requests", "TestLeaderKilledUnderLoad.failed",
		"TestHomeCluster.artifact_fetched.miss.ms", "TestHomeCluster.artifact_fetched.hit.ms",
		"TestHomeCluster.artifact_fetched.miss.bytes", "TestHomeCluster.artifact_fetched.hit.bytes",
	}
	for _, k := range need {
		if _, ok := figs[k]; !ok {
			return res, fmt.Errorf("the cluster tests did not report %s (got %v)", k, keys(figs))
		}
	}
	res.Figures = figs
	takeover, sent, failed := figs[need[0]], figs[need[1]], figs[need[2]]
	miss, hit := figs[need[3]], figs[need[4]]
	res.Goals = []harness.Goal{{
		Name: "requests failed while the leader operator died", Target: "0 failed requests on a warm deployment",
		Ebb: failed, Unit: "requests", Met: failed == 0,
		Detail: fmt.Sprintf("%.0f of %.0f requests failed while the leader pod was force-deleted and the standby took over", failed, sent),
	}, {
		Name: "standby operator leads after the leader dies", Target: fmt.Sprintf("within the lease time (%s) plus retry and readiness probe", clusterLease),
		Ebb: takeover, Unit: "s", Met: takeover <= (clusterLease + 2*time.Second).Seconds(),
		Detail: fmt.Sprintf("the standby was the Ready leader %.2f s after the kill (lease %s, renew deadline 3 s, retry 0.5 s)", takeover, clusterLease),
	}, {
		Name: "second replica pod on a node hits the artifact cache", Target: "the second pod's artifact_fetched is a cache hit",
		Ebb: hit, Peer: miss, PeerName: "first pod (miss)", Unit: "ms", Ratio: harness.Ratio(hit, miss), Met: true,
		Detail: fmt.Sprintf("first pod fetched %.0f bytes from S3 in %.2f ms; the second found them in the node cache in %.3f ms", figs[need[5]], miss, hit),
	}}
	res.Tables = []harness.Table{{
		Caption: "Figures the cluster tests measured:",
		Header:  []string{"test", "figure", "value"},
		Rows:    figureRows(figs),
	}}
	res.Summary = fmt.Sprintf("`go test ./test/e2e -run '%s'` (%s in all): the chart installed on a real control plane (etcd, kube-apiserver, "+
		"controller-manager, scheduler, kwok nodes with loopback pod IPs and a fake kubelet that runs the pods' processes), with two operators "+
		"under leader election (lease %s), the gateways, PostgreSQL and a versitygw S3 server. TestLeaderKilledUnderLoad force-deletes the leader pod "+
		"under steady load on a warm two-replica deployment; TestHomeCluster scales a deployment to two replica pods on one node, sharing the node's "+
		"artifact cache (hostPath).", clusterTests, took.Round(time.Second), clusterLease)
	return res, nil
}

func figureRows(figs map[string]float64) [][]string {
	var rows [][]string
	for _, k := range keys(figs) {
		test, name, _ := strings.Cut(k, ".")
		rows = append(rows, []string{test, name, harness.F(figs[k])})
	}
	return rows
}

func keys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// tail returns the last n bytes of b.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
