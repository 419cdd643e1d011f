package operator

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// RouteStore is the admin API's store of route objects (store.RouteStore)
// in a cluster: the ModelRoutes of one namespace, which the gateways watch
// (discovery.ModelRoutes), so that the API, the CLI, kubectl and GitOps
// tools all read and write the same objects. Reads go to the API server
// (not a cache), so a client reads its own writes. Errors wrap
// store.ErrNotFound, store.ErrExists and store.ErrUnavailable as
// APIStore's do.
type RouteStore struct {
	reader    client.Reader
	writer    client.Writer
	namespace string
}

var _ store.RouteStore = (*RouteStore)(nil)

// NewRouteStore returns a RouteStore over the ModelRoutes in namespace.
func NewRouteStore(reader client.Reader, writer client.Writer, namespace string) *RouteStore {
	return &RouteStore{reader: reader, writer: writer, namespace: namespace}
}

// CreateRoute creates a ModelRoute from r.
func (s *RouteStore) CreateRoute(ctx context.Context, r serving.Route) (serving.Route, error) {
	mr := &v1alpha1.ModelRoute{ObjectMeta: metav1.ObjectMeta{Name: r.Name, Namespace: s.namespace}}
	mr.Spec.RouteSpec = r.Spec
	if err := s.writer.Create(ctx, mr); err != nil {
		return serving.Route{}, s.err(err, "create", r.Name)
	}
	return apiRoute(mr), nil
}

// GetRoute returns the named ModelRoute.
func (s *RouteStore) GetRoute(ctx context.Context, name string) (serving.Route, error) {
	var mr v1alpha1.ModelRoute
	if err := s.reader.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, &mr); err != nil {
		return serving.Route{}, s.err(err, "get", name)
	}
	return apiRoute(&mr), nil
}

// ListRoutes returns every ModelRoute of the namespace, sorted by name.
func (s *RouteStore) ListRoutes(ctx context.Context) ([]serving.Route, error) {
	var list v1alpha1.ModelRouteList
	if err := s.reader.List(ctx, &list, client.InNamespace(s.namespace)); err != nil {
		return nil, s.err(err, "list", "")
	}
	out := make([]serving.Route, len(list.Items))
	for i := range list.Items {
		out[i] = apiRoute(&list.Items[i])
	}
	slices.SortFunc(out, func(a, b serving.Route) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// routeRetry is how UpdateRoute retries a write that raced another: more
// often than retry.DefaultRetry, since clients that edit one route at once
// (a script adding rules) are not rare, and a rule lost is a request sent
// to the wrong deployment.
var routeRetry = wait.Backoff{Steps: 20, Duration: 5 * time.Millisecond, Factor: 1.5, Jitter: 1, Cap: time.Second}

// UpdateRoute applies fn to the named ModelRoute's spec with optimistic
// concurrency: a write that races another is retried on the fresh object.
// fn's error is returned unchanged and nothing is written.
func (s *RouteStore) UpdateRoute(ctx context.Context, name string, fn func(*serving.Route) error) (serving.Route, error) {
	var out serving.Route
	var fnErr error
	err := retry.RetryOnConflict(routeRetry, func() error {
		var mr v1alpha1.ModelRoute
		if err := s.reader.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, &mr); err != nil {
			return err
		}
		next, _, ferr, err := store.ApplyRouteUpdate(apiRoute(&mr), fn, time.Now())
		if ferr != nil {
			fnErr = ferr
			return ferr
		}
		if err != nil {
			return err
		}
		mr.Spec.RouteSpec = next.Spec
		if err := s.writer.Update(ctx, &mr); err != nil {
			return err
		}
		out = apiRoute(&mr)
		return nil
	})
	switch {
	case fnErr != nil:
		return serving.Route{}, fnErr
	case err != nil:
		return serving.Route{}, s.err(err, "update", name)
	}
	return out, nil
}

// DeleteRoute deletes the named ModelRoute.
func (s *RouteStore) DeleteRoute(ctx context.Context, name string) error {
	mr := &v1alpha1.ModelRoute{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.namespace}}
	if err := s.writer.Delete(ctx, mr); err != nil {
		return s.err(err, "delete", name)
	}
	return nil
}

func (s *RouteStore) err(err error, op, name string) error {
	return objectErr(err, objectKind{kind: "ModelRoute", resource: "modelroutes"}, s.namespace, op, name)
}

// apiRoute is mr as the admin API shows it, with the time of the object's
// latest change.
func apiRoute(mr *v1alpha1.ModelRoute) serving.Route {
	r := mr.Route()
	r.UpdatedAt = specChangedAt(&mr.ObjectMeta, r.UpdatedAt)
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	return r
}
