package resolve_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/resolve"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/google/go-cmp/cmp"
)

// fakeRegistry holds versions by "model:N" and aliases by "model@alias".
type fakeRegistry struct {
	versions map[string]registry.Version
	aliases  map[string]int
}

func (f fakeRegistry) Resolve(_ context.Context, ref registry.Ref) (registry.Version, error) {
	n := ref.Version
	if ref.Alias != "" {
		v, ok := f.aliases[ref.Model+"@"+ref.Alias]
		if !ok {
			return registry.Version{}, fmt.Errorf("alias %s@%s: %w", ref.Model, ref.Alias, store.ErrNotFound)
		}
		n = v
	}
	v, ok := f.versions[fmt.Sprintf("%s:%d", ref.Model, n)]
	if !ok {
		return registry.Version{}, fmt.Errorf("version %s:%d: %w", ref.Model, n, store.ErrNotFound)
	}
	return v, nil
}

func (fakeRegistry) RecordServing(context.Context, string, string, int) error { return nil }

func TestResolve(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	reg := fakeRegistry{
		versions: map[string]registry.Version{
			"diabetes:1": {Model: "diabetes", Version: 1, Engine: "trees", ArtifactURI: "s3://m/sha256/ab/" + sum, SHA256: sum, State: registry.StateActive},
			"bert:2": {Model: "bert", Version: 2, Engine: "onnx", ArtifactURI: "file:///a/sha256/ab/" + sum, SHA256: sum,
				Packaging: registry.PackagingTar, Entry: "model.onnx", State: registry.StateActive},
			"old:1": {Model: "old", Version: 1, Engine: "trees", State: registry.StatePurged},
		},
		aliases: map[string]int{"diabetes@champion": 1},
	}
	r := resolve.New(reg)
	for _, tc := range []struct {
		name    string
		spec    serving.Spec
		want    resolve.Resolution
		wantErr string
	}{
		{name: "a path passes through", spec: serving.Spec{Model: "/models/m.json", Engine: "trees"},
			want: resolve.Resolution{Spec: serving.Spec{Model: "/models/m.json", Engine: "trees"}}},
		{name: "an alias becomes the version's artifact, fetched by replicas", spec: serving.Spec{Model: "diabetes@champion"},
			want: resolve.Resolution{
				Spec:     serving.Spec{Model: "s3://m/sha256/ab/" + sum, Engine: "trees"},
				Artifact: &replica.Artifact{URI: "s3://m/sha256/ab/" + sum, SHA256: sum},
				Version:  "diabetes:1", Signature: &registry.Signature{},
			}},
		{name: "a directory artifact and its entry", spec: serving.Spec{Model: "bert:2", Engine: "onnx"},
			want: resolve.Resolution{
				Spec:     serving.Spec{Model: "file:///a/sha256/ab/" + sum, Engine: "onnx"},
				Artifact: &replica.Artifact{URI: "file:///a/sha256/ab/" + sum, SHA256: sum, Dir: true, Entry: "model.onnx"},
				Version:  "bert:2", Signature: &registry.Signature{},
			}},
		{name: "engine mismatch", spec: serving.Spec{Model: "diabetes:1", Engine: "onnx"}, wantErr: `engine "trees" but the deployment asks for engine "onnx"`},
		{name: "purged", spec: serving.Spec{Model: "old:1"}, wantErr: "retired and its artifact deleted"},
		{name: "missing alias", spec: serving.Spec{Model: "diabetes@staging"}, wantErr: "model diabetes@staging: alias"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Resolve(context.Background(), tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Resolve (-want +got):\n%s", diff)
			}
		})
	}
}
