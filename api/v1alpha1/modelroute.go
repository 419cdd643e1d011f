package v1alpha1

import (
	"github.com/ebb-ml/ebb/internal/serving"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ModelRouteSpec is a route object's spec exactly as the admin API and
// `ebb up` take it (serving.RouteSpec): where a request's value is read,
// the rules that map values to ModelDeployments, and the default.
type ModelRouteSpec struct {
	serving.RouteSpec `json:",inline"`
}

// ModelRoute is a route object (a shard group): a name clients call as if
// it were a ModelDeployment, which the gateways resolve per request to the
// ModelDeployment its rules pick by a header or an input value, else to
// its default. Each target scales 0:N on its own.
//
// A ModelRoute shares the namespace of ModelDeployment names at the
// gateway. The admin API refuses a clash; one that kubectl makes is
// resolved for the ModelDeployment, whose requests the gateways serve as
// if the ModelRoute did not exist.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=mr;mrs,categories=ebb
// +kubebuilder:printcolumn:name="Header",type=string,JSONPath=`.spec.match.header`
// +kubebuilder:printcolumn:name="Input",type=string,JSONPath=`.spec.match.input`
// +kubebuilder:printcolumn:name="Default",type=string,JSONPath=`.spec.default`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ModelRoute struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ModelRouteSpec `json:"spec,omitempty"`
}

// ModelRouteList is a list of ModelRoutes.
//
// +kubebuilder:object:root=true
type ModelRouteList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ModelRoute `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ModelRoute{}, &ModelRouteList{})
}

// Route returns the admin API's view of r: the same spec.
func (r *ModelRoute) Route() serving.Route {
	spec := r.Spec.RouteSpec
	spec.Rules = append([]serving.RouteRule(nil), spec.Rules...)
	return serving.Route{
		Name:       r.Name,
		Spec:       spec,
		Generation: r.Generation,
		CreatedAt:  r.CreationTimestamp.Time,
		UpdatedAt:  r.CreationTimestamp.Time,
	}
}
