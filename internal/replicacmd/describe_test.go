package replicacmd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/artifact/backend"
	"github.com/ebb-ml/ebb/internal/artifact/fetcher"
	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/google/go-cmp/cmp"
)

// asReplicaEnv makes the test binary the replica command (TestMain), for
// tests that run it as another process.
const asReplicaEnv = "EBB_REPLICACMD_TEST_AS_REPLICA"

// asFetcherEnv makes the test binary `ebb fetch-artifact` (TestMain): the
// replica's s3:// fetches run it, as they run ebb's.
const asFetcherEnv = "EBB_REPLICACMD_TEST_AS_FETCHER"

func TestMain(m *testing.M) {
	if os.Getenv(asFetcherEnv) == "1" {
		os.Exit(fetcher.Main(context.Background(), backend.Reader{}, os.Args[len(os.Args)-1], os.Stdout, os.Stderr))
	}
	s3Fetcher = func() ([]string, error) {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		return []string{"/usr/bin/env", asFetcherEnv + "=1", self}, nil
	}
	if os.Getenv(asReplicaEnv) == "1" {
		if err := New(ONNXBinary, nil).ExecuteContext(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestDescribe: Describe runs a replica command with --describe in a
// process of its own and returns the signature the model has when loaded
// here; a model that does not load gives the command's own error.
func TestDescribe(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(asReplicaEnv, "1")
	model := func(rel string) string {
		p, err := filepath.Abs(filepath.Join("../..", rel))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name, engine, path string
		needs              func() error
		wantErr            string
	}{
		{name: "trees", engine: "trees", path: model("examples/diabetes/model.json")},
		{name: "onnx", engine: "onnx", path: model("examples/mlp-onnx/model.onnx"), needs: func() error { return onnx.Available("") }},
		{name: "missing", engine: "trees", path: model("examples/nope.json"), wantErr: "nope.json"},
		{name: "not a model", engine: "trees", path: model("examples/diabetes/request.json")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needs != nil {
				if err := tt.needs(); err != nil {
					if os.Getenv("CI") == "true" {
						t.Fatal(err)
					}
					t.Skip(err)
				}
			}
			got, err := Describe(context.Background(), []string{self}, tt.engine, tt.path)
			m, loadErr := LoadModel(tt.engine, tt.path, "")
			if loadErr != nil {
				if err == nil {
					t.Fatalf("Describe = %+v; want the error loading here gives: %v", got, loadErr)
				}
				if strings.HasPrefix(err.Error(), "engine ") || !strings.Contains(loadErr.Error(), err.Error()) {
					t.Errorf("Describe error %q; want the load error %q without its engine prefix", err, loadErr)
				}
				if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Describe error %q; want it to name %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Describe: %v", err)
			}
			md := m.Metadata()
			want := Signature{Inputs: md.Inputs, Outputs: md.Outputs}
			if len(want.Inputs) == 0 || len(want.Outputs) == 0 {
				t.Fatalf("the model has no inputs or outputs here: %+v", want)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Describe (-loaded here +described):\n%s", diff)
			}
		})
	}
}
