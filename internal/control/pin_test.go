package control

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/resolve"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
)

func ptr[T any](v T) *T { return &v }

// setSpec changes a stored deployment and tells the loop, as the admin API
// does.
func (f *fixture) setSpec(name string, change func(*serving.Spec)) {
	f.t.Helper()
	if _, err := f.store.UpdateDeployment(context.Background(), name, func(d *serving.Deployment) error {
		change(&d.Spec)
		return nil
	}); err != nil {
		f.t.Fatal(err)
	}
	if err := f.ctl.Sync(context.Background(), name); err != nil {
		f.t.Fatal(err)
	}
}

// TestPinnedZeroDoesNotWake holds requests for a deployment pinned at zero
// and wakes it: the route says it is scaled to zero, and no replica starts,
// on the wake-up or on any tick.
func TestPinnedZeroDoesNotWake(t *testing.T) {
	d := dep("m", serving.Scaling{MinReplicas: 0, MaxReplicas: 4})
	d.Spec.Replicas = ptr(int32(0))
	f := newFixture(t, d)
	r := f.routes.Lookup("m")
	if r == nil || !r.ScaledToZero || len(r.Endpoints) != 0 {
		t.Fatalf("route = %+v; want a scaled-to-zero route", r)
	}
	for range 5 {
		r.Stats.Begin(f.clock.Now())
	}
	f.ctl.Wake("m")
	for range 5 {
		f.tick()
	}
	st := f.until("m", "pinned reason", func(st serving.Status) bool {
		return strings.Contains(st.Reason, "scaled to zero by its owner")
	})
	time.Sleep(20 * time.Millisecond)
	if n := len(f.backend.started); n != 0 || st.DesiredReplicas != 0 {
		t.Errorf("pinned at zero: started %d replicas, desired %d; want none", n, st.DesiredReplicas)
	}
}

// TestPinAndUnpin pins a running deployment at 3, then at 0, then removes
// the pin: the count follows the pin exactly, the route says when it is
// scaled to zero, and without the pin the autoscaler's range applies again.
func TestPinAndUnpin(t *testing.T) {
	f := newFixture(t, dep("m", serving.Scaling{MinReplicas: 1, MaxReplicas: 2}))
	f.tick()
	f.until("m", "1 ready", ready(1))

	f.setSpec("m", func(s *serving.Spec) { s.Replicas = ptr(int32(3)) })
	st := f.until("m", "3 ready, above maxReplicas", ready(3))
	if !strings.Contains(st.Reason, "pinned at 3") {
		t.Errorf("reason = %q; want it to say the pin", st.Reason)
	}
	if n := len(f.backend.started); n != 3 {
		t.Errorf("started %d replicas; want 3 (a pin does not roll replicas)", n)
	}

	f.setSpec("m", func(s *serving.Spec) { s.Replicas = ptr(int32(0)) })
	f.until("m", "all stopped", ready(0))
	if r := f.routes.Lookup("m"); r == nil || !r.ScaledToZero || len(r.Endpoints) != 0 {
		t.Fatalf("route after pin 0 = %+v; want scaled to zero with no endpoint", r)
	}

	f.setSpec("m", func(s *serving.Spec) { s.Replicas = nil })
	f.tick()
	st = f.until("m", "back to minReplicas", ready(1))
	if r := f.routes.Lookup("m"); r == nil || r.ScaledToZero || len(r.Endpoints) != 1 {
		t.Errorf("route after unpin = %+v; want one endpoint, not scaled to zero", r)
	}
	if strings.Contains(st.Reason, "pinned") || strings.Contains(st.Reason, "owner") {
		t.Errorf("reason after unpin = %q; still mentions the pin", st.Reason)
	}
}

// limited is a deployment whose spec uses every field one machine ignores,
// and cpu and memory limits it honours.
func limited() serving.Deployment {
	d := dep("m", serving.Scaling{MinReplicas: 1, MaxReplicas: 1})
	d.Spec.Template = serving.Template{
		Image:        "ghcr.io/ebb-ml/ebb:v1",
		NodeSelector: map[string]string{"gpu": "a100"},
		Tolerations:  []serving.Toleration{{Key: "gpu", Operator: serving.TolerationOpExists}},
		Resources: serving.ResourceRequirements{
			Limits: serving.ResourceList{
				serving.ResourceCPU:    resource.MustParse("1500m"),
				serving.ResourceMemory: resource.MustParse("1Gi"),
				"nvidia.com/gpu":       resource.MustParse("1"),
			},
		},
	}
	d.Spec.ColdStart = serving.ColdStart{WarmPool: 1, PrePull: true}
	d.Spec.Env = map[string]string{"A": "b"}
	return d
}

// TestLocalLimitsAndIgnoredFields checks what `ebb up` does with the
// cluster-only fields: cpu and memory limits reach the replica process as
// GOMAXPROCS and GOMEMLIMIT, and the rest is listed in status.ignored.
func TestLocalLimitsAndIgnoredFields(t *testing.T) {
	f := newFixture(t, limited())
	f.tick()
	st := f.until("m", "1 ready", ready(1))
	want := []string{
		"template.image: replicas are processes of this ebb binary, not containers",
		"template.resources.limits.nvidia.com/gpu: ebb up does not allocate devices or extended resources: replicas see the whole machine",
		"template.nodeSelector: no nodes to select on one machine",
		"template.tolerations: no node taints to tolerate on one machine",
		"coldStart.warmPool: no nodes to keep warm on one machine",
		"coldStart.prePull: no images to pull on one machine",
	}
	if diff := cmp.Diff(want, st.Ignored); diff != "" {
		t.Errorf("status.ignored (-want +got):\n%s", diff)
	}
	env := f.backend.get(st.ReplicaStatuses[0].ID).spec.Env
	if diff := cmp.Diff(map[string]string{"A": "b", "GOMAXPROCS": "2", "GOMEMLIMIT": "1073741824"}, env); diff != "" {
		t.Errorf("replica env (-want +got):\n%s", diff)
	}
}

// TestClusterIgnoresNothing checks that the operator's loop (Cluster)
// leaves the template to the pods: nothing is reported ignored and no
// process limit is set.
func TestClusterIgnoresNothing(t *testing.T) {
	f := newFixture(t)
	f.stop()
	f.ctl = New(f.store, f.backend, f.routes, Options{Clock: f.clock, Cluster: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.ctl.Run(ctx) }()
	<-f.ctl.Loaded()
	d := limited()
	d.Spec.Default()
	if _, err := f.store.CreateDeployment(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	f.ctl.Notify("m")
	f.tick()
	st := f.until("m", "1 ready", ready(1))
	if len(st.Ignored) != 0 {
		t.Errorf("status.ignored in a cluster = %q; want none", st.Ignored)
	}
	if env := f.backend.get(st.ReplicaStatuses[0].ID).spec.Env; len(env) != 1 {
		t.Errorf("replica env in a cluster = %v; want the spec's only", env)
	}
}

// versions is a Resolver over a registry of one model whose versions have
// a signature; current is the version "m@prod" resolves to.
type versions struct{ current int }

func (v *versions) Resolve(_ context.Context, spec serving.Spec) (resolve.Resolution, error) {
	if _, ok := serving.ParseModelRef(spec.Model); !ok {
		return resolve.Resolution{Spec: spec}, nil
	}
	out := spec
	out.Engine = "trees"
	out.Model = "/cache/m-" + string(rune('0'+v.current)) + ".json"
	sig := registry.Signature{Inputs: []oip.TensorMetadata{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 4}}}}
	return resolve.Resolution{Spec: out, Version: "m:" + string(rune('0'+v.current)), Signature: &sig}, nil
}

func (v *versions) Serving(context.Context, string, string) error { return nil }

// TestRegistryVersionReachesReplicasAndRoutes checks that a replica is
// told the registry version it serves, its endpoint carries it, and the
// route carries the deployment's version and the metadata of its
// signature.
func TestRegistryVersionReachesReplicasAndRoutes(t *testing.T) {
	f := newFixture(t)
	f.stop()
	f.ctl = New(f.store, f.backend, f.routes, Options{Clock: f.clock, Resolver: &versions{current: 3}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.ctl.Run(ctx) }()
	<-f.ctl.Loaded()
	d := serving.Deployment{Name: "m", Spec: serving.Spec{Model: "m@prod", Scaling: serving.Scaling{MinReplicas: 1, MaxReplicas: 1}}}
	d.Spec.Default()
	if _, err := f.store.CreateDeployment(ctx, d); err != nil {
		t.Fatal(err)
	}
	f.ctl.Notify("m")
	f.tick()
	st := f.until("m", "1 ready", ready(1))
	if got := f.backend.get(st.ReplicaStatuses[0].ID).spec.Version; got != "m:3" {
		t.Errorf("replica spec version = %q; want m:3", got)
	}
	r := f.routes.Lookup("m")
	if r.Version != "3" || r.Model != "m:3" || len(r.Endpoints) != 1 || r.Endpoints[0].Version != "3" {
		t.Errorf("route version %q model %q endpoints %v; want 3, m:3 and one endpoint of version 3", r.Version, r.Model, r.Endpoints)
	}
	want := &oip.ModelMetadata{Name: "m", Versions: []string{"3"}, Platform: "ebb_trees",
		Inputs: []oip.TensorMetadata{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 4}}}, Outputs: []oip.TensorMetadata{}}
	if diff := cmp.Diff(want, r.Metadata); diff != "" {
		t.Errorf("route metadata (-want +got):\n%s", diff)
	}
	if !slices.Equal(r.Versions(), []string{"3"}) {
		t.Errorf("route versions = %v; want [3]", r.Versions())
	}
}
