package trees

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/oip"
)

// editModel loads testdata/file as generic JSON, lets edit change it and
// returns the result encoded again.
func editModel(t testing.TB, file string, edit func(m map[string]any)) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// obj walks m along keys, each naming an object.
func obj(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		m = m[k].(map[string]any)
	}
	return m
}

func learner(m map[string]any) map[string]any { return obj(m, "learner") }
func param(m map[string]any) map[string]any   { return obj(m, "learner", "learner_model_param") }
func gbtree(m map[string]any) map[string]any  { return obj(m, "learner", "gradient_booster", "model") }
func tree0(m map[string]any) map[string]any {
	return gbtree(m)["trees"].([]any)[0].(map[string]any)
}

func TestParseErrors(t *testing.T) {
	const good = "binary_logistic.json"
	tests := []struct {
		name string
		data []byte
		want []string // substrings of the error
	}{
		{"empty", []byte("  \n"), []string{"model bad.json", "the file is empty"}},
		{"not JSON", []byte("hello"), []string{"not valid JSON"}},
		{"truncated", []byte(`{"learner": {`), []string{"not valid JSON"}},
		{"UBJSON", []byte("{L\x00\x00\x00\x07learner{"), []string{"not valid JSON", "UBJSON"}},
		{"array", []byte("[1, 2]"), []string{"not an XGBoost model"}},
		{"empty object", []byte("{}"), []string{"not an XGBoost model", `"learner"`}},
		{"no model param", editModel(t, good, func(m map[string]any) { delete(learner(m), "learner_model_param") }),
			[]string{"missing field learner.learner_model_param"}},
		{"no num_feature", editModel(t, good, func(m map[string]any) { delete(param(m), "num_feature") }),
			[]string{"missing field learner.learner_model_param.num_feature"}},
		{"bad num_feature", editModel(t, good, func(m map[string]any) { param(m)["num_feature"] = "eight" }),
			[]string{"num_feature", `"eight"`, "non-negative integer"}},
		{"zero features", editModel(t, good, func(m map[string]any) { param(m)["num_feature"] = "0" }),
			[]string{"num_feature is 0"}},
		{"no objective", editModel(t, good, func(m map[string]any) { delete(learner(m), "objective") }),
			[]string{"missing field learner.objective"}},
		{"unsupported objective", editModel(t, good, func(m map[string]any) { obj(m, "learner", "objective")["name"] = "foo" }),
			[]string{`unsupported objective "foo"`, "binary:logistic", "multi:softprob", "reg:squarederror"}},
		{"no base_score", editModel(t, good, func(m map[string]any) { delete(param(m), "base_score") }),
			[]string{"missing field learner.learner_model_param.base_score"}},
		{"bad base_score", editModel(t, good, func(m map[string]any) { param(m)["base_score"] = "half" }),
			[]string{"base_score", `"half"`}},
		{"base_score out of range", editModel(t, good, func(m map[string]any) { param(m)["base_score"] = "2" }),
			[]string{"base_score is 2", "(0, 1)"}},
		{"too many base scores", editModel(t, good, func(m map[string]any) { param(m)["base_score"] = "[5E-1,5E-1]" }),
			[]string{"base_score has 2 values", "1 outputs"}},
		{"per-class base scores", editModel(t, "multi_softprob.json", func(m map[string]any) { param(m)["base_score"] = "[1E-1,2E-1,3E-1]" }),
			[]string{"per-class base_score"}},
		{"no booster", editModel(t, good, func(m map[string]any) { delete(learner(m), "gradient_booster") }),
			[]string{"missing field learner.gradient_booster"}},
		{"gblinear", editModel(t, good, func(m map[string]any) { obj(m, "learner", "gradient_booster")["name"] = "gblinear" }),
			[]string{`unsupported booster "gblinear"`, "gbtree and dart"}},
		{"no trees", editModel(t, good, func(m map[string]any) { delete(gbtree(m), "trees") }),
			[]string{"missing field learner.gradient_booster.model.trees"}},
		{"num_trees mismatch", editModel(t, good, func(m map[string]any) { obj(gbtree(m), "gbtree_model_param")["num_trees"] = "3" }),
			[]string{"num_trees is 3", "15 trees"}},
		{"short tree_info", editModel(t, good, func(m map[string]any) { gbtree(m)["tree_info"] = []any{0} }),
			[]string{"tree_info has 1 entries", "15 trees"}},
		{"group out of range", editModel(t, good, func(m map[string]any) { gbtree(m)["tree_info"].([]any)[2] = 1 }),
			[]string{"tree 2 belongs to output group 1"}},
		{"short array", editModel(t, good, func(m map[string]any) { tree0(m)["right_children"] = []any{1} }),
			[]string{"tree 0 is inconsistent", "right_children has 1"}},
		{"num_nodes mismatch", editModel(t, good, func(m map[string]any) { obj(tree0(m), "tree_param")["num_nodes"] = "2" }),
			[]string{"tree 0 is inconsistent", "num_nodes is 2"}},
		{"child out of range", editModel(t, good, func(m map[string]any) { tree0(m)["right_children"].([]any)[0] = 1000 }),
			[]string{"tree 0 is inconsistent", "node 0 has children"}},
		{"cycle", editModel(t, good, func(m map[string]any) { tree0(m)["left_children"].([]any)[1] = 0 }),
			[]string{"tree 0 is inconsistent", "reached twice"}},
		{"feature out of range", editModel(t, good, func(m map[string]any) { tree0(m)["split_indices"].([]any)[0] = 99 }),
			[]string{"splits on feature 99", "8 features"}},
		{"no nodes", editModel(t, good, func(m map[string]any) {
			t := tree0(m)
			for _, k := range []string{"left_children", "right_children", "split_conditions", "split_indices", "default_left"} {
				t[k] = []any{}
			}
			delete(t, "tree_param")
		}), []string{"tree 0 has no nodes"}},
		{"categorical split", editModel(t, good, func(m map[string]any) { tree0(m)["split_type"].([]any)[0] = 1 }),
			[]string{"categorical split at node 0", "numerical splits only"}},
		{"categories", editModel(t, good, func(m map[string]any) { tree0(m)["categories_nodes"] = []any{0} }),
			[]string{"categorical split"}},
		{"vector leaves", editModel(t, good, func(m map[string]any) { obj(tree0(m), "tree_param")["size_leaf_vector"] = "3" }),
			[]string{"multi-output trees"}},
		{"wrong type", editModel(t, good, func(m map[string]any) { tree0(m)["left_children"] = []any{"a"} }),
			[]string{"malformed XGBoost model", "left_children"}},
		{"threshold overflows float32", editModel(t, good, func(m map[string]any) { tree0(m)["split_conditions"].([]any)[0] = 1e300 }),
			[]string{"malformed XGBoost model", "split_conditions"}},
		{"dart without weights", editModel(t, "dart_logistic.json", func(m map[string]any) { obj(m, "learner", "gradient_booster")["weight_drop"] = []any{1} }),
			[]string{"weight_drop has 1 entries"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse("bad.json", tt.data)
			if err == nil {
				t.Fatalf("Parse succeeded with metadata %+v, want an error", m.Metadata())
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "model.json")
	if err := os.WriteFile(bad, []byte(`{"version": [1, 7, 4]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{bad, filepath.Join(dir, "missing.json")} {
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("Load(%s) = %v, want an error naming the file", path, err)
		}
	}
}

// TestFormatVariants checks forms other writers use: base_score in brackets
// (xgboost 2.x/3.x), parameters as JSON numbers, default_left as booleans.
func TestFormatVariants(t *testing.T) {
	const file = "binary_logistic.json"
	g := readGolden(t, "testdata/binary_logistic.golden.json")
	want, err := loadTest(t, file).Predict(context.Background(), []oip.Tensor{g.tensor()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(m map[string]any)
	}{
		{"bracketed base_score", func(m map[string]any) { param(m)["base_score"] = "[5E-1]" }},
		{"numbers as numbers", func(m map[string]any) {
			param(m)["num_feature"] = 8
			param(m)["base_score"] = 0.5
		}},
		{"boolean default_left", func(m map[string]any) {
			for _, tr := range gbtree(m)["trees"].([]any) {
				dl := tr.(map[string]any)["default_left"].([]any)
				for i, v := range dl {
					dl[i] = v.(float64) == 1
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse(file, editModel(t, file, tt.edit))
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Predict(context.Background(), []oip.Tensor{g.tensor()})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Predict (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParse feeds Parse arbitrary bytes: it must return a model or an error,
// never panic, and a model it returns must predict without panicking.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		if strings.HasSuffix(file, ".golden.json") {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"learner":{"learner_model_param":{"num_feature":"2","base_score":"5E-1","num_class":"0"},"objective":{"name":"reg:squarederror"},"gradient_booster":{"name":"gbtree","model":{"tree_info":[0],"trees":[{"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_conditions":[0.5,1,2],"split_indices":[1,0,0],"default_left":[1,0,0]}]}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse("fuzz.json", data)
		if err != nil {
			if m != nil {
				t.Fatal("Parse returned both a model and an error")
			}
			return
		}
		n := m.NumFeature()
		if n > 1<<16 {
			return // valid, but too wide to allocate rows for here
		}
		x := make([]float32, 3*n)
		for i := range x {
			x[i] = float32(i%7) - 3
		}
		x[0] = float32(math.NaN())
		if _, err := m.Predict(context.Background(), []oip.Tensor{{Name: InputName, Datatype: oip.FP32, Shape: []int64{3, int64(n)}, Data: x}}); err != nil {
			t.Fatalf("Predict on a parsed model: %v", err)
		}
	})
}
