//go:build cgo

package onnx

/*
#include <stdint.h>
#include <stdlib.h>

// Opaque types of onnxruntime_c_api.h.
typedef struct OrtStatus OrtStatus;
typedef struct OrtEnv OrtEnv;
typedef struct OrtSession OrtSession;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtValue OrtValue;
typedef struct OrtRunOptions OrtRunOptions;
typedef struct OrtMemoryInfo OrtMemoryInfo;
typedef struct OrtTypeInfo OrtTypeInfo;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;

// These are the C functions of github.com/yalue/onnxruntime_go
// (onnxruntime_wrapper.c), one per ONNX Runtime API call, linked into every
// binary that imports that package; they call the API table its
// InitializeEnvironment loaded. Enums are passed as int, which is their
// size and ABI.
extern OrtStatus *CreateOrtEnv(char *name, OrtEnv **env);
extern void ReleaseOrtStatus(OrtStatus *status);
extern const char *GetErrorMessage(OrtStatus *status);
extern void ReleaseOrtSession(OrtSession *session);
extern OrtStatus *SessionGetInputCount(OrtSession *session, size_t *result);
extern OrtStatus *SessionGetOutputCount(OrtSession *session, size_t *result);
extern OrtStatus *SessionGetInputName(OrtSession *session, size_t i, char **name);
extern OrtStatus *SessionGetOutputName(OrtSession *session, size_t i, char **name);
extern OrtStatus *FreeWithDefaultORTAllocator(void *to_free);
extern OrtStatus *SessionGetInputTypeInfo(OrtSession *session, size_t i, OrtTypeInfo **out);
extern OrtStatus *SessionGetOutputTypeInfo(OrtSession *session, size_t i, OrtTypeInfo **out);
extern OrtStatus *CastTypeInfoToTensorInfo(OrtTypeInfo *type_info, OrtTensorTypeAndShapeInfo **out);
extern OrtStatus *GetONNXTypeFromTypeInfo(OrtTypeInfo *info, int *out);
extern void ReleaseTypeInfo(OrtTypeInfo *o);
extern OrtStatus *GetDimensionsCount(const OrtTensorTypeAndShapeInfo *info, size_t *out);
extern OrtStatus *GetDimensions(const OrtTensorTypeAndShapeInfo *info, int64_t *dim_values, size_t dim_values_length);
extern OrtStatus *GetTensorElementType(const OrtTensorTypeAndShapeInfo *info, int *out);
extern void ReleaseTensorTypeAndShapeInfo(OrtTensorTypeAndShapeInfo *input);
extern OrtStatus *CreateOrtMemoryInfo(OrtMemoryInfo **mem_info);
extern OrtStatus *CreateOrtTensorWithShape(void *data, size_t data_size, int64_t *shape, int64_t shape_size, OrtMemoryInfo *mem_info, int dtype, OrtValue **out);
extern OrtStatus *CreateTensorAsOrtValue(int64_t *shape, int64_t shape_size, int dtype, OrtValue **out);
extern OrtStatus *FillStringTensor(OrtValue *v, char **strings, size_t num_strings);
extern void ReleaseOrtValue(OrtValue *value);
extern OrtStatus *RunOrtSessionWithOptions(OrtSession *session, OrtValue **inputs, char **input_names, int input_count, OrtValue **outputs, char **output_names, int output_count, OrtRunOptions *run_options);
extern OrtStatus *CreateRunOptions(OrtRunOptions **o);
extern void ReleaseRunOptions(OrtRunOptions *o);
extern OrtStatus *RunOptionsSetTerminate(OrtRunOptions *o);
extern OrtStatus *GetValueType(OrtValue *v, int *out);
extern OrtStatus *GetTensorTypeAndShape(const OrtValue *value, OrtTensorTypeAndShapeInfo **out);
extern OrtStatus *GetTensorMutableData(OrtValue *value, void **out);
extern OrtStatus *GetStringTensorDataLength(OrtValue *v, size_t *length);
extern OrtStatus *GetStringTensorContent(OrtValue *v, void *data_buffer, size_t data_size, size_t *offsets_buffer, size_t offsets_length);

// ebb_status_message copies a status's message and releases the status.
static char *ebb_status_message(OrtStatus *st) {
	const char *m = GetErrorMessage(st);
	size_t n = 0;
	while (m[n]) n++;
	char *out = malloc(n + 1);
	if (out) {
		for (size_t i = 0; i <= n; i++) out[i] = m[i];
	}
	ReleaseOrtStatus(st);
	return out;
}

// ebb_info describes a tensor's type info: its element type and up to cap
// dimensions, and how many it has.
static OrtStatus *ebb_info(const OrtTensorTypeAndShapeInfo *info, int *elem, int64_t *dims, size_t cap, size_t *ndims) {
	OrtStatus *st = GetTensorElementType(info, elem);
	if (st) return st;
	st = GetDimensionsCount(info, ndims);
	if (st) return st;
	if (*ndims == 0) return NULL;
	return GetDimensions(info, dims, *ndims < cap ? *ndims : cap);
}

// ebb_io_info describes input (output == 0) or output i of a session: its
// name (to free with FreeWithDefaultORTAllocator), ONNX type, and for a
// tensor its element type and dimensions.
static OrtStatus *ebb_io_info(OrtSession *s, int output, size_t i, char **name, int *onnx_type, int *elem, int64_t *dims, size_t cap, size_t *ndims) {
	OrtStatus *st = output ? SessionGetOutputName(s, i, name) : SessionGetInputName(s, i, name);
	if (st) return st;
	OrtTypeInfo *ti = NULL;
	st = output ? SessionGetOutputTypeInfo(s, i, &ti) : SessionGetInputTypeInfo(s, i, &ti);
	if (st) return st;
	st = GetONNXTypeFromTypeInfo(ti, onnx_type);
	if (!st && *onnx_type == 1) {
		OrtTensorTypeAndShapeInfo *tinfo = NULL;
		st = CastTypeInfoToTensorInfo(ti, &tinfo);
		if (!st) st = ebb_info(tinfo, elem, dims, cap, ndims);
	}
	ReleaseTypeInfo(ti);
	return st;
}

// ebb_value_info describes an output value of a run: its ONNX type and,
// for a tensor, its element type, dimensions and data.
static OrtStatus *ebb_value_info(OrtValue *v, int *onnx_type, int *elem, int64_t *dims, size_t cap, size_t *ndims, void **data) {
	OrtStatus *st = GetValueType(v, onnx_type);
	if (st || *onnx_type != 1) return st;
	OrtTensorTypeAndShapeInfo *info = NULL;
	st = GetTensorTypeAndShape(v, &info);
	if (st) return st;
	st = ebb_info(info, elem, dims, cap, ndims);
	ReleaseTensorTypeAndShapeInfo(info);
	if (st || *elem == 8) return st; // strings have no flat data
	return GetTensorMutableData(v, data);
}

// ebb_fill_strings fills a string tensor from n NUL-terminated strings laid
// end to end in buf; *oom is set when memory ran out first.
static OrtStatus *ebb_fill_strings(OrtValue *v, char *buf, size_t n, int *oom) {
	char **strs = malloc((n ? n : 1) * sizeof(char *));
	*oom = strs == NULL;
	if (!strs) return NULL;
	for (size_t i = 0; i < n; i++) {
		strs[i] = buf;
		while (*buf) buf++;
		buf++;
	}
	OrtStatus *st = FillStringTensor(v, strs, n);
	free(strs);
	return st;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"unsafe"

	"github.com/ebb-ml/ebb/internal/oip"
)

// ONNX element types (onnx.proto's TensorProto.DataType) and ONNX value
// types.
const (
	elemFloat    = 1
	elemUint8    = 2
	elemInt8     = 3
	elemUint16   = 4
	elemInt16    = 5
	elemInt32    = 6
	elemInt64    = 7
	elemString   = 8
	elemBool     = 9
	elemFloat16  = 10
	elemDouble   = 11
	elemUint32   = 12
	elemUint64   = 13
	elemBFloat16 = 16

	onnxTensor = 1
)

// oipDatatypes maps the element types ebb serves to OIP datatypes.
var oipDatatypes = map[int]string{
	elemFloat: oip.FP32, elemUint8: oip.UINT8, elemInt8: oip.INT8, elemUint16: oip.UINT16,
	elemInt16: oip.INT16, elemInt32: oip.INT32, elemInt64: oip.INT64, elemString: oip.BYTES,
	elemBool: oip.BOOL, elemFloat16: oip.FP16, elemDouble: oip.FP64, elemUint32: oip.UINT32,
	elemUint64: oip.UINT64, elemBFloat16: oip.BF16,
}

// elemTypes maps OIP datatypes to ONNX element types.
var elemTypes = func() map[string]int {
	m := make(map[string]int, len(oipDatatypes))
	for e, dt := range oipDatatypes {
		m[dt] = e
	}
	return m
}()

// elementNames are ONNX's names of element types, for messages.
var elementNames = map[int]string{
	0: "undefined", 1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
	8: "string", 9: "bool", 10: "float16", 11: "double", 12: "uint32", 13: "uint64", 14: "complex64",
	15: "complex128", 16: "bfloat16", 17: "float8e4m3fn", 18: "float8e4m3fnuz", 19: "float8e5m2",
	20: "float8e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4e2m1",
}

func elementName(e int) string {
	if n, ok := elementNames[e]; ok {
		return n
	}
	return fmt.Sprintf("element type %d", e)
}

// onnxTypeNames name the kinds of ONNX values, for messages.
var onnxTypeNames = map[int]string{0: "value of unknown type", 1: "tensor", 2: "sequence", 3: "map", 4: "opaque value", 5: "sparse tensor", 6: "optional"}

// maxRank bounds the dimensions read for a tensor.
const maxRank = 64

// status turns an OrtStatus into an error carrying ONNX Runtime's message,
// releasing it; nil stays nil.
func status(st *C.OrtStatus) error {
	if st == nil {
		return nil
	}
	m := C.ebb_status_message(st)
	if m == nil {
		return errors.New("ONNX Runtime failed (its message could not be copied)")
	}
	defer C.free(unsafe.Pointer(m))
	return errors.New(C.GoString(m))
}

// cEnv and memInfo are created once per process, by initEnvironment after
// the library is loaded.
var (
	cEnv    *C.OrtEnv
	memInfo *C.OrtMemoryInfo
)

// initC creates the process's environment handle (ONNX Runtime's
// environment is a process-wide singleton: this returns the one the
// library's loader created) and the CPU memory description of input
// tensors.
func initC() error {
	name := C.CString("ebb")
	defer C.free(unsafe.Pointer(name))
	if err := status(C.CreateOrtEnv(name, &cEnv)); err != nil {
		return fmt.Errorf("creating the ONNX Runtime environment: %w", err)
	}
	if err := status(C.CreateOrtMemoryInfo(&memInfo)); err != nil {
		return fmt.Errorf("creating the ONNX Runtime memory info: %w", err)
	}
	return nil
}

// session is an ONNX Runtime session with the C strings of its input and
// output names, allocated once.
type session struct {
	ptr      *C.OrtSession
	inNames  []*C.char
	outNames []*C.char
}

// ioInfo is a session input or output as ONNX Runtime describes it.
type ioInfo struct {
	name     string
	onnxType int
	elem     int
	dims     []int64
}

// io describes the session's inputs (output false) or outputs, and keeps
// their names for runs.
func (s *session) io(output bool) ([]ioInfo, error) {
	var n C.size_t
	var err error
	if output {
		err = status(C.SessionGetOutputCount(s.ptr, &n))
	} else {
		err = status(C.SessionGetInputCount(s.ptr, &n))
	}
	if err != nil {
		return nil, err
	}
	out := make([]ioInfo, int(n))
	names := make([]*C.char, int(n))
	flag := C.int(0)
	if output {
		flag = 1
	}
	var dims [maxRank]C.int64_t
	for i := range out {
		var name *C.char
		var onnxType, elem C.int
		var ndims C.size_t
		err := status(C.ebb_io_info(s.ptr, flag, C.size_t(i), &name, &onnxType, &elem, &dims[0], maxRank, &ndims))
		if name != nil {
			out[i].name = C.GoString(name)
			names[i] = C.CString(out[i].name)
			C.FreeWithDefaultORTAllocator(unsafe.Pointer(name))
		}
		if err != nil {
			freeNames(names)
			return nil, err
		}
		if int(ndims) > maxRank {
			freeNames(names)
			return nil, fmt.Errorf("%q has %d dimensions, more than ebb's limit of %d", out[i].name, ndims, maxRank)
		}
		out[i].onnxType, out[i].elem = int(onnxType), int(elem)
		out[i].dims = make([]int64, int(ndims))
		for j := range out[i].dims {
			out[i].dims[j] = int64(dims[j])
		}
	}
	if output {
		s.outNames = names
	} else {
		s.inNames = names
	}
	return out, nil
}

func freeNames(names []*C.char) {
	for _, n := range names {
		if n != nil {
			C.free(unsafe.Pointer(n))
		}
	}
}

// release frees the session; it must not be used after.
func (s *session) release() {
	C.ReleaseOrtSession(s.ptr)
	freeNames(s.inNames)
	freeNames(s.outNames)
	s.ptr, s.inNames, s.outNames = nil, nil, nil
}

// values are the ONNX Runtime values of one run's inputs; their Go data
// stays pinned until release.
type values struct {
	v      []*C.OrtValue
	pinner runtime.Pinner
}

func (vs *values) release() {
	for _, v := range vs.v {
		if v != nil {
			C.ReleaseOrtValue(v)
		}
	}
	vs.pinner.Unpin()
}

// add appends a value for t, whose Data already has the Go type of elem's
// datatype. Numeric data is used in place, pinned; strings are copied into
// ONNX Runtime's memory.
func (vs *values) add(elem int, t oip.Tensor) error {
	var shapePtr *C.int64_t
	if len(t.Shape) > 0 {
		shapePtr = (*C.int64_t)(unsafe.Pointer(&t.Shape[0]))
	}
	var v *C.OrtValue
	if elem == elemString {
		if err := status(C.CreateTensorAsOrtValue(shapePtr, C.int64_t(len(t.Shape)), elemString, &v)); err != nil {
			return err
		}
		vs.v = append(vs.v, v)
		return fillStrings(v, t)
	}
	ptr, size := dataPointer(t.Data)
	if ptr != nil {
		vs.pinner.Pin(ptr)
	}
	if err := status(C.CreateOrtTensorWithShape(ptr, C.size_t(size), shapePtr, C.int64_t(len(t.Shape)), memInfo, C.int(elem), &v)); err != nil {
		return err
	}
	vs.v = append(vs.v, v)
	return nil
}

// fillStrings copies t's strings into the string tensor v. ONNX Runtime
// takes them NUL-terminated, so a string holding a NUL byte is refused.
func fillStrings(v *C.OrtValue, t oip.Tensor) error {
	d := t.Data.([]string)
	size := 0
	for i, s := range d {
		if strings.IndexByte(s, 0) >= 0 {
			return inputError("input %q: BYTES element %d holds a NUL byte, which ONNX Runtime string tensors cannot take", t.Name, i)
		}
		size += len(s) + 1
	}
	buf := C.malloc(C.size_t(max(size, 1)))
	if buf == nil {
		return errors.New("out of memory copying strings")
	}
	defer C.free(buf)
	b := unsafe.Slice((*byte)(buf), max(size, 1))
	off := 0
	for _, s := range d {
		off += copy(b[off:], s)
		b[off] = 0
		off++
	}
	var oom C.int
	if err := status(C.ebb_fill_strings(v, (*C.char)(buf), C.size_t(len(d)), &oom)); err != nil {
		return err
	}
	if oom != 0 {
		return errors.New("out of memory copying strings")
	}
	return nil
}

// dataPointer returns the address and byte size of numeric or BOOL data;
// nil for no elements.
func dataPointer(data any) (unsafe.Pointer, int) {
	switch d := data.(type) {
	case []bool:
		return slicePointer(d)
	case []int8:
		return slicePointer(d)
	case []int16:
		return slicePointer(d)
	case []int32:
		return slicePointer(d)
	case []int64:
		return slicePointer(d)
	case []uint8:
		return slicePointer(d)
	case []uint16:
		return slicePointer(d)
	case []uint32:
		return slicePointer(d)
	case []uint64:
		return slicePointer(d)
	case []oip.Float16:
		return slicePointer(d)
	case []oip.BFloat16:
		return slicePointer(d)
	case []float32:
		return slicePointer(d)
	case []float64:
		return slicePointer(d)
	}
	return nil, 0
}

func slicePointer[T any](d []T) (unsafe.Pointer, int) {
	if len(d) == 0 {
		return nil, 0
	}
	var zero T
	return unsafe.Pointer(&d[0]), len(d) * int(unsafe.Sizeof(zero))
}

// run runs the session on inputs (in the order of the session's inputs)
// and returns the values of the outputs at indexes outs, which the caller
// must release with releaseOutputs. ro, when not nil, lets the run be
// terminated.
func (s *session) run(inputs []*C.OrtValue, outs []int, ro *C.OrtRunOptions) ([]*C.OrtValue, error) {
	out := make([]*C.OrtValue, len(outs))
	names := make([]*C.char, len(outs))
	for i, j := range outs {
		names[i] = s.outNames[j]
	}
	var inPtr **C.OrtValue
	var inNames **C.char
	if len(inputs) > 0 {
		inPtr, inNames = &inputs[0], &s.inNames[0]
	}
	err := status(C.RunOrtSessionWithOptions(s.ptr, inPtr, inNames, C.int(len(inputs)), &out[0], &names[0], C.int(len(outs)), ro))
	if err != nil {
		releaseOutputs(out)
		return nil, err
	}
	return out, nil
}

func releaseOutputs(out []*C.OrtValue) {
	for _, v := range out {
		if v != nil {
			C.ReleaseOrtValue(v)
		}
	}
}

// runOptions lets a run be terminated from another goroutine.
type runOptions struct{ ptr *C.OrtRunOptions }

func newRunOptions() (runOptions, error) {
	var ro runOptions
	err := status(C.CreateRunOptions(&ro.ptr))
	return ro, err
}

func (ro runOptions) terminate() { status(C.RunOptionsSetTerminate(ro.ptr)) }

func (ro runOptions) release() { C.ReleaseRunOptions(ro.ptr) }

// readValue copies an output value of a run into a tensor named name.
func readValue(name string, v *C.OrtValue) (oip.Tensor, error) {
	var onnxType, elem C.int
	var dims [maxRank]C.int64_t
	var ndims C.size_t
	var data unsafe.Pointer
	if err := status(C.ebb_value_info(v, &onnxType, &elem, &dims[0], maxRank, &ndims, &data)); err != nil {
		return oip.Tensor{}, fmt.Errorf("output %q: %w", name, err)
	}
	if onnxType != onnxTensor {
		return oip.Tensor{}, fmt.Errorf("output %q is a %s, not a tensor", name, onnxTypeNames[int(onnxType)])
	}
	if int(ndims) > maxRank {
		return oip.Tensor{}, fmt.Errorf("output %q has %d dimensions, more than ebb's limit of %d", name, ndims, maxRank)
	}
	dt, ok := oipDatatypes[int(elem)]
	if !ok {
		return oip.Tensor{}, fmt.Errorf("output %q has element type %s, which ebb cannot serve", name, elementName(int(elem)))
	}
	t := oip.Tensor{Name: name, Datatype: dt, Shape: make([]int64, int(ndims))}
	for i := range t.Shape {
		t.Shape[i] = int64(dims[i])
	}
	n, err := oip.Elements(t.Shape)
	if err != nil {
		return t, fmt.Errorf("output %q: %w", name, err)
	}
	if dt == oip.BYTES {
		t.Data, err = readStrings(v, n)
		if err != nil {
			return t, fmt.Errorf("output %q: reading strings: %w", name, err)
		}
		return t, nil
	}
	var raw []byte
	if n > 0 {
		if data == nil {
			return t, fmt.Errorf("output %q: ONNX Runtime gave no data for %d elements", name, n)
		}
		raw = unsafe.Slice((*byte)(data), n*oip.ElementSize(dt))
	}
	out, err := oip.FromRaw(dt, t.Shape, raw)
	if err != nil {
		return t, fmt.Errorf("output %q: %w", name, err)
	}
	t.Data = out.Data
	return t, nil
}

// readStrings copies the n strings of a string tensor.
func readStrings(v *C.OrtValue, n int) ([]string, error) {
	out := make([]string, n)
	if n == 0 {
		return out, nil
	}
	var size C.size_t
	if err := status(C.GetStringTensorDataLength(v, &size)); err != nil {
		return nil, err
	}
	if size == 0 {
		return out, nil
	}
	buf := make([]byte, int(size))
	offsets := make([]C.size_t, n)
	if err := status(C.GetStringTensorContent(v, unsafe.Pointer(&buf[0]), size, &offsets[0], C.size_t(n))); err != nil {
		return nil, err
	}
	for i := range out {
		end := len(buf)
		if i+1 < n {
			end = int(offsets[i+1])
		}
		out[i] = string(buf[offsets[i]:end])
	}
	return out, nil
}

// cValue is an ONNX Runtime value, for the files of this package that do
// not use cgo themselves.
type cValue = C.OrtValue
