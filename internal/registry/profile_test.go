package registry_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/store"
)

// profileOf builds a profile of n numeric input features x0..x(n-1) and,
// when out is set, a categorical output feature of that name.
func profileOf(t *testing.T, n int, out string) *monitor.Profile {
	t.Helper()
	var specs []monitor.Spec
	for i := range n {
		specs = append(specs, monitor.Spec{Name: fmt.Sprintf("x%d", i), Kind: monitor.Numeric})
	}
	var cat []string
	if out != "" {
		specs = append(specs, monitor.Spec{Name: out, Kind: monitor.Categorical, Output: true})
		cat = []string{"yes"}
	}
	rows := make([]monitor.Row, 50)
	for i := range rows {
		rows[i].Num = make([]float64, n)
		for j := range n {
			rows[i].Num[j] = float64(i * (j + 1))
		}
		rows[i].Cat = cat
	}
	p, err := monitor.BuildProfile(specs, rows, monitor.ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProfile(t *testing.T) {
	e := newEnv(t, registry.Options{})
	file := writeFile(t, t.TempDir(), "model.json", `{"ok":true}`)
	v, err := e.svc.Push(ctx, registry.PushRequest{Model: "diabetes", Path: file, Tags: map[string]string{"team": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.Profile(ctx, "diabetes", v.Version); !errors.Is(err, registry.ErrNoProfile) {
		t.Errorf("Profile before one is set = %v; want ErrNoProfile", err)
	}
	p := profileOf(t, 10, "predict")
	got, err := e.svc.SetProfile(ctx, "diabetes", v.Version, p)
	if err != nil {
		t.Fatalf("SetProfile: %v", err)
	}
	if got.Tags["team"] != "a" || got.Tags[registry.TagProfile] == "" || got.Tags[registry.TagProfileSHA256] == "" {
		t.Errorf("tags after SetProfile = %v; want team and the profile's", got.Tags)
	}
	back, sum, err := e.svc.Profile(ctx, "diabetes", v.Version)
	if err != nil {
		t.Fatalf("Profile: %v", err)
	}
	if sum != got.Tags[registry.TagProfileSHA256] {
		t.Errorf("profile id %s; want the tag's %s", sum, got.Tags[registry.TagProfileSHA256])
	}
	if diff := cmp.Diff(p, back); diff != "" {
		t.Errorf("profile read back (-set +got):\n%s", diff)
	}
	// Replacing it moves the tags to the new one.
	p2 := profileOf(t, 10, "")
	if got, err = e.svc.SetProfile(ctx, "diabetes", v.Version, p2); err != nil {
		t.Fatal(err)
	}
	if back, _, err = e.svc.Profile(ctx, "diabetes", v.Version); err != nil || len(back.Features) != 10 {
		t.Errorf("Profile after a replace: %d features, %v; want 10", len(back.Features), err)
	}
	if _, err := e.svc.SetProfile(ctx, "diabetes", 9, p); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetProfile of a missing version = %v; want not found", err)
	}
	bad := profileOf(t, 10, "")
	bad.Version = 99
	if _, err := e.svc.SetProfile(ctx, "diabetes", v.Version, bad); !isInvalid(err) {
		t.Errorf("SetProfile of version 99 = %v; want an InvalidError", err)
	}
}

func TestCheckProfile(t *testing.T) {
	one := registry.Signature{
		Inputs:  []oip.TensorMetadata{{Name: "input", Datatype: "FP32", Shape: []int64{-1, 3}}},
		Outputs: []oip.TensorMetadata{{Name: "predict", Datatype: "FP32", Shape: []int64{-1}}},
	}
	named := registry.Signature{Inputs: []oip.TensorMetadata{{Name: "x0", Shape: []int64{-1}}, {Name: "x1", Shape: []int64{-1}}}}
	tests := []struct {
		name  string
		sig   registry.Signature
		p     *monitor.Profile
		valid bool
	}{
		{"columns of one input", one, profileOf(t, 3, "predict"), true},
		{"output by position", one, profileOf(t, 3, "label"), true},
		{"too many columns", one, profileOf(t, 4, ""), false},
		{"named inputs", named, profileOf(t, 2, ""), true},
		{"a feature no input is named", named, profileOf(t, 3, ""), false},
		{"several inputs, none named", registry.Signature{Inputs: []oip.TensorMetadata{{Name: "a"}, {Name: "b"}}}, profileOf(t, 2, ""), false},
		{"no signature", registry.Signature{}, profileOf(t, 7, "y"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := registry.CheckProfile(tt.sig, tt.p)
			if (err == nil) != tt.valid {
				t.Errorf("CheckProfile = %v; want valid %v", err, tt.valid)
			}
			if err != nil && !isInvalid(err) {
				t.Errorf("CheckProfile = %T; want an InvalidError", err)
			}
		})
	}
}
