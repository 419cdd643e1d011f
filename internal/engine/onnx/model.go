//go:build cgo

package onnx

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
)

var _ engine.Model = (*Model)(nil)

// cgoEnabled is true: this build can call ONNX Runtime.
const cgoEnabled = true

// env is ONNX Runtime's process-wide environment, created by the first
// successful Load.
var env struct {
	mu sync.Mutex
	// lib is the library the environment was created from; empty before.
	lib string
}

// initEnvironment loads the shared library at lib and creates the
// environment, once per process.
func initEnvironment(lib string) error {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.lib != "" {
		if env.lib != lib {
			return fmt.Errorf("ONNX Runtime is already loaded from %s in this process; it cannot also load %s", env.lib, lib)
		}
		return nil
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("loading ONNX Runtime from %s: %v; ebb needs ONNX Runtime %s or later: %s", lib, err, LibraryVersion, InstallHint)
	}
	env.lib = lib
	return nil
}

// Model is an ONNX model loaded into an ONNX Runtime session. Predict is safe
// for concurrent use; Close releases the session.
type Model struct {
	path    string
	meta    oip.ModelMetadata
	inputs  []tensorSpec
	outputs []tensorSpec
	// intraOp is the intra-op thread count the session was created with.
	intraOp int

	// mu guards session against Close while Predict runs.
	mu      sync.RWMutex
	session *ort.DynamicAdvancedSession
}

// tensorSpec is one graph input or output as the model declares it.
type tensorSpec struct {
	name     string
	datatype string // oip datatype
	shape    []int64
}

// Load opens the ONNX model at path in a new ONNX Runtime session, loading
// the runtime library first if this is the process's first Load. The
// model's name is the file's base name without its extension. Errors name
// the file and say what is wrong with it.
func Load(path string, opts Options) (*Model, error) {
	m, err := load(path, opts)
	if err != nil {
		return nil, fmt.Errorf("onnx model %s: %w", path, err)
	}
	return m, nil
}

func load(path string, opts Options) (*Model, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if info.IsDir() {
		return nil, errors.New("is a directory: give the path of the .onnx file")
	}
	lib, err := FindLibrary(opts.Library)
	if err != nil {
		return nil, err
	}
	if err := initEnvironment(lib); err != nil {
		return nil, err
	}

	// Reading the signature needs a session of its own; skip its graph
	// optimizations, they only matter for the session that runs.
	infoOpts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("creating session options: %w", err)
	}
	defer infoOpts.Destroy()
	if err := infoOpts.SetGraphOptimizationLevel(ort.GraphOptimizationLevelDisableAll); err != nil {
		return nil, fmt.Errorf("creating session options: %w", err)
	}
	ins, outs, err := ort.GetInputOutputInfoWithOptions(path, infoOpts)
	if err != nil {
		return nil, fmt.Errorf("not a model ONNX Runtime can load: %w", err)
	}
	m := &Model{path: path}
	if m.inputs, err = specs("input", ins); err != nil {
		return nil, err
	}
	if m.outputs, err = specs("output", outs); err != nil {
		return nil, err
	}
	if len(m.outputs) == 0 {
		return nil, errors.New("the graph has no outputs")
	}

	runOpts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("creating session options: %w", err)
	}
	defer runOpts.Destroy()
	m.intraOp = intraOpThreads(opts.IntraOpThreads, runtime.GOMAXPROCS(0))
	if err := runOpts.SetIntraOpNumThreads(m.intraOp); err != nil {
		return nil, fmt.Errorf("setting %d intra-op threads: %w", m.intraOp, err)
	}
	if opts.InterOpThreads > 0 {
		if err := runOpts.SetInterOpNumThreads(opts.InterOpThreads); err != nil {
			return nil, fmt.Errorf("setting %d inter-op threads: %w", opts.InterOpThreads, err)
		}
	}
	m.session, err = ort.NewDynamicAdvancedSession(path, names(m.inputs), names(m.outputs), runOpts)
	if err != nil {
		return nil, fmt.Errorf("creating the ONNX Runtime session: %w", err)
	}

	m.meta = oip.ModelMetadata{
		Name:     strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)),
		Platform: Platform,
		Inputs:   metadata(m.inputs),
		Outputs:  metadata(m.outputs),
	}
	return m, nil
}

// specs converts ONNX Runtime's view of the graph's inputs or outputs,
// refusing kinds an OIP v2 tensor cannot carry.
func specs(kind string, infos []ort.InputOutputInfo) ([]tensorSpec, error) {
	out := make([]tensorSpec, len(infos))
	for i, info := range infos {
		if info.OrtValueType != ort.ONNXTypeTensor {
			return nil, fmt.Errorf("%s %q is a %s, not a tensor: ebb serves tensor inputs and outputs only (for a scikit-learn classifier converted with skl2onnx, pass options={'zipmap': False})",
				kind, info.Name, info.OrtValueType)
		}
		dt, ok := oipDatatype(info.DataType)
		if !ok {
			return nil, fmt.Errorf("%s %q has element type %s: ebb serves FP32, FP64, INT32, INT64, BOOL and string (BYTES) tensors; cast it in the graph before exporting",
				kind, info.Name, elementName(info.DataType))
		}
		shape := make([]int64, len(info.Dimensions))
		for j, d := range info.Dimensions {
			if d < 0 {
				d = -1 // symbolic ("batch") or unknown
			}
			shape[j] = d
		}
		out[i] = tensorSpec{name: info.Name, datatype: dt, shape: shape}
	}
	return out, nil
}

func oipDatatype(t ort.TensorElementDataType) (string, bool) {
	switch t {
	case ort.TensorElementDataTypeFloat:
		return oip.FP32, true
	case ort.TensorElementDataTypeDouble:
		return oip.FP64, true
	case ort.TensorElementDataTypeInt32:
		return oip.INT32, true
	case ort.TensorElementDataTypeInt64:
		return oip.INT64, true
	case ort.TensorElementDataTypeBool:
		return oip.BOOL, true
	case ort.TensorElementDataTypeString:
		return oip.BYTES, true
	}
	return "", false
}

// elementName is t as ONNX spells it, e.g. "float16".
func elementName(t ort.TensorElementDataType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "ONNX_TENSOR_ELEMENT_DATA_TYPE_"))
}

func names(specs []tensorSpec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.name
	}
	return out
}

func metadata(specs []tensorSpec) []oip.TensorMetadata {
	out := make([]oip.TensorMetadata, len(specs))
	for i, s := range specs {
		out[i] = oip.TensorMetadata{Name: s.name, Datatype: s.datatype, Shape: append([]int64(nil), s.shape...)}
	}
	return out
}

// Metadata describes the graph's inputs and outputs; -1 marks a dynamic
// dimension.
func (m *Model) Metadata() oip.ModelMetadata {
	meta := m.meta
	meta.Inputs = metadata(m.inputs)
	meta.Outputs = metadata(m.outputs)
	return meta
}

// Predict runs the graph on inputs, matched to the graph's inputs by name,
// and returns every output in the graph's order. Numeric inputs are
// converted to the input's declared type (a float for an integer input must
// be a whole number in range). Problems with the inputs are returned as
// *engine.InputError. When ctx ends during the run, ONNX Runtime is told to
// stop and Predict returns ctx's error.
func (m *Model) Predict(ctx context.Context, inputs []oip.Tensor) ([]oip.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	values, err := m.inputValues(inputs)
	defer destroyAll(values)
	if err != nil {
		return nil, err
	}

	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.session == nil {
		return nil, fmt.Errorf("onnx model %s is closed", m.path)
	}
	outs := make([]ort.Value, len(m.outputs))
	err = m.run(ctx, values, outs)
	defer destroyAll(outs)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("onnx model %s: %w", m.path, err)
	}
	result := make([]oip.Tensor, len(outs))
	for i, v := range outs {
		t, err := toTensor(m.outputs[i], v)
		if err != nil {
			return nil, fmt.Errorf("onnx model %s: %w", m.path, err)
		}
		result[i] = t
	}
	return result, nil
}

// run runs the session, terminating it if ctx ends meanwhile.
func (m *Model) run(ctx context.Context, in, out []ort.Value) error {
	if ctx.Done() == nil {
		return m.session.Run(in, out)
	}
	ro, err := ort.NewRunOptions()
	if err != nil {
		return fmt.Errorf("creating run options: %w", err)
	}
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(terminated)
		ro.Terminate()
	})
	defer func() {
		if !stop() {
			<-terminated // Terminate is using ro.
		}
		ro.Destroy()
	}()
	return m.session.RunWithOptions(in, out, ro)
}

// inputValues checks inputs against the graph and builds ONNX Runtime
// values for them, in the graph's order. On error the values built so far
// are returned too, for the caller to destroy.
func (m *Model) inputValues(inputs []oip.Tensor) ([]ort.Value, error) {
	values := make([]ort.Value, len(m.inputs))
	byName := make(map[string]int, len(inputs))
	for i, t := range inputs {
		if _, dup := byName[t.Name]; dup {
			return values, &engine.InputError{Message: fmt.Sprintf("input %q appears more than once", t.Name)}
		}
		byName[t.Name] = i
	}
	for i, spec := range m.inputs {
		j, ok := byName[spec.name]
		if !ok {
			return values, &engine.InputError{Message: fmt.Sprintf("missing input %q: the model takes %s", spec.name, describe(m.inputs))}
		}
		delete(byName, spec.name)
		v, err := newValue(spec, inputs[j])
		if err != nil {
			return values, err
		}
		values[i] = v
	}
	for name := range byName {
		return values, &engine.InputError{Message: fmt.Sprintf("unknown input %q: the model takes %s", name, describe(m.inputs))}
	}
	return values, nil
}

func describe(specs []tensorSpec) string {
	parts := make([]string, len(specs))
	for i, s := range specs {
		parts[i] = fmt.Sprintf("%q (%s %v)", s.name, s.datatype, s.shape)
	}
	return strings.Join(parts, ", ")
}

func destroyAll(values []ort.Value) {
	for _, v := range values {
		if v != nil {
			v.Destroy()
		}
	}
}

// IntraOpThreads returns how many threads ONNX Runtime may use inside one
// operator of this model (see Options.IntraOpThreads).
func (m *Model) IntraOpThreads() int { return m.intraOp }

// Close releases the session. Predict calls after Close fail; Close waits
// for those in flight.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.session == nil {
		return nil
	}
	err := m.session.Destroy()
	m.session = nil
	return err
}
