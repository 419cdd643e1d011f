package registry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// fileArtifacts is a content-addressed artifact store in a directory, as
// internal/artifact's file:// backend is, with deletion.
type fileArtifacts struct {
	dir string

	mu      sync.Mutex
	puts    int
	deleted []string
}

func (a *fileArtifacts) Put(ctx context.Context, r io.Reader) (string, string, int64, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", "", 0, err
	}
	sum := sha256.Sum256(b)
	h := hex.EncodeToString(sum[:])
	p := filepath.Join(a.dir, h)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return "", "", 0, err
	}
	a.mu.Lock()
	a.puts++
	a.mu.Unlock()
	return "file://" + p, h, int64(len(b)), nil
}

func (a *fileArtifacts) Open(ctx context.Context, uri, sum string) (io.ReadCloser, error) {
	b, err := os.ReadFile(strings.TrimPrefix(uri, "file://"))
	if err != nil {
		return nil, err
	}
	got := sha256.Sum256(b)
	if hex.EncodeToString(got[:]) != sum {
		return nil, fmt.Errorf("artifact %s: checksum mismatch", uri)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (a *fileArtifacts) Delete(ctx context.Context, uri string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.deleted = append(a.deleted, uri)
	err := os.Remove(strings.TrimPrefix(uri, "file://"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// jsonValidator stands in for an engine: it loads files whose content is
// {"ok":true} (for a directory: its model.json) and reports a fixed
// signature; anything else fails with an engine-like message.
func jsonValidator(ctx context.Context, engine, path string) (registry.Signature, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return registry.Signature{}, err
	}
	if !bytes.Contains(b, []byte(`"ok":true`)) {
		return registry.Signature{}, fmt.Errorf("%s: not an XGBoost JSON model: missing field learner", filepath.Base(path))
	}
	return testSig, nil
}

var testSig = registry.Signature{
	Inputs:  []oip.TensorMetadata{{Name: "input", Datatype: "FP32", Shape: []int64{-1, 10}}},
	Outputs: []oip.TensorMetadata{{Name: "predict", Datatype: "FP32", Shape: []int64{-1}}},
}

type env struct {
	st  *sqlite.Store
	art *fileArtifacts
	svc *registry.Service
}

func newEnv(t *testing.T, opts registry.Options) *env {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	art := &fileArtifacts{dir: t.TempDir()}
	if opts.Validator == nil {
		opts.Validator = jsonValidator
	}
	return &env{st: st, art: art, svc: registry.NewService(st, art, opts)}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var ctx = context.Background()

func TestPushFile(t *testing.T) {
	e := newEnv(t, registry.Options{})
	file := writeFile(t, t.TempDir(), "model.json", `{"ok":true}`)
	lin := registry.Lineage{DataURI: "s3://d/train.csv", Parameters: map[string]string{"eta": "0.1"},
		Metrics: map[string]float64{"rmse": 50}, CodeCommit: "abc"}
	v, err := e.svc.Push(ctx, registry.PushRequest{Model: "diabetes", Path: file, Lineage: lin,
		Tags: map[string]string{"team": "a"}, CreatedBy: "alice", Alias: "champion"})
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	sum := sha256.Sum256([]byte(`{"ok":true}`))
	want := registry.Version{Model: "diabetes", Version: 1, ArtifactURI: "file://" + filepath.Join(e.art.dir, hex.EncodeToString(sum[:])),
		SHA256: hex.EncodeToString(sum[:]), Size: 11, Engine: "trees", Signature: testSig, Lineage: lin,
		Tags: map[string]string{"team": "a"}, CreatedBy: "alice", State: registry.StateActive,
		CreatedAt: v.CreatedAt, StateChangedAt: v.CreatedAt}
	if diff := cmp.Diff(want, v); diff != "" {
		t.Errorf("Push (-want +got):\n%s", diff)
	}
	got, err := e.svc.ResolveString(ctx, "diabetes@champion")
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if diff := cmp.Diff(v, got); diff != "" {
		t.Errorf("diabetes@champion (-pushed +resolved):\n%s", diff)
	}
	if _, err := e.svc.ResolveString(ctx, "diabetes:2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Resolve(diabetes:2) = %v, want not found", err)
	}
	if _, err := e.svc.ResolveString(ctx, "model.json"); !isInvalid(err) {
		t.Errorf("Resolve(model.json) = %v, want an InvalidError", err)
	}
}

func isInvalid(err error) bool {
	_, ok := errors.AsType[*registry.InvalidError](err)
	return ok
}

func TestPushInvalid(t *testing.T) {
	e := newEnv(t, registry.Options{})
	dir := t.TempDir()
	bad := writeFile(t, dir, "model.json", `{"learner":null}`)
	tests := []struct {
		name    string
		req     registry.PushRequest
		message string
	}{
		{"engine cannot load", registry.PushRequest{Model: "m", Path: bad},
			"engine trees cannot load the model: model.json: not an XGBoost JSON model: missing field learner"},
		{"bad model name", registry.PushRequest{Model: "Bad_Name", Path: bad}, `model name "Bad_Name" must be`},
		{"bad alias", registry.PushRequest{Model: "m", Path: bad, Alias: "Prod!"}, `alias "Prod!" must be`},
		{"missing file", registry.PushRequest{Model: "m", Path: filepath.Join(dir, "nope.json")}, "cannot read the model at"},
		{"unknown engine", registry.PushRequest{Model: "m", Path: writeFile(t, dir, "model.bin", "x")}, "cannot tell which engine"},
		{"no artifact", registry.PushRequest{Model: "m"}, "give either a local artifact path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.Push(ctx, tt.req)
			if !isInvalid(err) || !strings.Contains(err.Error(), tt.message) {
				t.Errorf("Push: got %v, want an InvalidError containing %q", err, tt.message)
			}
		})
	}
	if e.art.puts != 0 {
		t.Errorf("%d artifacts were stored for refused pushes", e.art.puts)
	}
	if ms, _ := e.st.ListModels(ctx, registry.ListOptions{}); len(ms) != 0 {
		t.Errorf("refused pushes created models: %+v", ms)
	}
}

func TestPushDirectory(t *testing.T) {
	e := newEnv(t, registry.Options{})
	dir := t.TempDir()
	writeFile(t, dir, "model.json", `{"ok":true}`)
	writeFile(t, dir, "sub/notes.txt", "hello")
	v, err := e.svc.Push(ctx, registry.PushRequest{Model: "m", Path: dir})
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if v.Packaging != registry.PackagingTar || v.Entry != "model.json" || v.Engine != "trees" {
		t.Errorf("pushed directory: packaging %q entry %q engine %q; want tar, model.json, trees", v.Packaging, v.Entry, v.Engine)
	}
	// The same directory again is the same artifact.
	v2, err := e.svc.Push(ctx, registry.PushRequest{Model: "m", Path: dir})
	if err != nil {
		t.Fatalf("second Push: %v", err)
	}
	if v2.SHA256 != v.SHA256 || v2.Version != 2 {
		t.Errorf("second push: version %d sha %s, want version 2 with the same sha %s", v2.Version, v2.SHA256, v.SHA256)
	}
	// What was stored extracts back to the directory's files.
	rc, err := e.art.Open(ctx, v.ArtifactURI, v.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := t.TempDir()
	if err := registry.ExtractTar(rc, out); err != nil {
		t.Fatalf("ExtractTar: %v", err)
	}
	for name, want := range map[string]string{"model.json": `{"ok":true}`, "sub/notes.txt": "hello"} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || string(b) != want {
			t.Errorf("extracted %s = %q, %v; want %q", name, b, err, want)
		}
	}
	// A stored artifact can be registered again by URI, and is validated.
	v3, err := e.svc.Push(ctx, registry.PushRequest{Model: "other", ArtifactURI: v.ArtifactURI, SHA256: v.SHA256,
		Packaging: registry.PackagingTar, Entry: "model.json", Engine: "trees"})
	if err != nil {
		t.Fatalf("Push by URI: %v", err)
	}
	if v3.Size != v.Size || v3.Signature.Inputs == nil {
		t.Errorf("push by URI: size %d (want %d), signature %+v", v3.Size, v.Size, v3.Signature)
	}
	_, err = e.svc.Push(ctx, registry.PushRequest{Model: "other", ArtifactURI: v.ArtifactURI, SHA256: strings.Repeat("0", 64),
		Packaging: registry.PackagingTar})
	if !isInvalid(err) || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("push by URI with a wrong sha256: %v, want an InvalidError about the checksum", err)
	}
}

func TestConcurrentAliasMoves(t *testing.T) {
	e := newEnv(t, registry.Options{})
	file := writeFile(t, t.TempDir(), "model.json", `{"ok":true}`)
	for range 3 {
		if _, err := e.svc.Push(ctx, registry.PushRequest{Model: "m", Path: file}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.MoveAlias(ctx, "m", "champion", 1, 0, "setup"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() { _, errs[i] = e.svc.MoveAlias(ctx, "m", "champion", i+2, 1, "ci") })
	}
	wg.Wait()
	var ok, conflict int
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrConflict):
			conflict++
		default:
			t.Errorf("MoveAlias: %v", err)
		}
	}
	if ok != 1 || conflict != 1 {
		t.Errorf("two concurrent moves from version 1: %d succeeded, %d conflicted; want 1 and 1", ok, conflict)
	}
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		in   string
		want registry.Ref
		ok   bool
	}{
		{"diabetes@champion", registry.Ref{Model: "diabetes", Alias: "champion"}, true},
		{"diabetes:3", registry.Ref{Model: "diabetes", Version: 3}, true},
		{"a-1:12", registry.Ref{Model: "a-1", Version: 12}, true},
		{"diabetes", registry.Ref{}, false},
		{"diabetes:0", registry.Ref{}, false},
		{"diabetes:03", registry.Ref{}, false},
		{"diabetes:-1", registry.Ref{}, false},
		{"diabetes:+1", registry.Ref{}, false},
		{"diabetes:x", registry.Ref{}, false},
		{"diabetes@", registry.Ref{}, false},
		{"@champion", registry.Ref{}, false},
		{"Diabetes@champion", registry.Ref{}, false},
		{"diabetes@champion@x", registry.Ref{}, false},
		{"model.json", registry.Ref{}, false},
		{"examples/diabetes/model.json", registry.Ref{}, false},
		{"file:///m/model.onnx", registry.Ref{}, false},
		{"s3://bucket/key", registry.Ref{}, false},
		{"c:\\models\\m", registry.Ref{}, false},
		{"m.v2@champion", registry.Ref{}, false},
	}
	for _, tt := range tests {
		got, ok := registry.ParseRef(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
		if ok && got.String() != tt.in {
			t.Errorf("ParseRef(%q).String() = %q", tt.in, got.String())
		}
	}
}

// downArtifacts is an artifact store that cannot be reached.
type downArtifacts struct{ registry.ArtifactStore }

func (downArtifacts) Put(context.Context, io.Reader) (string, string, int64, error) {
	return "", "", 0, errors.New(`Put "http://127.0.0.1:9/models/ab": dial tcp 127.0.0.1:9: connect: connection refused`)
}

// TestPushArtifactStoreDown: an upload the artifact store fails is the store
// being unavailable (the API answers 503, naming it), and the push writes
// nothing, not even a new model's empty record.
func TestPushArtifactStoreDown(t *testing.T) {
	e := newEnv(t, registry.Options{})
	svc := registry.NewService(e.st, downArtifacts{e.art}, registry.Options{Validator: jsonValidator})
	file := writeFile(t, t.TempDir(), "model.json", `{"ok":true}`)
	_, err := svc.Push(ctx, registry.PushRequest{Model: "diabetes", Path: file, Alias: "champion"})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Push with the artifact store down = %v; want an error that is store.ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "artifact store") || !strings.Contains(err.Error(), "127.0.0.1:9") {
		t.Errorf("error %q does not name the artifact store and where it is", err)
	}
	if _, err := e.st.GetModel(ctx, "diabetes"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after a failed push, GetModel(diabetes) = %v; want not found (nothing written)", err)
	}
}
