package main

import (
	"runtime"
	"runtime/debug"

	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/replicacmd"
)

// version and commit may be set at build time with
// -ldflags "-X main.version=v1.2.3 -X main.commit=$(git rev-parse HEAD)".
// Left unset, they come from what the go command stamped into the binary
// (see stampFrom): `go build` and `go install` in a clone record the
// module's version (a tag, or a pseudo-version naming the commit) and the
// commit itself.
var (
	version = "dev"
	commit  = ""
)

func init() {
	bi, ok := debug.ReadBuildInfo()
	s := stampFrom(bi, ok, version, commit)
	version, commit = s.Version, s.Commit
}

// buildStamp is what `ebb version` says of this binary.
type buildStamp struct {
	Version string `json:"version"`
	// Commit is the VCS revision the binary was built from; Modified says
	// the work tree had uncommitted changes then; CommitTime is the
	// commit's time (RFC 3339). All empty when the build did not record
	// them (go run and go test record none).
	Commit     string `json:"commit,omitempty"`
	CommitTime string `json:"commitTime,omitempty"`
	Modified   bool   `json:"modified,omitempty"`
	GoVersion  string `json:"goVersion"`
	Platform   string `json:"platform"`
	// Cgo says whether the binary was built with cgo, which engine onnx
	// needs.
	Cgo     bool          `json:"cgo"`
	Engines []engineStamp `json:"engines"`
}

// engineStamp is one engine as this binary has it.
type engineStamp struct {
	Name string `json:"name"`
	// In says whether replicas of this ebb can run the engine.
	In bool `json:"in"`
	// Note says what the engine needs, or why it is not in.
	Note string `json:"note,omitempty"`
}

// stampFrom reads the build stamp from the binary's build information
// (ok is false when it has none) and the values -ldflags set: a version
// other than "dev" and a commit given with -ldflags win over what the go
// command recorded.
func stampFrom(bi *debug.BuildInfo, ok bool, ldVersion, ldCommit string) buildStamp {
	s := buildStamp{Version: ldVersion, Commit: ldCommit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if !ok || bi == nil {
		if s.Version == "" {
			s.Version = "dev"
		}
		return s
	}
	if bi.GoVersion != "" {
		s.GoVersion = bi.GoVersion
	}
	if v := bi.Main.Version; (s.Version == "" || s.Version == "dev") && v != "" && v != "(devel)" {
		s.Version = v
	}
	if s.Version == "" {
		s.Version = "dev"
	}
	var revision string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			revision = kv.Value
		case "vcs.time":
			s.CommitTime = kv.Value
		case "vcs.modified":
			s.Modified = kv.Value == "true"
		}
	}
	switch {
	case s.Commit == "":
		s.Commit = revision
	case revision != "" && revision != s.Commit:
		// -ldflags named another commit than the work tree's: what the
		// work tree recorded does not describe it.
		s.CommitTime, s.Modified = "", false
	}
	return s
}

// currentStamp is the stamp of this binary, with its engines.
func currentStamp() buildStamp {
	bi, ok := debug.ReadBuildInfo()
	s := stampFrom(bi, ok, version, commit)
	s.Cgo = cgoBuild
	var onnxBinary string
	if !cgoBuild {
		if argv, err := replicacmd.ONNXCommand(); err == nil {
			onnxBinary = argv[0]
		}
	}
	s.Engines = engines(cgoBuild, onnxBinary, onnx.FindLibrary)
	return s
}

// engines lists the engines of a build with or without cgo; onnxBinary is
// the ebb-onnx that serves engine onnx for a build without cgo (empty:
// none found), and findONNX finds the ONNX Runtime library
// (onnx.FindLibrary).
func engines(cgo bool, onnxBinary string, findONNX func(string) (string, error)) []engineStamp {
	es := []engineStamp{
		{Name: "trees", In: true},
		{Name: "echo", In: true},
		{Name: "python", In: true, Note: "runs the model's Python interpreter"},
		{Name: "http", In: true, Note: "fronts the model's own OIP v2 server"},
	}
	o := engineStamp{Name: "onnx", In: cgo || onnxBinary != ""}
	var where string
	if !cgo {
		where = "in " + onnxBinary + ": "
	}
	switch lib, err := findONNX(""); {
	case !o.In:
		o.Note = "not in: this ebb was built without cgo (CGO_ENABLED=0) and no " + replicacmd.ONNXBinary + " is beside it or on PATH; build both with make build"
	case err != nil:
		o.Note = where + "ONNX Runtime " + onnx.LibraryVersion + " not found: install it with hack/install-onnxruntime.sh, or give ebb up --onnxruntime-lib"
	default:
		o.Note = where + "ONNX Runtime at " + lib
	}
	return append(es, o)
}
