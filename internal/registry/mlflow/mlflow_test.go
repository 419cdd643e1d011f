package mlflow

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/registry"
)

const runDir = "testdata/mlruns/0/4f1c2b3a9d8e4e7fa1b2c3d4e5f60718"

func TestImport(t *testing.T) {
	xgbSig := registry.Signature{
		Inputs:  []oip.TensorMetadata{{Name: "input0", Datatype: "FP32", Shape: []int64{-1, 3}}},
		Outputs: []oip.TensorMetadata{{Name: "output0", Datatype: "FP32", Shape: []int64{-1}}},
	}
	tests := []struct {
		dir, name string
		want      registry.PushRequest
	}{
		{"testdata/xgboost-json", "diabetes", registry.PushRequest{
			Model: "diabetes", Path: "testdata/xgboost-json/model.json", Engine: "trees", Signature: xgbSig,
			Lineage: registry.Lineage{
				Parameters: map[string]string{"max_depth": "2", "eta": "0.5"},
				Metrics:    map[string]float64{"rmse": 0.42},
				Source:     "mlflow run 9c2d5e7f0a1b4c3d8e6f7a8b9c0d1e2f",
			},
			Tags: map[string]string{
				"mlflow.run_id": "9c2d5e7f0a1b4c3d8e6f7a8b9c0d1e2f", "mlflow.model_uuid": "0f3b2c1d4e5f46a7b8c9d0e1f2a3b4c5",
				"mlflow.version": "2.9.2", "mlflow.utc_time_created": "2024-01-15 09:30:12.345678",
				"mlflow.artifact_path": "model", "mlflow.xgboost.model_class": "xgboost.core.Booster",
				"mlflow.xgboost.version": "1.7.4", "owner": "health-team", "dataset_rows": "442",
			},
		}},
		{runDir + "/artifacts/model", "", registry.PushRequest{
			Model: "model", Path: runDir + "/artifacts/model/model.json", Engine: "trees", Signature: xgbSig,
			Lineage: registry.Lineage{
				Parameters: map[string]string{"max_depth": "2", "objective": "reg:squarederror"},
				Metrics:    map[string]float64{"rmse": 53.9, "r2": 0.47},
				CodeCommit: "8f14e45fceea167a5a36dedd4bea2543c7f0a1b2",
				Source:     "mlflow run 4f1c2b3a9d8e4e7fa1b2c3d4e5f60718",
			},
			Tags: map[string]string{
				"mlflow.run_id": "4f1c2b3a9d8e4e7fa1b2c3d4e5f60718", "mlflow.model_uuid": "0f3b2c1d4e5f46a7b8c9d0e1f2a3b4c5",
				"mlflow.version": "2.9.2", "mlflow.utc_time_created": "2024-01-15 09:30:12.345678",
				"mlflow.artifact_path": "model", "mlflow.xgboost.model_class": "xgboost.core.Booster",
				"mlflow.xgboost.version": "1.7.4",
			},
		}},
		{"testdata/onnx", "onnx", registry.PushRequest{
			Model: "onnx", Path: "testdata/onnx/model.onnx", Engine: "onnx",
			Signature: registry.Signature{
				Inputs: []oip.TensorMetadata{
					{Name: "age", Datatype: "FP64", Shape: []int64{-1}},
					{Name: "bmi", Datatype: "FP64", Shape: []int64{-1}},
					{Name: "visits", Datatype: "INT64", Shape: []int64{-1}},
				},
				Outputs: []oip.TensorMetadata{{Name: "output0", Datatype: "FP64", Shape: []int64{-1}}},
			},
			Lineage: registry.Lineage{Source: "mlflow run b1c2d3e4f5a647b8c9d0e1f2a3b4c5d6"},
			Tags: map[string]string{
				"mlflow.run_id": "b1c2d3e4f5a647b8c9d0e1f2a3b4c5d6", "mlflow.model_uuid": "3c4d5e6f7a8b49c0d1e2f3a4b5c6d7e8",
				"mlflow.version": "2.9.2", "mlflow.utc_time_created": "2024-02-01 12:00:00.000001",
				"mlflow.artifact_path": "onnx-model", "mlflow.onnx.version": "1.15.0",
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			got, err := Import(tt.dir, tt.name)
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			got.Path = filepath.ToSlash(got.Path)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Import (-want +got):\n%s", diff)
			}
			if got.Engine == "trees" {
				// The model file is one ebb's trees engine loads.
				if _, err := trees.Load(got.Path); err != nil {
					t.Errorf("trees.Load(%s): %v", got.Path, err)
				}
			}
		})
	}
}

// badDir returns a copy of the xgboost-json fixture in a directory whose
// name is not a valid model name.
func badDir(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "My_Model")
	if err := os.CopyFS(dir, os.DirFS("testdata/xgboost-json")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestImportRefused(t *testing.T) {
	tests := []struct{ dir, name, message string }{
		{"testdata/xgboost-binary", "m", `format "xgb" (model.xgb), which ebb cannot load: log it again with mlflow.xgboost.log_model(model, ..., model_format="json")`},
		{"testdata/sklearn", "m", "MLmodel has flavours python_function, sklearn; ebb imports xgboost (saved as JSON) and onnx"},
		{"testdata", "m", "has no MLmodel file"},
		{badDir(t), "", `cannot name the model after directory "My_Model": give a name (--name diabetes)`},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			_, err := Import(tt.dir, tt.name)
			if err == nil || !strings.Contains(err.Error(), tt.message) {
				t.Errorf("Import(%s): got %v, want an error containing %q", tt.dir, err, tt.message)
			}
		})
	}
}
