package kube

import (
	"encoding/json"
	"fmt"

	"github.com/ebb-ml/ebb/internal/serving"
	corev1 "k8s.io/api/core/v1"
)

// PodTemplate is serving.Template with the Kubernetes core/v1 types that
// a pod spec takes. serving keeps its own types, with the same JSON, so that
// decoding a spec does not load k8s.io/api/core/v1; CoreTemplate and
// FromCore convert between the two.
type PodTemplate struct {
	Image              string                      `json:"image,omitempty"`
	ImagePullPolicy    corev1.PullPolicy           `json:"imagePullPolicy,omitempty"`
	Resources          corev1.ResourceRequirements `json:"resources,omitzero"`
	NodeSelector       map[string]string           `json:"nodeSelector,omitempty"`
	Tolerations        []corev1.Toleration         `json:"tolerations,omitempty"`
	Affinity           *corev1.Affinity            `json:"affinity,omitempty"`
	PriorityClassName  string                      `json:"priorityClassName,omitempty"`
	ServiceAccountName string                      `json:"serviceAccountName,omitempty"`
	Labels             map[string]string           `json:"labels,omitempty"`
	Annotations        map[string]string           `json:"annotations,omitempty"`
}

// CoreTemplate returns t in core/v1 types: a deep copy, sharing nothing
// with t.
func CoreTemplate(t *serving.Template) PodTemplate {
	var out PodTemplate
	convert(t, &out)
	return out
}

// FromCore returns p in serving's types: a deep copy, sharing nothing with
// p.
func FromCore(p *PodTemplate) serving.Template {
	var out serving.Template
	convert(p, &out)
	return out
}

// convert copies in to out through JSON, which the two template types
// share by construction (TestTemplateConversion checks it); an error is a
// bug in serving's types, not in the input.
func convert(in, out any) {
	b, err := json.Marshal(in)
	if err == nil {
		err = json.Unmarshal(b, out)
	}
	if err != nil {
		panic(fmt.Sprintf("kube: serving.Template and core/v1 disagree on %T: %v", in, err))
	}
}
