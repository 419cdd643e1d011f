package httpproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// serveOpenAI passes a request of the OpenAI API (/v1/...) through to the
// server behind, unchanged and unbuffered but for the body's "model" field,
// which becomes the upstream's name for the model when it differs from the
// deployment's. OIP v2 requests are refused: the server does not speak it.
func (h *handler) serveOpenAI(w http.ResponseWriter, req *http.Request) {
	r := h.r
	if !strings.HasPrefix(req.URL.Path, "/v1/") {
		writeError(w, http.StatusNotFound, fmt.Sprintf(
			"deployment %q serves the OpenAI API, not the Open Inference Protocol: send requests to the gateway's /openai/v1/ (chat/completions, completions, embeddings, models)",
			r.opts.Deployment))
		return
	}
	if r.opts.UpstreamModel == r.opts.Deployment || req.Method != http.MethodPost || req.Body == nil || req.Body == http.NoBody {
		h.proxy.ServeHTTP(w, req)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.opts.MaxRequestBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", tooBig.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "cannot read request body: "+err.Error())
		return
	}
	if renamed, ok := replaceString(body, "model", r.opts.UpstreamModel); ok {
		body = renamed
	}
	out := req.WithContext(req.Context())
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	h.proxy.ServeHTTP(w, out)
}
