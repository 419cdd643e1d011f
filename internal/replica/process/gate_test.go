package process_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/replica/process"
)

// TestGate checks that a replica exits when the ebb that started it dies
// before recording it (its gate closes without a byte), and runs on once
// it was recorded, whatever happens to the gate after.
func TestGate(t *testing.T) {
	cmd, _ := process.ReplicaCommand(ebbBin)
	logs := t.TempDir()
	b, err := process.New(process.Options{Command: cmd, LogDir: logs, Sockets: true, SocketDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	start := func(t *testing.T, id string) replica.Handle {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		h, err := b.Start(ctx, replica.Spec{ID: id, Deployment: "echo", Engine: "echo"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = b.Stop(ctx, h)
		})
		if _, err := b.Ready(ctx, h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	exited := func(h replica.Handle, within time.Duration) (replica.Exit, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		ex, err := b.Wait(ctx, h)
		return ex, err == nil
	}

	t.Run("unrecorded", func(t *testing.T) {
		h := start(t, "orphan")
		process.AbandonGate(b, h)
		ex, ok := exited(h, 10*time.Second)
		if !ok {
			t.Fatal("the replica runs on after its gate closed unreleased")
		}
		if ex.Code != 3 {
			t.Errorf("exit %+v; want code 3", ex)
		}
		log, _ := os.ReadFile(filepath.Join(logs, "orphan.log"))
		if !strings.Contains(string(log), "exited before recording it") {
			t.Errorf("the replica's log does not say why it exited:\n%s", log)
		}
	})

	t.Run("recorded", func(t *testing.T) {
		h := start(t, "kept")
		if err := b.Recorded(h); err != nil {
			t.Fatal(err)
		}
		process.AbandonGate(b, h) // nothing left to close: released
		if err := b.Recorded(h); err != nil {
			t.Fatalf("Recorded again: %v; want nil", err)
		}
		if ex, ok := exited(h, time.Second); ok {
			t.Fatalf("a recorded replica exited: %+v", ex)
		}
		resp, err := http.Get(h.Endpoint + "/v2/health/ready")
		if err != nil {
			t.Fatalf("a recorded replica no longer answers: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("a recorded replica's readiness: %s", resp.Status)
		}
	})
}
