package control

import (
	"slices"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/resolve"
	"github.com/ebb-ml/ebb/internal/serving"
)

// platforms maps an engine to the OIP v2 platform its replicas report (the
// Platform constants of engine/trees and engine/onnx); other engines report
// their own name.
var platforms = map[string]string{
	"trees": "ebb_trees",
	"onnx":  "onnxruntime_onnx",
}

// registryMetadata returns the OIP v2 metadata of deployment name while it
// runs run, from the registry version's signature, so the gateway can
// answer GET /v2/models/{name} without waking a replica; nil when run names
// no registry version or its signature is empty.
func registryMetadata(name string, run *resolve.Resolution) *oip.ModelMetadata {
	sig := run.Signature
	if sig == nil || (len(sig.Inputs) == 0 && len(sig.Outputs) == 0) {
		return nil
	}
	m := &oip.ModelMetadata{
		Name:     name,
		Platform: run.Spec.Engine,
		Inputs:   slices.Clone(sig.Inputs),
		Outputs:  slices.Clone(sig.Outputs),
	}
	if p, ok := platforms[run.Spec.Engine]; ok {
		m.Platform = p
	}
	if v := serving.OIPVersion(run.Version); v != "" {
		m.Versions = []string{v}
	}
	if m.Inputs == nil {
		m.Inputs = []oip.TensorMetadata{}
	}
	if m.Outputs == nil {
		m.Outputs = []oip.TensorMetadata{}
	}
	return m
}
