package servertest

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"

	"github.com/ebb-ml/ebb/internal/queue"
)

// Queued runs req, a request as the async queue keeps it (its body,
// content type and binary header length), through h, a replica server
// serving model, in process, and returns the answer as the queue keeps a
// result: status, content type, body and the answer's header length. It
// lets a test's stand-in gateway answer as a real replica would.
func Queued(ctx context.Context, h http.Handler, model string, req *queue.Request) queue.Result {
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v2/models/"+model+"/infer", bytes.NewReader(req.Body))
	r.Header.Set("Content-Type", req.ContentType)
	if req.HeaderLength > 0 {
		r.Header.Set("Inference-Header-Content-Length", strconv.FormatInt(req.HeaderLength, 10))
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := queue.Result{Status: w.Code, ContentType: w.Header().Get("Content-Type"), Body: w.Body.Bytes()}
	if n, err := strconv.ParseInt(w.Header().Get("Inference-Header-Content-Length"), 10, 64); err == nil {
		res.HeaderLength = n
	}
	return res
}
