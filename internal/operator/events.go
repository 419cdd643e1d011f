package operator

import (
	"context"
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// recordEvent turns one of the control loop's events (scale decisions with
// their reasons, replica starts, readiness, failures, rolls) into a
// Kubernetes Event on the ModelDeployment: kubectl describe shows it, and
// it outlives a change of leader. It runs on the control loop and does not
// block: the ModelDeployment comes from the cache and the recorder queues
// the event.
func (o *Operator) recordEvent(name string, ev serving.Event) {
	var md v1alpha1.ModelDeployment
	if err := o.mgr.GetCache().Get(context.Background(), client.ObjectKey{Namespace: o.opts.Namespace, Name: name}, &md); err != nil {
		return
	}
	typ := corev1.EventTypeNormal
	if ev.Type == serving.EventWarning {
		typ = corev1.EventTypeWarning
	}
	o.events.Event(&md, typ, ev.Reason, ev.Message)
}

// Events returns the Kubernetes Events of a ModelDeployment as the admin
// API shows them (api.Events), read from the API server.
func (o *Operator) Events(ctx context.Context, name string) ([]serving.Event, error) {
	var list corev1.EventList
	sel := fields.Set{"involvedObject.kind": "ModelDeployment", "involvedObject.name": name}.AsSelector()
	if err := o.mgr.GetAPIReader().List(ctx, &list, client.InNamespace(o.opts.Namespace), client.MatchingFieldsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("events of ModelDeployment %s/%s: the Kubernetes API server is unavailable: %v: %w", o.opts.Namespace, name, err, store.ErrUnavailable)
	}
	out := make([]serving.Event, 0, len(list.Items))
	for _, e := range list.Items {
		typ := serving.EventNormal
		if e.Type == corev1.EventTypeWarning {
			typ = serving.EventWarning
		}
		out = append(out, serving.Event{Time: eventTime(e), Type: typ, Reason: e.Reason, Message: e.Message, Count: e.Count})
	}
	return out, nil
}

// eventTime is when an Event last happened.
func eventTime(e corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.FirstTimestamp.Time
}
