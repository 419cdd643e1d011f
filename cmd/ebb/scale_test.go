package main

import (
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/serving"
)

// TestCLIScalePin pins, unpins and re-ranges a deployment through the real
// admin API and store, in the order a user would: the pin lives in
// spec.replicas, apart from the autoscaling range, and --auto removes it.
func TestCLIScalePin(t *testing.T) {
	e := newCLIEnv(t)
	e.mustRun(t, diabetesYAML, "deploy", "-f", "-")
	steps := []struct {
		args    []string
		wantOut string
		wantErr string
		pin     *int32 // stored spec.replicas; nil: not pinned
		min     int32
		max     int32
	}{
		{args: []string{"--replicas", "2"}, wantOut: "deployment/diabetes pinned at 2 replicas: the autoscaler is off until `ebb scale diabetes --auto`\n", pin: ptr(int32(2)), max: 4},
		{args: []string{"--min", "1", "--max", "6"}, wantOut: "deployment/diabetes scaled (min 1, max 6), still pinned at 2: the range applies after `ebb scale diabetes --auto`\n", pin: ptr(int32(2)), min: 1, max: 6},
		{args: []string{"--replicas", "0"}, wantOut: "deployment/diabetes scaled to zero: requests are refused and start nothing until `ebb scale diabetes --auto` or `--replicas N`\n", pin: ptr(int32(0)), min: 1, max: 6},
		{args: []string{"--auto"}, wantOut: "deployment/diabetes autoscaled (min 1, max 6)\n", min: 1, max: 6},
		{args: []string{"--replicas", "1"}, wantOut: "deployment/diabetes pinned at 1 replica: the autoscaler is off until `ebb scale diabetes --auto`\n", pin: ptr(int32(1)), min: 1, max: 6},
		{args: []string{"--auto", "--min", "0", "--max", "8"}, wantOut: "deployment/diabetes autoscaled (min 0, max 8)\n", max: 8},
		{args: []string{"--replicas", "2", "--auto"}, wantErr: "give one of them", max: 8},
		{args: []string{"--replicas", "-1"}, wantErr: "--replicas must be 0 or more", max: 8},
	}
	for _, s := range steps {
		out, err := e.run(t, "", append([]string{"scale", "diabetes"}, s.args...)...)
		switch {
		case s.wantErr != "" && (err == nil || !strings.Contains(err.Error(), s.wantErr)):
			t.Errorf("scale %v: error %v, want %q", s.args, err, s.wantErr)
		case s.wantErr == "" && err != nil:
			t.Fatalf("scale %v: %v", s.args, err)
		case out != s.wantOut:
			t.Errorf("scale %v printed %q, want %q", s.args, out, s.wantOut)
		}
		d := e.get(t, "diabetes")
		switch got := d.Spec.Replicas; {
		case (got == nil) != (s.pin == nil), got != nil && *got != *s.pin:
			t.Errorf("after scale %v: spec.replicas = %v, want %v", s.args, deref(got), deref(s.pin))
		}
		if sc := d.Spec.Scaling; sc.MinReplicas != s.min || sc.MaxReplicas != s.max {
			t.Errorf("after scale %v: min %d max %d, want %d %d", s.args, sc.MinReplicas, sc.MaxReplicas, s.min, s.max)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func deref(p *int32) any {
	if p == nil {
		return "unset"
	}
	return *p
}

// TestCLIDeployClusterFields deploys a spec written for a cluster to the
// admin API of `ebb up`: every field is accepted and stored, and what one
// machine ignores shows in `ebb get deployments NAME -o yaml`.
func TestCLIDeployClusterFields(t *testing.T) {
	e := newCLIEnv(t)
	spec := `name: gpu
spec:
  model: m.onnx
  engine: onnx
  replicas: 1
  template:
    image: ghcr.io/ebb-ml/ebb:v1
    resources:
      limits:
        cpu: "2"
        memory: 4Gi
        nvidia.com/gpu: "1"
    nodeSelector:
      gpu: a100
    tolerations:
    - key: nvidia.com/gpu
      operator: Exists
      effect: NoSchedule
    priorityClassName: high
  coldStart:
    warmPool: 1
    prePull: true
`
	e.mustRun(t, spec, "deploy", "-f", "-")
	d := e.get(t, "gpu")
	if n, ok := d.Spec.Pinned(); !ok || n != 1 || d.Spec.Template.NodeSelector["gpu"] != "a100" || !d.Spec.ColdStart.PrePull || len(d.Spec.Template.Tolerations) != 1 {
		t.Fatalf("stored spec lost cluster fields: %+v", d.Spec)
	}
	// The control loop reports what it ignores in the status (see
	// internal/control); here the canned status is what it would say.
	e.ctl.mu.Lock()
	e.ctl.statuses["gpu"] = serving.Status{Ignored: serving.Ignored(&d.Spec)}
	e.ctl.mu.Unlock()
	out := e.mustRun(t, "", "get", "deployments", "gpu", "-o", "yaml")
	for _, want := range []string{
		"ignored:",
		"template.nodeSelector: no nodes to select on one machine",
		"template.resources.limits.nvidia.com/gpu:",
		"coldStart.warmPool: no nodes to keep warm on one machine",
		"replicas: 1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("get -o yaml lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "template.resources.limits.cpu") {
		t.Errorf("get -o yaml reports the cpu limit ignored; ebb up applies it:\n%s", out)
	}
}
