package serving

import "k8s.io/apimachinery/pkg/api/resource"

// The types of Template's pod settings. They mirror the Kubernetes core/v1
// types of the same names field for field, with the same JSON (names,
// omitempty, accepted values), so a spec written for a pod reads here as it
// reads there; internal/replica/kube converts them to core/v1 where pods
// are built. They are ebb's own so that decoding a spec does not load
// k8s.io/api/core/v1, whose package init costs every process several MiB.

// PullPolicy says when the kubelet pulls the replica image: Always,
// Never or IfNotPresent. Empty leaves Kubernetes' default (Always for a
// :latest or untagged image, else IfNotPresent).
// +kubebuilder:validation:Enum="";Always;Never;IfNotPresent
type PullPolicy string

// The pull policies.
const (
	PullAlways       PullPolicy = "Always"
	PullNever        PullPolicy = "Never"
	PullIfNotPresent PullPolicy = "IfNotPresent"
)

// ResourceName names a resource: cpu, memory, or an extended resource such
// as nvidia.com/gpu.
type ResourceName string

// The resources `ebb up` honours as limits (see ProcessEnv).
const (
	ResourceCPU    ResourceName = "cpu"
	ResourceMemory ResourceName = "memory"
)

// ResourceList maps resource names to quantities.
type ResourceList map[ResourceName]resource.Quantity

// ResourceRequirements are the resources of the replica container.
type ResourceRequirements struct {
	// Limits are the most the container may use.
	// +optional
	Limits ResourceList `json:"limits,omitempty"`
	// Requests are what the scheduler reserves for the container; they
	// default to Limits when only Limits are set.
	// +optional
	Requests ResourceList `json:"requests,omitempty"`
	// Claims name entries of the pod's resourceClaims (dynamic resource
	// allocation) that the container uses.
	// +listType=map
	// +listMapKey=name
	// +optional
	Claims []ResourceClaim `json:"claims,omitempty"`
}

// IsZero reports whether r sets nothing, empty maps and lists included, so
// that `omitzero` drops `"resources":{"limits":{}}` as a JSON round trip
// would.
func (r ResourceRequirements) IsZero() bool {
	return len(r.Limits) == 0 && len(r.Requests) == 0 && len(r.Claims) == 0
}

// ResourceClaim names one entry of the pod's resourceClaims.
type ResourceClaim struct {
	// Name is the name of the entry in the pod's resourceClaims.
	Name string `json:"name"`
	// Request is the request of that claim to use; empty means all of it.
	// +optional
	Request string `json:"request,omitempty"`
}

// TolerationOperator relates a toleration's key to its value.
// +kubebuilder:validation:Enum="";Exists;Equal
type TolerationOperator string

// The toleration operators.
const (
	TolerationOpExists TolerationOperator = "Exists"
	TolerationOpEqual  TolerationOperator = "Equal"
)

// TaintEffect is what a taint does to pods that do not tolerate it.
// +kubebuilder:validation:Enum="";NoSchedule;PreferNoSchedule;NoExecute
type TaintEffect string

// The taint effects.
const (
	TaintEffectNoSchedule       TaintEffect = "NoSchedule"
	TaintEffectPreferNoSchedule TaintEffect = "PreferNoSchedule"
	TaintEffectNoExecute        TaintEffect = "NoExecute"
)

// Toleration lets replica pods run on nodes with a matching taint: one
// whose key, value and effect match by Operator.
type Toleration struct {
	// Key is the taint key; empty, with operator Exists, matches every
	// taint.
	// +optional
	Key string `json:"key,omitempty"`
	// Operator is Equal (the default: the taint's value must be Value) or
	// Exists (any value).
	// +optional
	Operator TolerationOperator `json:"operator,omitempty"`
	// Value is the taint value to match with operator Equal.
	// +optional
	Value string `json:"value,omitempty"`
	// Effect is the taint effect to match; empty matches every effect.
	// +optional
	Effect TaintEffect `json:"effect,omitempty"`
	// TolerationSeconds is, for effect NoExecute, how long the pod stays on
	// a node after the taint appears; unset means forever.
	// +optional
	TolerationSeconds *int64 `json:"tolerationSeconds,omitempty"`
}

// Affinity holds the scheduling rules of replica pods relative to nodes
// and other pods.
type Affinity struct {
	// NodeAffinity selects the nodes replica pods run on.
	// +optional
	NodeAffinity *NodeAffinity `json:"nodeAffinity,omitempty"`
	// PodAffinity places replica pods near other pods (same node, zone,
	// ...).
	// +optional
	PodAffinity *PodAffinity `json:"podAffinity,omitempty"`
	// PodAntiAffinity keeps replica pods away from other pods.
	// +optional
	PodAntiAffinity *PodAntiAffinity `json:"podAntiAffinity,omitempty"`
}

// NodeAffinity are node selection rules, required or preferred.
type NodeAffinity struct {
	// RequiredDuringSchedulingIgnoredDuringExecution must match a node for
	// a pod to be scheduled there.
	// +optional
	RequiredDuringSchedulingIgnoredDuringExecution *NodeSelector `json:"requiredDuringSchedulingIgnoredDuringExecution,omitempty"`
	// PreferredDuringSchedulingIgnoredDuringExecution are weighted terms:
	// the scheduler prefers the nodes with the greatest sum of the weights
	// of the terms they match.
	// +optional
	// +listType=atomic
	PreferredDuringSchedulingIgnoredDuringExecution []PreferredSchedulingTerm `json:"preferredDuringSchedulingIgnoredDuringExecution,omitempty"`
}

// NodeSelector selects the nodes that match any of its terms.
// +structType=atomic
type NodeSelector struct {
	// NodeSelectorTerms are ORed.
	// +listType=atomic
	NodeSelectorTerms []NodeSelectorTerm `json:"nodeSelectorTerms"`
}

// NodeSelectorTerm matches the nodes that meet all its requirements; an
// empty term matches no node.
// +structType=atomic
type NodeSelectorTerm struct {
	// MatchExpressions are requirements on node labels.
	// +optional
	// +listType=atomic
	MatchExpressions []NodeSelectorRequirement `json:"matchExpressions,omitempty"`
	// MatchFields are requirements on node fields (metadata.name).
	// +optional
	// +listType=atomic
	MatchFields []NodeSelectorRequirement `json:"matchFields,omitempty"`
}

// NodeSelectorOperator relates a node label or field to values.
// +kubebuilder:validation:Enum=In;NotIn;Exists;DoesNotExist;Gt;Lt
type NodeSelectorOperator string

// The node selector operators.
const (
	NodeSelectorOpIn           NodeSelectorOperator = "In"
	NodeSelectorOpNotIn        NodeSelectorOperator = "NotIn"
	NodeSelectorOpExists       NodeSelectorOperator = "Exists"
	NodeSelectorOpDoesNotExist NodeSelectorOperator = "DoesNotExist"
	NodeSelectorOpGt           NodeSelectorOperator = "Gt"
	NodeSelectorOpLt           NodeSelectorOperator = "Lt"
)

// NodeSelectorRequirement relates a node label or field to values.
type NodeSelectorRequirement struct {
	// Key is the label key or field the requirement applies to.
	Key string `json:"key"`
	// Operator is In, NotIn, Exists, DoesNotExist, Gt or Lt.
	Operator NodeSelectorOperator `json:"operator"`
	// Values: at least one for In and NotIn, none for Exists and
	// DoesNotExist, a single integer for Gt and Lt.
	// +optional
	// +listType=atomic
	Values []string `json:"values,omitempty"`
}

// PreferredSchedulingTerm is a node selector term with a weight.
type PreferredSchedulingTerm struct {
	// Weight, 1 to 100, is added to a node's score when the node matches
	// Preference.
	Weight int32 `json:"weight"`
	// Preference is the term to match.
	Preference NodeSelectorTerm `json:"preference"`
}

// PodAffinity are rules that place replica pods near other pods.
type PodAffinity struct {
	// RequiredDuringSchedulingIgnoredDuringExecution must all hold for a
	// pod to be scheduled on a node.
	// +optional
	// +listType=atomic
	RequiredDuringSchedulingIgnoredDuringExecution []PodAffinityTerm `json:"requiredDuringSchedulingIgnoredDuringExecution,omitempty"`
	// PreferredDuringSchedulingIgnoredDuringExecution are weighted terms:
	// the scheduler prefers nodes with the greatest sum of the weights of
	// the terms they satisfy.
	// +optional
	// +listType=atomic
	PreferredDuringSchedulingIgnoredDuringExecution []WeightedPodAffinityTerm `json:"preferredDuringSchedulingIgnoredDuringExecution,omitempty"`
}

// PodAntiAffinity are rules that keep replica pods away from other pods.
type PodAntiAffinity struct {
	// RequiredDuringSchedulingIgnoredDuringExecution must all hold for a
	// pod to be scheduled on a node.
	// +optional
	// +listType=atomic
	RequiredDuringSchedulingIgnoredDuringExecution []PodAffinityTerm `json:"requiredDuringSchedulingIgnoredDuringExecution,omitempty"`
	// PreferredDuringSchedulingIgnoredDuringExecution are weighted terms:
	// the scheduler subtracts the weights of the terms a node satisfies
	// from its score.
	// +optional
	// +listType=atomic
	PreferredDuringSchedulingIgnoredDuringExecution []WeightedPodAffinityTerm `json:"preferredDuringSchedulingIgnoredDuringExecution,omitempty"`
}

// WeightedPodAffinityTerm is a pod affinity term with a weight.
type WeightedPodAffinityTerm struct {
	// Weight, 1 to 100, of the term.
	Weight int32 `json:"weight"`
	// PodAffinityTerm is the term.
	PodAffinityTerm PodAffinityTerm `json:"podAffinityTerm"`
}

// PodAffinityTerm selects a set of pods (by labels, in some namespaces)
// and a topology: a pod is co-located with the set when it runs on a node
// whose TopologyKey label has the value of a node running one of them.
type PodAffinityTerm struct {
	// LabelSelector selects the pods; unset selects none.
	// +optional
	LabelSelector *LabelSelector `json:"labelSelector,omitempty"`
	// Namespaces are names of namespaces the term applies to, besides
	// those NamespaceSelector selects; neither means the pod's own.
	// +optional
	// +listType=atomic
	Namespaces []string `json:"namespaces,omitempty"`
	// TopologyKey is the node label that defines co-location (e.g.
	// kubernetes.io/hostname, topology.kubernetes.io/zone); required.
	TopologyKey string `json:"topologyKey"`
	// NamespaceSelector selects namespaces the term applies to, besides
	// Namespaces; an empty selector ({}) selects all.
	// +optional
	NamespaceSelector *LabelSelector `json:"namespaceSelector,omitempty"`
	// MatchLabelKeys are label keys of the incoming pod whose values are
	// added to LabelSelector as `key in (value)`.
	// +listType=atomic
	// +optional
	MatchLabelKeys []string `json:"matchLabelKeys,omitempty"`
	// MismatchLabelKeys are label keys of the incoming pod whose values
	// are added to LabelSelector as `key notin (value)`.
	// +listType=atomic
	// +optional
	MismatchLabelKeys []string `json:"mismatchLabelKeys,omitempty"`
}

// LabelSelector selects objects by their labels: all of MatchLabels and
// MatchExpressions must hold; an empty selector selects everything.
// +structType=atomic
type LabelSelector struct {
	// MatchLabels are labels the object must carry with these values.
	// +optional
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
	// MatchExpressions are requirements on the object's labels.
	// +optional
	// +listType=atomic
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelectorOperator relates a label to values.
// +kubebuilder:validation:Enum=In;NotIn;Exists;DoesNotExist
type LabelSelectorOperator string

// The label selector operators.
const (
	LabelSelectorOpIn           LabelSelectorOperator = "In"
	LabelSelectorOpNotIn        LabelSelectorOperator = "NotIn"
	LabelSelectorOpExists       LabelSelectorOperator = "Exists"
	LabelSelectorOpDoesNotExist LabelSelectorOperator = "DoesNotExist"
)

// LabelSelectorRequirement relates a label to values.
type LabelSelectorRequirement struct {
	// Key is the label key.
	Key string `json:"key"`
	// Operator is In, NotIn, Exists or DoesNotExist.
	Operator LabelSelectorOperator `json:"operator"`
	// Values: at least one for In and NotIn, none for Exists and
	// DoesNotExist.
	// +optional
	// +listType=atomic
	Values []string `json:"values,omitempty"`
}
