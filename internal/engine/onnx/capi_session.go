//go:build cgo

package onnx

/*
#include <stdlib.h>

typedef struct OrtStatus OrtStatus;
typedef struct OrtEnv OrtEnv;
typedef struct OrtSession OrtSession;
typedef struct OrtSessionOptions OrtSessionOptions;

// C functions of github.com/yalue/onnxruntime_go, as in capi.go.
extern OrtStatus *CreateSessionOptions(OrtSessionOptions **o);
extern void ReleaseSessionOptions(OrtSessionOptions *o);
extern OrtStatus *SetIntraOpNumThreads(OrtSessionOptions *o, int n);
extern OrtStatus *SetInterOpNumThreads(OrtSessionOptions *o, int n);
extern OrtStatus *AddSessionConfigEntry(OrtSessionOptions *o, char *key, char *value);
extern OrtStatus *CreateSessionFromFile(char *model_path, OrtEnv *env, OrtSession **out, OrtSessionOptions *options);
extern OrtStatus *CreateSession(void *model_data, size_t model_data_length, OrtEnv *env, OrtSession **out, OrtSessionOptions *options);
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// externalDataDir is ONNX Runtime's session option
// (kOrtSessionOptionsModelExternalInitializersFileFolderPath) naming where
// the external data files of a model loaded from memory are.
const externalDataDir = "session.model_external_initializers_file_folder_path"

// sessionOptions returns options for intraOp (and, when positive, interOp)
// threads and, when they are not empty, the config entries kv (key, value,
// ...); the caller releases them.
func sessionOptions(intraOp, interOp int, kv ...string) (*C.OrtSessionOptions, error) {
	var opts *C.OrtSessionOptions
	if err := status(C.CreateSessionOptions(&opts)); err != nil {
		return nil, fmt.Errorf("creating session options: %w", err)
	}
	fail := func(err error) (*C.OrtSessionOptions, error) {
		C.ReleaseSessionOptions(opts)
		return nil, err
	}
	if err := status(C.SetIntraOpNumThreads(opts, C.int(intraOp))); err != nil {
		return fail(fmt.Errorf("setting %d intra-op threads: %w", intraOp, err))
	}
	if interOp > 0 {
		if err := status(C.SetInterOpNumThreads(opts, C.int(interOp))); err != nil {
			return fail(fmt.Errorf("setting %d inter-op threads: %w", interOp, err))
		}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		k, v := C.CString(kv[i]), C.CString(kv[i+1])
		err := status(C.AddSessionConfigEntry(opts, k, v))
		C.free(unsafe.Pointer(k))
		C.free(unsafe.Pointer(v))
		if err != nil {
			return fail(fmt.Errorf("setting session option %s: %w", kv[i], err))
		}
	}
	return opts, nil
}

// newSession opens the model at path with intraOp (and, when positive,
// interOp) threads.
func newSession(path string, intraOp, interOp int) (*session, error) {
	opts, err := sessionOptions(intraOp, interOp)
	if err != nil {
		return nil, err
	}
	defer C.ReleaseSessionOptions(opts)
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	s := &session{}
	if err := status(C.CreateSessionFromFile(cpath, cEnv, &s.ptr, opts)); err != nil {
		return nil, fmt.Errorf("not a model ONNX Runtime can load: %w", err)
	}
	return s, nil
}

// newSessionFromModel opens the serialized model, whose external data
// files (if any) are in dir, as newSession does. ONNX Runtime does not keep
// model after it returns.
func newSessionFromModel(model []byte, dir string, intraOp, interOp int) (*session, error) {
	if len(model) == 0 {
		return nil, errors.New("empty model")
	}
	opts, err := sessionOptions(intraOp, interOp, externalDataDir, dir)
	if err != nil {
		return nil, err
	}
	defer C.ReleaseSessionOptions(opts)
	s := &session{}
	if err := status(C.CreateSession(unsafe.Pointer(&model[0]), C.size_t(len(model)), cEnv, &s.ptr, opts)); err != nil {
		return nil, err
	}
	return s, nil
}
