// Package mlflow imports MLflow model directories into the registry: it
// reads the MLmodel file of a directory written by mlflow.xgboost or
// mlflow.onnx (log_model / save_model) and turns it into a
// registry.PushRequest that keeps MLflow's metadata as lineage.
//
// Supported flavours: xgboost saved as JSON (model_format "json", the file
// model.json; the binary formats xgb and ubj are refused because ebb's trees
// engine reads JSON) and onnx (model.onnx). The signature may be a tensor
// spec or a column spec. When the directory lies in an MLflow file store
// run (mlruns/<experiment>/<run>/artifacts/<path>), the run's params,
// metrics and git commit tag are read too; a directory may also carry its
// own params/ and metrics/ folders in the same format, one file per key.
package mlflow

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/registry"
)

// MLmodel is the part of an MLmodel file the importer reads.
type MLmodel struct {
	ArtifactPath   string                     `json:"artifact_path"`
	Flavors        map[string]json.RawMessage `json:"flavors"`
	RunID          string                     `json:"run_id"`
	ModelUUID      string                     `json:"model_uuid"`
	MLflowVersion  string                     `json:"mlflow_version"`
	UTCTimeCreated string                     `json:"utc_time_created"`
	Signature      *struct {
		Inputs  string `json:"inputs"`
		Outputs string `json:"outputs"`
	} `json:"signature"`
	Metadata map[string]any `json:"metadata"`
}

type xgboostFlavor struct {
	Data        string `json:"data"`
	ModelFormat string `json:"model_format"`
	ModelClass  string `json:"model_class"`
	XGBVersion  string `json:"xgb_version"`
}

type onnxFlavor struct {
	Data        string `json:"data"`
	ONNXVersion string `json:"onnx_version"`
}

// Import reads the MLflow model directory dir and returns the push that
// registers it as a version of the model name (when empty, the directory's
// name if it is a valid model name). The request's Path is the model file
// inside dir.
func Import(dir, name string) (registry.PushRequest, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "MLmodel"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return registry.PushRequest{}, fmt.Errorf("%s has no MLmodel file: give the directory MLflow saved the model to (it holds MLmodel)", dir)
		}
		return registry.PushRequest{}, err
	}
	var m MLmodel
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return registry.PushRequest{}, fmt.Errorf("%s: MLmodel is not valid YAML: %w", dir, err)
	}
	if name == "" {
		name = strings.ToLower(filepath.Base(filepath.Clean(dir)))
		if registry.ValidateName("model name", name) != nil {
			return registry.PushRequest{}, fmt.Errorf("cannot name the model after directory %q: give a name (--name diabetes)", filepath.Base(dir))
		}
	}
	req := registry.PushRequest{Model: name, Tags: map[string]string{}}
	if err := m.flavor(dir, &req); err != nil {
		return registry.PushRequest{}, err
	}
	if m.Signature != nil {
		if req.Signature.Inputs, err = parseSchema(m.Signature.Inputs, "input"); err != nil {
			return registry.PushRequest{}, fmt.Errorf("%s: MLmodel signature inputs: %w", dir, err)
		}
		if req.Signature.Outputs, err = parseSchema(m.Signature.Outputs, "output"); err != nil {
			return registry.PushRequest{}, fmt.Errorf("%s: MLmodel signature outputs: %w", dir, err)
		}
	}
	if m.RunID != "" {
		req.Lineage.Source = "mlflow run " + m.RunID
		req.Tags["mlflow.run_id"] = m.RunID
	}
	for k, v := range map[string]string{"mlflow.model_uuid": m.ModelUUID, "mlflow.version": m.MLflowVersion,
		"mlflow.utc_time_created": m.UTCTimeCreated, "mlflow.artifact_path": m.ArtifactPath} {
		if v != "" {
			req.Tags[k] = v
		}
	}
	for k, v := range m.Metadata {
		if s, ok := v.(string); ok {
			req.Tags[k] = s
		} else if b, err := json.Marshal(v); err == nil {
			req.Tags[k] = string(b)
		}
	}
	if err := readRun(dir, m.RunID, &req.Lineage); err != nil {
		return registry.PushRequest{}, err
	}
	return req, nil
}

// flavor picks the flavour ebb can serve and sets the request's engine and
// model file.
func (m *MLmodel) flavor(dir string, req *registry.PushRequest) error {
	if raw, ok := m.Flavors["xgboost"]; ok {
		var f xgboostFlavor
		if err := json.Unmarshal(raw, &f); err != nil {
			return fmt.Errorf("%s: MLmodel flavors.xgboost: %w", dir, err)
		}
		format := f.ModelFormat
		if format == "" {
			format = strings.TrimPrefix(filepath.Ext(f.Data), ".")
		}
		if format != "json" {
			return fmt.Errorf("%s: the xgboost model is saved in format %q (%s), which ebb cannot load: log it again with mlflow.xgboost.log_model(model, ..., model_format=\"json\")", dir, format, f.Data)
		}
		req.Engine = "trees"
		req.Path = filepath.Join(dir, filepath.FromSlash(f.Data))
		setTag(req, "mlflow.xgboost.model_class", f.ModelClass)
		setTag(req, "mlflow.xgboost.version", f.XGBVersion)
		return checkData(dir, f.Data, req.Path)
	}
	if raw, ok := m.Flavors["onnx"]; ok {
		var f onnxFlavor
		if err := json.Unmarshal(raw, &f); err != nil {
			return fmt.Errorf("%s: MLmodel flavors.onnx: %w", dir, err)
		}
		req.Engine = "onnx"
		req.Path = filepath.Join(dir, filepath.FromSlash(f.Data))
		setTag(req, "mlflow.onnx.version", f.ONNXVersion)
		return checkData(dir, f.Data, req.Path)
	}
	var names []string
	for k := range m.Flavors {
		names = append(names, k)
	}
	sort.Strings(names)
	return fmt.Errorf("%s: MLmodel has flavours %s; ebb imports xgboost (saved as JSON) and onnx: convert the model to one of them",
		dir, strings.Join(names, ", "))
}

func setTag(req *registry.PushRequest, k, v string) {
	if v != "" {
		req.Tags[k] = v
	}
}

func checkData(dir, data, path string) error {
	if data == "" || !filepath.IsLocal(filepath.FromSlash(data)) {
		return fmt.Errorf("%s: MLmodel names model data %q, which is not a file inside the directory", dir, data)
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s: MLmodel names model data %q, which is missing: copy the whole model directory", dir, data)
	}
	return nil
}

// schemaEntry is one element of MLflow's JSON schema: a column
// ({"type": "double", "name": "age"}) or a tensor ({"type": "tensor",
// "tensor-spec": {"dtype": "float32", "shape": [-1, 10]}, "name": "x"}).
type schemaEntry struct {
	Type       string `json:"type"`
	Name       string `json:"name"`
	TensorSpec *struct {
		Dtype string  `json:"dtype"`
		Shape []int64 `json:"shape"`
	} `json:"tensor-spec"`
}

var columnTypes = map[string]string{
	"double": oip.FP64, "float": oip.FP32, "long": oip.INT64, "integer": oip.INT32,
	"boolean": oip.BOOL, "string": oip.BYTES, "binary": oip.BYTES, "datetime": oip.BYTES,
}

var numpyTypes = map[string]string{
	"float64": oip.FP64, "float32": oip.FP32, "float16": "FP16", "int64": oip.INT64, "int32": oip.INT32,
	"int16": "INT16", "int8": "INT8", "uint64": "UINT64", "uint32": "UINT32", "uint16": "UINT16",
	"uint8": "UINT8", "bool": oip.BOOL, "str": oip.BYTES, "object": oip.BYTES, "bytes": oip.BYTES,
}

// parseSchema turns MLflow's JSON-encoded schema into tensor metadata: a
// tensor keeps its shape; a column becomes a [-1] tensor. Unnamed entries
// are named prefix0, prefix1...
func parseSchema(s, prefix string) ([]oip.TensorMetadata, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var entries []schemaEntry
	if err := json.Unmarshal([]byte(s), &entries); err != nil {
		return nil, fmt.Errorf("not an MLflow schema (a JSON list of columns or tensors): %w", err)
	}
	out := make([]oip.TensorMetadata, 0, len(entries))
	for i, e := range entries {
		md := oip.TensorMetadata{Name: e.Name}
		if md.Name == "" {
			md.Name = fmt.Sprintf("%s%d", prefix, i)
		}
		if e.Type == "tensor" {
			if e.TensorSpec == nil {
				return nil, fmt.Errorf("tensor %q has no tensor-spec", md.Name)
			}
			dt, ok := numpyTypes[strings.TrimPrefix(e.TensorSpec.Dtype, "numpy.")]
			if !ok {
				return nil, fmt.Errorf("tensor %q has dtype %q, which has no Open Inference Protocol datatype", md.Name, e.TensorSpec.Dtype)
			}
			md.Datatype, md.Shape = dt, e.TensorSpec.Shape
		} else {
			dt, ok := columnTypes[e.Type]
			if !ok {
				return nil, fmt.Errorf("column %q has type %q, which has no Open Inference Protocol datatype", md.Name, e.Type)
			}
			md.Datatype, md.Shape = dt, []int64{-1}
		}
		out = append(out, md)
	}
	return out, nil
}

var runIDRE = regexp.MustCompile(`(?m)^run_id:\s*['"]?([0-9A-Za-z_-]+)`)

// readRun fills lineage from MLflow file-store run records: params/,
// metrics/ and tags/ folders in dir itself, or in the run directory two
// levels up (mlruns/<exp>/<run>/artifacts/<path>) when its meta.yaml names
// runID.
func readRun(dir, runID string, lin *registry.Lineage) error {
	candidates := []string{dir}
	if runID != "" {
		for _, up := range []string{"..", filepath.Join("..", "..")} {
			runDir := filepath.Join(dir, up)
			meta, err := os.ReadFile(filepath.Join(runDir, "meta.yaml"))
			if err != nil {
				continue
			}
			if m := runIDRE.FindSubmatch(meta); m != nil && string(m[1]) == runID {
				candidates = append(candidates, runDir)
				break
			}
		}
	}
	for _, c := range candidates {
		params, err := readKeys(filepath.Join(c, "params"), func(s string) (string, error) { return s, nil })
		if err != nil {
			return err
		}
		for k, v := range params {
			if lin.Parameters == nil {
				lin.Parameters = map[string]string{}
			}
			lin.Parameters[k] = v
		}
		metrics, err := readKeys(filepath.Join(c, "metrics"), lastMetric)
		if err != nil {
			return err
		}
		for k, v := range metrics {
			if lin.Metrics == nil {
				lin.Metrics = map[string]float64{}
			}
			lin.Metrics[k] = v
		}
		tags, err := readKeys(filepath.Join(c, "tags"), func(s string) (string, error) { return s, nil })
		if err != nil {
			return err
		}
		if commit := tags["mlflow.source.git.commit"]; commit != "" {
			lin.CodeCommit = commit
		}
	}
	return nil
}

// readKeys reads one value per file from dir (missing: none), the file's
// name being the key; keys with slashes live in subfolders.
func readKeys[T any](dir string, parse func(string) (T, error)) (map[string]T, error) {
	out := map[string]T{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && p == dir {
				return filepath.SkipDir
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		v, err := parse(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		out[filepath.ToSlash(rel)] = v
		return nil
	})
	return out, err
}

// lastMetric parses an MLflow metric file, lines of "timestamp value
// [step]", and returns the last value logged.
func lastMetric(s string) (float64, error) {
	var last string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			last = line
		}
	}
	fields := strings.Fields(last)
	if len(fields) < 2 {
		return 0, fmt.Errorf("metric file line %q is not \"timestamp value step\"", last)
	}
	return strconv.ParseFloat(fields[1], 64)
}
