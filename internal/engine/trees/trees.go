// Package trees is the engine for gradient-boosted tree models saved by
// XGBoost as JSON (Booster.save_model("model.json")).
//
// It evaluates the trees itself, with XGBoost's own arithmetic: splits
// compare value < threshold in float32, a missing value (NaN) follows the
// node's default branch, leaves are summed in float32 in tree order starting
// from base_score turned into a margin, and the objective's link (sigmoid,
// softmax, exp, ...) is applied last. Predictions match XGBoost's to within
// float32 rounding (relative error well under 1e-6).
//
// Supported: boosters gbtree and dart; the objectives Objectives lists;
// models written by xgboost 1.x (verified against 1.7.4) and the bracketed
// base_score of later versions. Categorical splits, multi-output trees and
// gblinear are refused when the model is loaded.
package trees

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
)

// Names and platform a Model reports in its metadata.
const (
	Platform   = "ebb_trees"
	InputName  = "input"
	OutputName = "predict"
)

// ctxCheckRows is how many rows Predict evaluates between checks of its
// context.
const ctxCheckRows = 256

var (
	_ engine.Model = (*Model)(nil)
	_ engine.Sizer = (*Model)(nil)
)

// Model is a loaded XGBoost tree ensemble. It is immutable and safe for
// concurrent use.
type Model struct {
	meta       oip.ModelMetadata
	objective  string
	numFeature int
	link       link
	// base is the starting margin of each output group.
	base   []float32
	forest forest
	// outCols is the number of outputs per row.
	outCols int
}

// Load reads the XGBoost JSON model at path. The model's name is the file's
// base name without its extension; errors name the file.
func Load(path string) (*Model, error) {
	data, err := engine.ReadModelFile(path, engine.MaxModelFileBytes)
	if err != nil {
		return nil, fmt.Errorf("load xgboost model: %w", err)
	}
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	return parse(name, path, data)
}

// Parse reads an XGBoost JSON model from data; name becomes the metadata's
// name and appears in errors.
func Parse(name string, data []byte) (*Model, error) {
	return parse(name, name, data)
}

func parse(name, source string, data []byte) (*Model, error) {
	m, err := build(name, data)
	if err != nil {
		return nil, fmt.Errorf("xgboost model %s: %w", source, err)
	}
	return m, nil
}

func build(name string, data []byte) (*Model, error) {
	jm, err := decodeJSON(data)
	if err != nil {
		return nil, err
	}
	l := jm.Learner
	if l == nil {
		return nil, fmt.Errorf("not an XGBoost model: it has no \"learner\" object; save the model with Booster.save_model(\"model.json\")")
	}
	if l.ModelParam == nil {
		return nil, fmt.Errorf("missing field learner.learner_model_param")
	}
	if l.ModelParam.NumFeature == "" {
		return nil, fmt.Errorf("missing field learner.learner_model_param.num_feature")
	}
	numFeature, err := l.ModelParam.NumFeature.int("learner.learner_model_param.num_feature")
	if err != nil {
		return nil, err
	}
	if numFeature == 0 {
		return nil, fmt.Errorf("field learner.learner_model_param.num_feature is 0: the model takes no features")
	}
	if l.Objective == nil {
		return nil, fmt.Errorf("missing field learner.objective")
	}
	obj, err := lookupObjective(l.Objective.Name)
	if err != nil {
		return nil, err
	}
	groups, err := outputGroups(l.ModelParam)
	if err != nil {
		return nil, err
	}
	if l.ModelParam.BaseScore == "" {
		return nil, fmt.Errorf("missing field learner.learner_model_param.base_score")
	}
	base, err := baseMargins(string(l.ModelParam.BaseScore), obj, groups)
	if err != nil {
		return nil, err
	}
	f, err := buildForest(l.GradientBooster, numFeature, groups)
	if err != nil {
		return nil, err
	}

	m := &Model{
		objective:  l.Objective.Name,
		numFeature: numFeature,
		link:       obj.link,
		base:       base,
		forest:     *f,
		outCols:    groups,
	}
	outShape := []int64{-1, int64(groups)}
	switch {
	case obj.link == linkSoftmax:
		m.outCols = 1
		outShape = []int64{-1}
	case groups == 1 && obj.link != linkSoftprob:
		outShape = []int64{-1}
	}
	m.meta = oip.ModelMetadata{
		Name:     name,
		Platform: Platform,
		Inputs:   []oip.TensorMetadata{{Name: InputName, Datatype: oip.FP32, Shape: []int64{-1, int64(numFeature)}}},
		Outputs:  []oip.TensorMetadata{{Name: OutputName, Datatype: oip.FP32, Shape: outShape}},
	}
	return m, nil
}

// outputGroups is the number of margins per row: num_class for multi-class
// models, num_target for multi-target ones, else 1.
func outputGroups(p *jsonLearnerParm) (int, error) {
	groups := 1
	if p.NumClass != "" {
		c, err := p.NumClass.int("learner.learner_model_param.num_class")
		if err != nil {
			return 0, err
		}
		groups = max(groups, c)
	}
	if p.NumTarget != "" {
		t, err := p.NumTarget.int("learner.learner_model_param.num_target")
		if err != nil {
			return 0, err
		}
		if t > 1 && groups > 1 {
			return 0, fmt.Errorf("the model has both num_class %s and num_target %s; only one may exceed 1", p.NumClass, p.NumTarget)
		}
		groups = max(groups, t)
	}
	const maxGroups = 1 << 16
	if groups > maxGroups {
		return 0, fmt.Errorf("the model has %d output groups; at most %d are supported", groups, maxGroups)
	}
	return groups, nil
}

// baseMargins turns base_score into one starting margin per group.
func baseMargins(s string, obj objective, groups int) ([]float32, error) {
	scores, err := parseBaseScore(s)
	if err != nil {
		return nil, err
	}
	if len(scores) != 1 && len(scores) != groups {
		return nil, fmt.Errorf("field learner.learner_model_param.base_score has %d values but the model has %d outputs", len(scores), groups)
	}
	if len(scores) > 1 && (obj.link == linkSoftprob || obj.link == linkSoftmax) {
		for _, v := range scores[1:] {
			if v != scores[0] {
				return nil, fmt.Errorf("per-class base_score values %s are not supported: retrain with a single base_score", s)
			}
		}
	}
	base := make([]float32, groups)
	for g := range base {
		p := scores[0]
		if len(scores) > 1 {
			p = scores[g]
		}
		if base[g], err = obj.margin.toMargin(p); err != nil {
			return nil, fmt.Errorf("field learner.learner_model_param.base_score: %w", err)
		}
	}
	return base, nil
}

// buildForest checks the booster's trees and flattens them.
func buildForest(b *jsonBooster, numFeature, groups int) (*forest, error) {
	if b == nil {
		return nil, fmt.Errorf("missing field learner.gradient_booster")
	}
	var gb *jsonGBTree
	path := "learner.gradient_booster.model"
	switch b.Name {
	case "gbtree":
		gb = b.Model
	case "dart":
		path = "learner.gradient_booster.gbtree.model"
		if b.GBTree == nil {
			return nil, fmt.Errorf("missing field learner.gradient_booster.gbtree")
		}
		gb = b.GBTree.Model
	case "":
		return nil, fmt.Errorf("missing field learner.gradient_booster.name")
	default:
		return nil, fmt.Errorf("unsupported booster %q: the trees engine supports gbtree and dart", b.Name)
	}
	if gb == nil {
		return nil, fmt.Errorf("missing field %s", path)
	}
	if gb.Trees == nil {
		return nil, fmt.Errorf("missing field %s.trees", path)
	}
	n := len(gb.Trees)
	if gb.Param != nil && gb.Param.NumTrees != "" {
		want, err := gb.Param.NumTrees.int(path + ".gbtree_model_param.num_trees")
		if err != nil {
			return nil, err
		}
		if want != n {
			return nil, fmt.Errorf("inconsistent model: %s.gbtree_model_param.num_trees is %d but there are %d trees", path, want, n)
		}
	}
	if len(gb.TreeInfo) != n {
		return nil, fmt.Errorf("inconsistent model: %s.tree_info has %d entries but there are %d trees", path, len(gb.TreeInfo), n)
	}
	f := &forest{}
	if b.Name == "dart" {
		if len(b.WeightDrop) != n {
			return nil, fmt.Errorf("inconsistent model: learner.gradient_booster.weight_drop has %d entries but there are %d trees", len(b.WeightDrop), n)
		}
		f.weights = b.WeightDrop
	}
	for t := range gb.Trees {
		g := gb.TreeInfo[t]
		if g < 0 || g >= groups {
			return nil, fmt.Errorf("inconsistent model: tree %d belongs to output group %d (tree_info) but the model has %d", t, g, groups)
		}
		if err := f.appendTree(t, &gb.Trees[t], numFeature, int32(g)); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Metadata describes the model: one FP32 input "input" of shape
// [-1, num_feature] and one FP32 output "predict" of shape [-1], or
// [-1, num_class] for multi:softprob (and [-1, num_target] for multi-target
// models).
func (m *Model) Metadata() oip.ModelMetadata {
	meta := m.meta
	meta.Inputs = cloneMeta(m.meta.Inputs)
	meta.Outputs = cloneMeta(m.meta.Outputs)
	return meta
}

func cloneMeta(ts []oip.TensorMetadata) []oip.TensorMetadata {
	out := make([]oip.TensorMetadata, len(ts))
	for i, t := range ts {
		t.Shape = append([]int64(nil), t.Shape...)
		out[i] = t
	}
	return out
}

// Objective returns the XGBoost objective the model was trained with.
func (m *Model) Objective() string { return m.objective }

// ModelBytes returns the bytes the loaded model holds: its flattened
// trees, their per-tree tables and its metadata. It does not count the
// JSON it was parsed from, which is garbage once Load returns.
func (m *Model) ModelBytes() int64 {
	f := &m.forest
	n := int64(unsafe.Sizeof(*m)) +
		int64(cap(f.nodes))*int64(unsafe.Sizeof(node{})) +
		4*int64(cap(f.roots)+cap(f.groups)+cap(f.weights)+cap(m.base))
	for _, ts := range [][]oip.TensorMetadata{m.meta.Inputs, m.meta.Outputs} {
		for _, t := range ts {
			n += int64(unsafe.Sizeof(t)) + int64(len(t.Name)+len(t.Datatype)) + 8*int64(cap(t.Shape))
		}
	}
	return n + int64(len(m.meta.Name)+len(m.meta.Platform)+len(m.objective))
}

// NumFeature returns the number of features each input row has.
func (m *Model) NumFeature() int { return m.numFeature }

// Predict evaluates the model on inputs, which must be one tensor named
// "input" of a numeric datatype (anything but FP32 converted to float32) and
// shape [n, num_feature], or [num_feature] for a single row. NaN marks a
// missing value. It returns one FP32 tensor "predict" of shape [n] or
// [n, classes], or an *engine.InputError when the input is wrong. It checks
// ctx between rows and returns ctx.Err() once ctx is done.
func (m *Model) Predict(ctx context.Context, inputs []oip.Tensor) ([]oip.Tensor, error) {
	x, rows, err := m.checkInput(inputs)
	if err != nil {
		return nil, err
	}
	groups := len(m.base)
	out := make([]float32, rows*m.outCols)
	acc := make([]float32, groups)
	for r := range rows {
		if r > 0 && r%ctxCheckRows == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		copy(acc, m.base)
		m.forest.add(x[r*m.numFeature:(r+1)*m.numFeature], acc)
		m.link.apply(acc, out[r*m.outCols:(r+1)*m.outCols])
	}
	// The output tensor and its shape in one allocation.
	res := &struct {
		t     [1]oip.Tensor
		shape [2]int64
	}{shape: [2]int64{int64(rows), int64(m.outCols)}}
	shape := res.shape[:1]
	if len(m.meta.Outputs[0].Shape) == 2 {
		shape = res.shape[:2]
	}
	res.t[0] = oip.Tensor{Name: OutputName, Datatype: oip.FP32, Shape: shape, Data: out}
	return res.t[:], nil
}

// rows returns the rows of in, a numeric input named InputName, as one
// flat float32 slice, when its shape and data hold whole rows; checkInput
// says what is wrong otherwise.
func (m *Model) rows(in oip.Tensor) ([]float32, int, bool) {
	var rows int
	switch {
	case len(in.Shape) == 1 && in.Shape[0] == int64(m.numFeature):
		rows = 1
	case len(in.Shape) == 2 && in.Shape[1] == int64(m.numFeature) && in.Shape[0] >= 0:
		rows = int(in.Shape[0])
	default:
		return nil, 0, false
	}
	x, err := in.Float32s()
	if err != nil || len(x)%m.numFeature != 0 || len(x)/m.numFeature != rows {
		return nil, 0, false
	}
	return x, rows, true
}

// checkInput validates inputs and returns the rows as one flat float32 slice.
func (m *Model) checkInput(inputs []oip.Tensor) ([]float32, int, error) {
	if len(inputs) == 1 && inputs[0].Name == InputName && oip.IsNumeric(inputs[0].Datatype) {
		if x, rows, ok := m.rows(inputs[0]); ok {
			return x, rows, nil
		}
	}
	want := fmt.Sprintf("[-1, %d]", m.numFeature)
	if len(inputs) != 1 {
		names := make([]string, len(inputs))
		for i, in := range inputs {
			names[i] = fmt.Sprintf("%q", in.Name)
		}
		return nil, 0, inputErr("model %s takes exactly one input, %q (FP32, shape %s); given %d inputs [%s]", m.meta.Name, InputName, want, len(inputs), strings.Join(names, ", "))
	}
	in := inputs[0]
	if in.Name != InputName {
		return nil, 0, inputErr("model %s has no input %q: its input is %q (FP32, shape %s)", m.meta.Name, in.Name, InputName, want)
	}
	if !oip.IsNumeric(in.Datatype) {
		return nil, 0, inputErr("input %q: datatype %s given, expected FP32 (any other numeric datatype, INT8 to UINT64, FP16, BF16 or FP64, is converted)", InputName, in.Datatype)
	}
	var rows int
	switch {
	case len(in.Shape) == 1 && in.Shape[0] == int64(m.numFeature):
		rows = 1
	case len(in.Shape) == 2 && in.Shape[1] == int64(m.numFeature) && in.Shape[0] >= 0:
		rows = int(in.Shape[0])
	default:
		return nil, 0, inputErr("input %q: shape %v given, expected %s (rows × %d features) or [%d] for one row", InputName, in.Shape, want, m.numFeature, m.numFeature)
	}
	x, err := in.Float32s()
	if err != nil {
		return nil, 0, inputErr("input %q: datatype %s given, expected FP32: %v", InputName, in.Datatype, err)
	}
	if len(x)%m.numFeature != 0 || len(x)/m.numFeature != rows {
		return nil, 0, inputErr("input %q: shape %v needs %d values but data has %d", InputName, in.Shape, rows*m.numFeature, len(x))
	}
	return x, rows, nil
}

func inputErr(format string, args ...any) error {
	return &engine.InputError{Message: fmt.Sprintf(format, args...)}
}
