package serving

// Template holds the per-replica settings that a cluster applies to each
// replica pod. `ebb up` accepts all of them: it applies the resource limits
// it can enforce on a process (see ProcessEnv) and reports the rest as
// ignored in the status (see Ignored). Its pod settings have the JSON of the
// Kubernetes pod fields of the same names (see podtypes.go).
type Template struct {
	// Image runs the replica; default the operator's own ebb image.
	// +optional
	Image string `json:"image,omitempty"`
	// +optional
	ImagePullPolicy PullPolicy `json:"imagePullPolicy,omitempty"`
	// Resources of the replica container, GPUs (nvidia.com/gpu) and MIG
	// slices (nvidia.com/mig-1g.10gb, ...) included. Under `ebb up` the cpu
	// limit sets the replica's GOMAXPROCS (and so its ONNX intra-op
	// threads) and the memory limit its GOMEMLIMIT.
	// +optional
	Resources ResourceRequirements `json:"resources,omitzero"`
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// +optional
	Tolerations []Toleration `json:"tolerations,omitempty"`
	// +optional
	Affinity *Affinity `json:"affinity,omitempty"`
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// Labels and Annotations are added to every replica pod.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ColdStart are the cold-start mitigations of a deployment in a cluster.
type ColdStart struct {
	// WarmPool keeps this many low-priority placeholder pods ("balloons")
	// with the replica's resources on nodes, so a new replica preempts one
	// instead of waiting for a node.
	// +optional
	// +kubebuilder:validation:Minimum=0
	WarmPool int32 `json:"warmPool,omitempty"`
	// PrePull runs a DaemonSet that pulls the replica image on every
	// eligible node ahead of the first replica.
	// +optional
	PrePull bool `json:"prePull,omitempty"`
}

// IsZero reports whether t sets nothing, empty maps and lists included, so
// that `omitzero` drops an empty template (`"template":{"labels":{}}`)
// exactly as a JSON round trip would: a spec reads back as it was written.
func (t Template) IsZero() bool {
	return t.Image == "" && t.ImagePullPolicy == "" && t.Resources.IsZero() &&
		len(t.NodeSelector) == 0 && len(t.Tolerations) == 0 && t.Affinity == nil && t.PriorityClassName == "" &&
		t.ServiceAccountName == "" && len(t.Labels) == 0 && len(t.Annotations) == 0
}
