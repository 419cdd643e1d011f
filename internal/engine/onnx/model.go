//go:build cgo

package onnx

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
)

var (
	_ engine.Model          = (*Model)(nil)
	_ engine.OutputSelector = (*Model)(nil)
)

// cgoEnabled is true: this build can call ONNX Runtime.
const cgoEnabled = true

// env is ONNX Runtime's process-wide environment, created by the first
// successful Load.
var env struct {
	mu sync.Mutex
	// lib is the library the environment was created from; empty before.
	lib string
}

// Init loads ONNX Runtime from FindLibrary(lib) and creates its
// environment, as the first Load of a process does, then creates and
// releases a session of a tiny model. A replica hosting a pool of models
// calls it before its first load, so that it fails at start when the
// library is missing and the runtime's own memory, which its first session
// sets up, is not counted as its first model's.
func Init(lib string) error {
	path, err := FindLibrary(lib)
	if err != nil {
		return err
	}
	if err := initEnvironment(path); err != nil {
		return err
	}
	if err := warmUp(); err != nil {
		return fmt.Errorf("ONNX Runtime from %s: creating a first session: %w", path, err)
	}
	return nil
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
	if err := initC(); err != nil {
		return fmt.Errorf("ONNX Runtime from %s: %w", lib, err)
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
	// intraOp and interOp are the thread counts of its sessions.
	intraOp, interOp int

	// mu guards sess and subsets against Close while Predict runs.
	mu   sync.RWMutex
	sess *session
	// subsets are the sessions of pruned copies of the graph that compute
	// some outputs only (subsets.go).
	subsets subsets
}

// tensorSpec is one graph input or output as the model declares it.
type tensorSpec struct {
	name     string
	datatype string // oip datatype
	elem     int    // ONNX element type
	// shape has -1 for a symbolic or unknown dimension; it is empty for a
	// scalar and nil for a tensor declared without a shape.
	shape []int64
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
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("is not a regular file (mode %s): give the path of the .onnx file", info.Mode().Type())
	}
	if info.Size() > engine.MaxModelFileBytes {
		return nil, fmt.Errorf("the file has %d bytes, more than the limit of %d", info.Size(), int64(engine.MaxModelFileBytes))
	}
	lib, err := FindLibrary(opts.Library)
	if err != nil {
		return nil, err
	}
	if err := initEnvironment(lib); err != nil {
		return nil, err
	}
	m := &Model{
		path:    path,
		intraOp: intraOpThreads(opts.IntraOpThreads, runtime.GOMAXPROCS(0)),
		interOp: opts.InterOpThreads,
		subsets: subsets{budget: subsetBudget(info.Size()), now: time.Now},
	}
	if m.sess, err = newSession(path, m.intraOp, opts.InterOpThreads); err != nil {
		return nil, err
	}
	if err := m.describe(path); err != nil {
		m.sess.release()
		return nil, err
	}
	m.meta = oip.ModelMetadata{
		Name:     strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)),
		Platform: Platform,
		Inputs:   metadata(m.inputs),
		Outputs:  metadata(m.outputs),
	}
	return m, nil
}

// describe reads the session's inputs and outputs, refusing kinds an OIP
// v2 tensor cannot carry.
func (m *Model) describe(path string) error {
	ins, err := m.sess.io(false)
	if err != nil {
		return fmt.Errorf("reading the graph's inputs: %w", err)
	}
	outs, err := m.sess.io(true)
	if err != nil {
		return fmt.Errorf("reading the graph's outputs: %w", err)
	}
	// A file this reader does not understand (ONNX Runtime's own format)
	// leaves every tensor without dimensions a scalar.
	declared, _ := declaredShapes(path)
	if m.inputs, err = specs("input", ins, declared.inputs); err != nil {
		return err
	}
	if m.outputs, err = specs("output", outs, declared.outputs); err != nil {
		return err
	}
	if len(m.outputs) == 0 {
		return errors.New("the graph has no outputs")
	}
	return nil
}

// served lists the element types ebb serves, for messages.
const served = "bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float16, bfloat16, float, double and string"

// specs converts ONNX Runtime's view of the graph's inputs or outputs.
// shaped says which tensors the file declares a shape for (nil: all).
func specs(kind string, infos []ioInfo, shaped map[string]bool) ([]tensorSpec, error) {
	out := make([]tensorSpec, len(infos))
	for i, info := range infos {
		if info.onnxType != onnxTensor {
			return nil, fmt.Errorf("%s %q is a %s, not a tensor: ebb serves tensor inputs and outputs only (for a scikit-learn classifier converted with skl2onnx, pass options={'zipmap': False})",
				kind, info.name, onnxTypeNames[info.onnxType])
		}
		dt, ok := oipDatatypes[info.elem]
		if !ok {
			return nil, fmt.Errorf("%s %q has element type %s: ebb serves tensors of %s; cast it in the graph before exporting",
				kind, info.name, elementName(info.elem), served)
		}
		spec := tensorSpec{name: info.name, datatype: dt, elem: info.elem}
		if has, known := shaped[info.name]; len(info.dims) > 0 || !known || has {
			spec.shape = make([]int64, len(info.dims))
			for j, d := range info.dims {
				spec.shape[j] = max(d, -1) // symbolic ("batch") or unknown: -1
			}
		}
		out[i] = spec
	}
	return out, nil
}

func metadata(specs []tensorSpec) []oip.TensorMetadata {
	out := make([]oip.TensorMetadata, len(specs))
	for i, s := range specs {
		out[i] = oip.TensorMetadata{Name: s.name, Datatype: s.datatype, Shape: slices.Clone(s.shape)}
	}
	return out
}

// Metadata describes the graph's inputs and outputs: -1 marks a dynamic
// dimension, an empty shape a scalar, a nil shape a tensor the graph
// declares without one (any shape).
func (m *Model) Metadata() oip.ModelMetadata {
	meta := m.meta
	meta.Inputs = metadata(m.inputs)
	meta.Outputs = metadata(m.outputs)
	return meta
}

// Predict runs the graph on inputs and returns every output in the graph's
// order; see PredictOutputs.
func (m *Model) Predict(ctx context.Context, inputs []oip.Tensor) ([]oip.Tensor, error) {
	return m.PredictOutputs(ctx, inputs, nil)
}

// PredictOutputs runs the graph on inputs, matched to the graph's inputs by
// name, and returns the outputs named in outputs (all of them when it is
// empty) in the graph's order. Only the nodes those outputs need run, in a
// session of a pruned copy of the graph (subsets.go), unless that session
// does not fit: the whole graph then runs. Every input is still required
// and checked. Numeric inputs are converted to the input's declared type
// (an integer input takes whole numbers in its range only). Problems with
// the inputs are returned as *engine.InputError; a failure of ONNX Runtime
// during the run carries its message and the inputs' names and shapes. When ctx ends during the run,
// ONNX Runtime is told to stop and PredictOutputs returns ctx's error.
func (m *Model) PredictOutputs(ctx context.Context, inputs []oip.Tensor, outputs []string) (out []oip.Tensor, err error) {
	defer func() {
		// A bug here must not take the replica down nor answer with a
		// Go runtime message alone.
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("onnx model %s: ebb's onnx engine failed unexpectedly (%v) on inputs %s; please report this with the model", m.path, p, describeTensors(inputs))
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sel, err := m.selectOutputs(outputs)
	if err != nil {
		return nil, err
	}
	ordered, err := m.orderInputs(inputs)
	if err != nil {
		return nil, err
	}

	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.sess == nil {
		return nil, fmt.Errorf("onnx model %s is closed", m.path)
	}
	var sub *subset
	if len(sel) < len(m.outputs) {
		if sub, err = m.subsets.acquire(ctx, m, sel); err != nil {
			return nil, err
		}
		if sub != nil {
			defer m.subsets.release(sub)
		}
	}
	var vs values
	defer vs.release()
	for i, spec := range m.inputs {
		if err := vs.add(spec.elem, ordered[i]); err != nil {
			var ie *engine.InputError
			if errors.As(err, &ie) {
				return nil, err
			}
			return nil, fmt.Errorf("onnx model %s: input %q: %w", m.path, spec.name, err)
		}
	}
	sess, in, outs := m.sess, vs.v, sel
	if sub != nil {
		// The pruned session has the outputs of sel alone, and maybe
		// fewer inputs.
		sess, in, outs = sub.sess, make([]*cValue, len(sub.inputs)), make([]int, len(sel))
		for i, j := range sub.inputs {
			in[i] = vs.v[j]
		}
		for i := range outs {
			outs[i] = i
		}
	}
	values, err := m.run(ctx, sess, in, outs)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, m.runError(err, ordered)
	}
	defer releaseOutputs(values)
	result := make([]oip.Tensor, len(sel))
	for i, j := range sel {
		t, err := readValue(m.outputs[j].name, values[i])
		if err != nil {
			return nil, fmt.Errorf("onnx model %s: %w", m.path, err)
		}
		result[i] = t
	}
	return result, nil
}

// selectOutputs returns the indexes, in the graph's order, of the outputs
// named (all when names is empty).
func (m *Model) selectOutputs(names []string) ([]int, error) {
	sel := make([]int, 0, len(m.outputs))
	for i, o := range m.outputs {
		if len(names) == 0 || slices.Contains(names, o.name) {
			sel = append(sel, i)
		}
	}
	for _, name := range names {
		if !slices.ContainsFunc(m.outputs, func(o tensorSpec) bool { return o.name == name }) {
			return nil, inputError("unknown output %q: the model has outputs %s", name, describe(m.outputs))
		}
	}
	return sel, nil
}

// runError explains a failed run: ONNX Runtime's message (which names the
// node that failed) with the inputs it ran on.
func (m *Model) runError(err error, inputs []oip.Tensor) error {
	return fmt.Errorf("onnx model %s: ONNX Runtime failed on inputs %s: %v", m.path, describeTensors(inputs), err)
}

// run runs sess, terminating it if ctx ends meanwhile.
func (m *Model) run(ctx context.Context, sess *session, in []*cValue, outs []int) ([]*cValue, error) {
	if ctx.Done() == nil {
		return sess.run(in, outs, nil)
	}
	ro, err := newRunOptions()
	if err != nil {
		return nil, fmt.Errorf("creating run options: %w", err)
	}
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(terminated)
		ro.terminate()
	})
	defer func() {
		if !stop() {
			<-terminated // terminate is using ro.
		}
		ro.release()
	}()
	return sess.run(in, outs, ro.ptr)
}

// orderInputs checks inputs against the graph and returns them in the
// graph's order, each converted to its input's datatype.
func (m *Model) orderInputs(inputs []oip.Tensor) ([]oip.Tensor, error) {
	byName := make(map[string]int, len(inputs))
	for i, t := range inputs {
		if _, dup := byName[t.Name]; dup {
			return nil, inputError("input %q appears more than once", t.Name)
		}
		byName[t.Name] = i
	}
	out := make([]oip.Tensor, len(m.inputs))
	for i, spec := range m.inputs {
		j, ok := byName[spec.name]
		if !ok {
			return nil, inputError("missing input %q: the model takes %s", spec.name, describe(m.inputs))
		}
		delete(byName, spec.name)
		t, err := prepare(spec, inputs[j])
		if err != nil {
			return nil, err
		}
		out[i] = t
	}
	for name := range byName {
		return nil, inputError("unknown input %q: the model takes %s", name, describe(m.inputs))
	}
	return out, nil
}

func describe(specs []tensorSpec) string {
	if len(specs) == 0 {
		return "none"
	}
	parts := make([]string, len(specs))
	for i, s := range specs {
		shape := "any shape"
		if s.shape != nil {
			shape = fmt.Sprint(s.shape)
		}
		parts[i] = fmt.Sprintf("%q (%s %s)", s.name, s.datatype, shape)
	}
	return strings.Join(parts, ", ")
}

// describeTensors lists tensors as `"x" (FP32 [2 3])`, for messages.
func describeTensors(ts []oip.Tensor) string {
	if len(ts) == 0 {
		return "(none)"
	}
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = fmt.Sprintf("%q (%s %v)", t.Name, t.Datatype, t.Shape)
	}
	return strings.Join(parts, ", ")
}

// IntraOpThreads returns how many threads ONNX Runtime may use inside one
// operator of this model (see Options.IntraOpThreads).
func (m *Model) IntraOpThreads() int { return m.intraOp }

// Close releases the sessions. Predict calls after Close fail; Close waits
// for those in flight.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sess == nil {
		return nil
	}
	m.subsets.close()
	m.sess.release()
	m.sess = nil
	return nil
}
