package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/ebb-ml/ebb/internal/monitor"
)

// Labels joins labels with a deployment's logged predictions: ebb up's
// index of what its prediction log sampled, or the operator's, of what
// the gateways shipped (internal/drift).
type Labels interface {
	JoinLabels(deployment string, labels []monitor.Label, task monitor.Task) (monitor.QualityReport, error)
}

// LabelsRequest is the body of POST /v1/deployments/{name}/labels.
type LabelsRequest struct {
	// Task is "classification", "regression", or empty to decide by the
	// values.
	Task   monitor.Task    `json:"task,omitempty"`
	Labels []monitor.Label `json:"labels"`
}

// maxLabelsBodyBytes bounds a labels request: about half a million
// labels.
const maxLabelsBodyBytes = 32 << 20

// MountLabels adds POST /v1/deployments/{name}/labels, the validation
// job: the labels (request id, true value) are joined with the
// deployment's logged predictions and the answer is a
// monitor.QualityReport, per version: accuracy for classes, MAE and RMSE
// for numbers. A deployment that does not exist is 404
// deployment/not_found.
func (h *Handler) MountLabels(l Labels) {
	h.mux.HandleFunc("POST /v1/deployments/{name}/labels", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if _, err := h.st.GetDeployment(r.Context(), name); err != nil {
			h.writeError(w, r, storeError(err, name))
			return
		}
		if err := checkContentType(r, "application/json"); err != nil {
			h.writeError(w, r, err)
			return
		}
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLabelsBodyBytes))
		if err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				h.writeError(w, r, &apiError{http.StatusRequestEntityTooLarge, codeTooLarge,
					fmt.Sprintf("the labels are larger than %d bytes: send them in several requests", maxLabelsBodyBytes)})
				return
			}
			h.writeError(w, r, &apiError{http.StatusBadRequest, codeMalformed, "cannot read request body: " + err.Error()})
			return
		}
		if err := checkJSONObject(data, "labels request"); err != nil {
			h.writeError(w, r, err)
			return
		}
		var req LabelsRequest
		if err := json.Unmarshal(data, &req); err != nil {
			h.writeError(w, r, &apiError{http.StatusBadRequest, codeMalformed,
				`invalid labels request: ` + strings.TrimPrefix(err.Error(), "json: ") + `: send {"labels": [{"requestId": "...", "label": "..."}]}`})
			return
		}
		for i, l := range req.Labels {
			if l.Key == "" {
				h.writeError(w, r, &apiError{http.StatusBadRequest, codeMalformed,
					fmt.Sprintf("label %d has no requestId: give the X-Request-Id of the prediction it labels", i)})
				return
			}
		}
		rep, err := l.JoinLabels(name, req.Labels, req.Task)
		if err != nil {
			h.writeError(w, r, &apiError{http.StatusBadRequest, codeMalformed, err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	h.mux.HandleFunc("/v1/deployments/{name}/labels", methodNotAllowed("POST"))
}
