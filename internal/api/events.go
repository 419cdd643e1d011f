package api

import (
	"context"
	"net/http"
	"slices"

	"github.com/ebb-ml/ebb/internal/serving"
)

// Events is where the API reads a deployment's recent events: the control
// loop's record in `ebb up` (control.Controller), Kubernetes Events of the
// ModelDeployment in a cluster. An implementation returns them in any
// order (the API sorts them, oldest first) and returns no error for a
// deployment that has none.
type Events interface {
	Events(ctx context.Context, deployment string) ([]serving.Event, error)
}

// EventsFunc adapts a function to Events.
type EventsFunc func(ctx context.Context, deployment string) ([]serving.Event, error)

// Events calls f.
func (f EventsFunc) Events(ctx context.Context, deployment string) ([]serving.Event, error) {
	return f(ctx, deployment)
}

// EventList is the body of GET /v1/deployments/{name}/events: scale
// decisions with their reasons, replica starts, readiness and failures,
// rolls; oldest first.
type EventList struct {
	Items []serving.Event `json:"items"`
}

// MountEvents adds GET /v1/deployments/{name}/events, served from ev, to
// h. A deployment that does not exist is 404 deployment/not_found. Call it
// before h serves requests.
func (h *Handler) MountEvents(ev Events) {
	h.mux.HandleFunc("GET /v1/deployments/{name}/events", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if _, err := h.st.GetDeployment(r.Context(), name); err != nil {
			h.writeError(w, r, storeError(err, name))
			return
		}
		items, err := ev.Events(r.Context(), name)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		items = slices.Clone(items)
		slices.SortStableFunc(items, func(a, b serving.Event) int { return a.Time.Compare(b.Time) })
		if items == nil {
			items = []serving.Event{}
		}
		writeJSON(w, http.StatusOK, EventList{Items: items})
	})
	h.mux.HandleFunc("/v1/deployments/{name}/events", methodNotAllowed("GET, HEAD"))
}
