package e2e

import (
	"encoding/json"
	"os"
	"sync"
	"testing"
)

// FiguresEnv names a file the suite appends its measured figures to, one
// JSON object a line ({"test", "name", "value", "unit"}), when set: the
// benchmark's "cluster" scenario runs cluster tests with it and reports
// their figures in bench/RESULTS.md.
const FiguresEnv = "EBB_E2E_FIGURES"

var figuresMu sync.Mutex

// figure records one measured figure of t, for the benchmark report.
func figure(t *testing.T, name string, value float64, unit string) {
	t.Helper()
	path := os.Getenv(FiguresEnv)
	if path == "" {
		return
	}
	line, err := json.Marshal(map[string]any{"test": t.Name(), "name": name, "value": value, "unit": unit})
	if err != nil {
		t.Fatal(err)
	}
	figuresMu.Lock()
	defer figuresMu.Unlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("%s: %v", FiguresEnv, err)
		return
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		t.Errorf("%s: %v", FiguresEnv, err)
	}
}
