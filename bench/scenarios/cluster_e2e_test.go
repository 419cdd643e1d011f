package scenarios

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestClusterReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "figures.jsonl")
	lines := []string{
		`{"test":"TestLeaderKilledUnderLoad","name":"takeover","value":4.6,"unit":"s"}`,
		`{"test":"TestLeaderKilledUnderLoad","name":"requests","value":900,"unit":"requests"}`,
		`{"test":"TestLeaderKilledUnderLoad","name":"failed","value":0,"unit":"requests"}`,
		`{"test":"TestHomeCluster","name":"artifact_fetched.miss.ms","value":16.1,"unit":"ms"}`,
		`{"test":"TestHomeCluster","name":"artifact_fetched.miss.bytes","value":58000,"unit":"bytes"}`,
		`{"test":"TestHomeCluster","name":"artifact_fetched.hit.ms","value":0.04,"unit":"ms"}`,
		`{"test":"TestHomeCluster","name":"artifact_fetched.hit.bytes","value":58000,"unit":"bytes"}`,
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	figs, err := readE2EFigures(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := clusterReport(figs, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Goals) != 3 || !res.Goals[0].Met || !res.Goals[1].Met || res.Goals[1].Ebb != 4.6 {
		t.Errorf("goals = %+v; want three, the failover ones met at 4.6 s", res.Goals)
	}
	figs["TestLeaderKilledUnderLoad.failed"] = 2
	figs["TestLeaderKilledUnderLoad.takeover"] = 9
	res, _ = clusterReport(figs, time.Minute)
	if res.Goals[0].Met || res.Goals[1].Met {
		t.Errorf("2 failed requests and a 9 s takeover met their goals: %+v", res.Goals)
	}
	delete(figs, "TestHomeCluster.artifact_fetched.hit.ms")
	if _, err := clusterReport(figs, time.Minute); err == nil || !strings.Contains(err.Error(), "hit.ms") {
		t.Errorf("a missing figure: %v; want an error naming it", err)
	}
	if _, err := readE2EFigures(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("reading a missing figures file succeeded")
	}
}
