package serving

import (
	"math"
	"slices"
	"strconv"
)

// Ignored returns the fields of s that a home running replicas as processes
// on one machine (`ebb up`) accepts but cannot honour, each as "FIELD: why",
// in a fixed order. s should be resolved (Engine set) when it names a
// registry version, since whether resource limits apply depends on the
// engine. A cluster honours every field and reports none of them.
//
// What one machine honours: replicas (a pin), and for engines that run in
// the replica process (trees, onnx, echo) the cpu and memory limits of
// template.resources, as ProcessEnv sets them.
func Ignored(s *Spec) []string {
	var out []string
	add := func(field, why string) { out = append(out, field+": "+why) }
	t := &s.Template
	if t.Image != "" {
		add("template.image", "replicas are processes of this ebb binary, not containers")
	}
	if t.ImagePullPolicy != "" {
		add("template.imagePullPolicy", "no images to pull on one machine")
	}
	r := &t.Resources
	limitsApply := goEngine(s.Engine)
	for _, name := range sortedNames(r.Limits) {
		switch {
		case (name == ResourceCPU || name == ResourceMemory) && limitsApply:
			// Honoured: see ProcessEnv.
		case name == ResourceCPU || name == ResourceMemory:
			add("template.resources.limits."+string(name), "engine "+s.Engine+" runs the model in a process of its own, which ebb up does not limit")
		default:
			add("template.resources.limits."+string(name), "ebb up does not allocate devices or extended resources: replicas see the whole machine")
		}
	}
	if len(r.Requests) > 0 {
		add("template.resources.requests", "no scheduler reserves resources on one machine")
	}
	if len(r.Claims) > 0 {
		add("template.resources.claims", "no resource claims on one machine")
	}
	if len(t.NodeSelector) > 0 {
		add("template.nodeSelector", "no nodes to select on one machine")
	}
	if len(t.Tolerations) > 0 {
		add("template.tolerations", "no node taints to tolerate on one machine")
	}
	if t.Affinity != nil {
		add("template.affinity", "no nodes to place replicas on one machine")
	}
	if t.PriorityClassName != "" {
		add("template.priorityClassName", "no preemption between replicas on one machine")
	}
	if t.ServiceAccountName != "" {
		add("template.serviceAccountName", "replicas run as the user of ebb up")
	}
	if len(t.Labels) > 0 {
		add("template.labels", "replicas are processes, which carry no labels")
	}
	if len(t.Annotations) > 0 {
		add("template.annotations", "replicas are processes, which carry no annotations")
	}
	if s.ColdStart.WarmPool > 0 {
		add("coldStart.warmPool", "no nodes to keep warm on one machine")
	}
	if s.ColdStart.PrePull {
		add("coldStart.prePull", "no images to pull on one machine")
	}
	return out
}

// ProcessEnv returns the environment that makes a replica process honour
// the cpu and memory limits of s.Template.Resources, for the engines that
// run the model inside the replica process (trees, onnx, echo):
//
//   - a cpu limit sets GOMAXPROCS to the limit rounded up (at least 1); the
//     ONNX engine sizes its intra-op thread pool from GOMAXPROCS, so the
//     model's compute follows;
//   - a memory limit sets GOMEMLIMIT, the Go runtime's soft memory limit,
//     in bytes.
//
// Variables that s.Env sets itself are left to it. It returns nil when
// there is nothing to set.
func ProcessEnv(s *Spec) map[string]string {
	if !goEngine(s.Engine) {
		return nil
	}
	lim := s.Template.Resources.Limits
	env := map[string]string{}
	if q, ok := lim[ResourceCPU]; ok {
		procs := math.Ceil(q.AsApproximateFloat64())
		env["GOMAXPROCS"] = strconv.Itoa(int(max(1, min(procs, 1<<20))))
	}
	if q, ok := lim[ResourceMemory]; ok {
		if b := q.Value(); b > 0 {
			env["GOMEMLIMIT"] = strconv.FormatInt(b, 10)
		}
	}
	for k := range s.Env {
		delete(env, k)
	}
	if len(env) == 0 {
		return nil
	}
	return env
}

// goEngine reports whether engine runs the model inside the Go replica
// process.
func goEngine(engine string) bool {
	switch engine {
	case "trees", "onnx", "echo":
		return true
	}
	return false
}

func sortedNames(l ResourceList) []ResourceName {
	names := make([]ResourceName, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
