package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ebb-ml/ebb/internal/serving/core"
)

// maxNoticeBytes bounds what ReadNotice reads, so a misbehaving child cannot
// make its parent buffer without end.
const maxNoticeBytes = 1 << 20

// Notice is the one message a replica process writes to the pipe its backend
// gave it (ebb replica --notify-fd): either when it became ready, or why it
// could not start. Exactly one of Error and ReadyAt is set.
type Notice struct {
	// ModelLoadedAt is when the engine finished loading the model.
	ModelLoadedAt time.Time `json:"modelLoadedAt,omitzero"`
	// ReadyAt is when the server began accepting requests.
	ReadyAt time.Time `json:"readyAt,omitzero"`
	// Artifact, when the replica fetched its model artifact, says how.
	Artifact *core.ArtifactFetch `json:"artifact,omitempty"`
	// Error says why the replica failed to start, naming the model file and
	// the problem.
	Error string `json:"error,omitempty"`
}

// Err returns the replica's startup failure as an error, or nil when n
// reports readiness.
func (n Notice) Err() error {
	if n.Error == "" {
		return nil
	}
	return errors.New(n.Error)
}

// WriteNotice writes n to w as one JSON line.
func WriteNotice(w io.Writer, n Notice) error {
	b, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encoding readiness notice: %w", err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("writing readiness notice: %w", err)
	}
	return nil
}

// ReadNotice reads the one Notice a replica writes. It returns as soon as the
// notice is complete, without waiting for r to close. A replica that exits
// (closing its end) before writing yields an error wrapping io.EOF. A notice
// that carries an Error is returned with a nil error: check Notice.Err.
func ReadNotice(r io.Reader) (Notice, error) {
	var n Notice
	dec := json.NewDecoder(io.LimitReader(r, maxNoticeBytes))
	if err := dec.Decode(&n); err != nil {
		if errors.Is(err, io.EOF) {
			return n, fmt.Errorf("replica closed its notify pipe without reporting readiness (it probably crashed; see its log): %w", err)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return n, fmt.Errorf("replica closed its notify pipe in the middle of its readiness notice: %w", err)
		}
		return n, fmt.Errorf("reading readiness notice: %w", err)
	}
	if n.Error == "" && n.ReadyAt.IsZero() {
		return n, fmt.Errorf("readiness notice has neither readyAt nor error")
	}
	return n, nil
}
