package queue

import "time"

// RecordView is a request's record as the gateway's async API shows it
// (GET /v2/async lists them; ebb async list and get print them): the
// record without the result's body.
type RecordView struct {
	ID         string    `json:"id"`
	Deployment string    `json:"deployment"`
	Version    string    `json:"version,omitempty"`
	State      State     `json:"state"`
	CreatedAt  time.Time `json:"createdAt"`
	ExpiresAt  time.Time `json:"expiresAt"`
	// Attempts counts the runs so far (where the store keeps it).
	Attempts int `json:"attempts,omitempty"`
	// ResultStatus and CompletedAt are set once done: the status the
	// chain answered with, and when.
	ResultStatus int        `json:"resultStatus,omitempty"`
	CompletedAt  *time.Time `json:"completedAt,omitempty"`
	// Callback delivery, when the request has a callback URL.
	Callback         string        `json:"callback,omitempty"`
	CallbackState    CallbackState `json:"callbackState,omitempty"`
	CallbackAttempts int           `json:"callbackAttempts,omitempty"`
	CallbackError    string        `json:"callbackError,omitempty"`
}

// View returns r as the async API shows it.
func (r Record) View() RecordView {
	v := RecordView{ID: r.ID, Deployment: r.Deployment, Version: r.Version, State: r.State,
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, Attempts: r.Attempts, Callback: r.Callback,
		CallbackState: r.CallbackState, CallbackAttempts: r.CallbackAttempts, CallbackError: r.CallbackError}
	if r.Result != nil {
		v.ResultStatus = r.Result.Status
		if !r.Result.CompletedAt.IsZero() {
			at := r.Result.CompletedAt
			v.CompletedAt = &at
		}
	}
	return v
}

// RecordList is the body of GET /v2/async.
type RecordList struct {
	Requests []RecordView `json:"requests"`
}
