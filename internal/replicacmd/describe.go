package replicacmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/sibling"
	"github.com/ebb-ml/ebb/internal/tailbuf"
)

// ONNXBinary is the replica binary built with cgo (cmd/ebb-onnx): engine
// onnx runs ONNX Runtime, a C library, so a build without cgo (the lean
// ebb-replica, and ebb as make build builds it) hands onnx to it.
const ONNXBinary = "ebb-onnx"

// ServesONNX reports whether this build runs engine onnx in its own
// process (it has cgo); else ONNXCommand's binary does.
func ServesONNX() bool { return cgoBuild }

// ONNXCommand returns the command line of the replica binary that serves
// engine onnx for a build without cgo: the ebb-onnx beside this executable,
// else the one on PATH.
func ONNXCommand() ([]string, error) {
	path, err := sibling.Find(ONNXBinary)
	if err != nil {
		return nil, fmt.Errorf("%w: engine onnx runs in %s (cmd/ebb-onnx, built with cgo), which make build puts beside ebb", err, ONNXBinary)
	}
	return []string{path}, nil
}

// Signature is a model's inputs and outputs, as --describe prints them.
type Signature struct {
	Inputs  []oip.TensorMetadata `json:"inputs,omitempty"`
	Outputs []oip.TensorMetadata `json:"outputs,omitempty"`
}

// describe loads the model of f, as a replica would, and writes its
// signature to w as one line of JSON (--describe).
func describe(w io.Writer, f replicaFlags) error {
	if f.model == "" && f.engine != "echo" {
		return errors.New("--describe needs --model: the path of the model file")
	}
	m, err := LoadModel(f.engine, f.model, onnxruntimeLib)
	if err != nil {
		return err
	}
	if c, ok := m.(io.Closer); ok {
		defer c.Close()
	}
	md := m.Metadata()
	return json.NewEncoder(w).Encode(Signature{Inputs: md.Inputs, Outputs: md.Outputs})
}

// maxDescribeError bounds the bytes of the error Describe passes on: an
// error quoting a model file is not passed on whole.
const maxDescribeError = 2 << 10

// describeTimeout bounds Describe: loading a model of gigabytes takes
// seconds, not minutes.
const describeTimeout = 2 * time.Minute

// Describe loads the model at path with engine in another process, the
// replica command argv (ONNXCommand's), and returns its signature. The
// model's native runtime runs there: a model that crashes it fails this
// call, not the caller.
func Describe(ctx context.Context, argv []string, engine, path string) (Signature, error) {
	ctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	args := append(append([]string{}, argv[1:]...), "--describe", "--engine", engine, "--model", path)
	cmd := exec.CommandContext(ctx, argv[0], args...)
	var stdout bytes.Buffer
	stderr := tailbuf.New(1, maxDescribeError) // its last line is its error ("error: ...")
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimPrefix(strings.TrimSpace(stderr.String()), "error: ")
		msg = strings.TrimPrefix(msg, "engine "+engine+": ") // LoadModel's, which the caller adds its own way
		switch {
		case ctx.Err() != nil:
			return Signature{}, fmt.Errorf("%s did not load the model within %v", argv[0], describeTimeout)
		case msg == "":
			return Signature{}, fmt.Errorf("%s failed loading the model: %w", argv[0], err)
		}
		return Signature{}, errors.New(msg)
	}
	var s Signature
	if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
		return Signature{}, fmt.Errorf("%s --describe printed no signature: %w", argv[0], err)
	}
	return s, nil
}
