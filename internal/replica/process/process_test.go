package process_test

import (
	"encoding/json"
	"github.com/ebb-ml/ebb/internal/ebbtest"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/replica/process"
	"github.com/ebb-ml/ebb/internal/replica/replicatest"
)

// ebbBin is the ebb binary built once for the package's tests.
var ebbBin string

func TestMain(m *testing.M) { ebbtest.Main(m, &ebbBin) }

func TestConformance(t *testing.T) {
	model, err := filepath.Abs("../../../examples/diabetes/model.json")
	if err != nil {
		t.Fatal(err)
	}
	logs, sockets := t.TempDir(), t.TempDir()
	bad := filepath.Join(t.TempDir(), "broken-model.json")
	if err := os.WriteFile(bad, []byte("this is not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The lean replica binary ebbtest built beside ebb, as ebb up runs it.
	cmd, lean := process.ReplicaCommand(ebbBin)
	if !lean {
		t.Fatalf("no %s beside %s: ebbtest builds both", process.LeanBinary, ebbBin)
	}
	replicatest.Run(t, replicatest.Harness{
		New: func(t *testing.T) replica.Backend {
			b, err := process.New(process.Options{Command: cmd, LogDir: logs, Sockets: true, SocketDir: sockets})
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		Spec: func(t *testing.T, id string) replica.Spec {
			return replica.Spec{ID: id, Deployment: "diabetes", Model: model, Engine: "trees"}
		},
		BadSpec: func(t *testing.T, id string) replica.Spec {
			return replica.Spec{ID: id, Deployment: "broken", Model: bad, Engine: "trees"}
		},
		BadSpecMessage: "broken-model.json",
		Kill: func(t *testing.T, h replica.Handle) {
			var st struct {
				PID int `json:"pid"`
			}
			if err := json.Unmarshal(h.State, &st); err != nil || st.PID <= 0 {
				t.Fatalf("handle state %s has no pid", h.State)
			}
			if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
				t.Fatalf("kill %d: %v", st.PID, err)
			}
		},
	})
}
