package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
	"unsafe"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/valyala/fasthttp"
)

// Answers the gateway writes itself. Each write* function sets the status
// and the body of ctx's response and returns the status.

func writeUnavailable(ctx *fasthttp.RequestCtx, retryAfter int, msg string) int {
	ctx.Response.Header.Set("Retry-After", strconv.Itoa(retryAfter))
	return writeError(ctx, http.StatusServiceUnavailable, msg)
}

func writeError(ctx *fasthttp.RequestCtx, code int, msg string) int {
	writeJSON(ctx, code, oip.ErrorResponse{Error: msg})
	return code
}

// errorBody is the OIP v2 error body plus a code that names the error for
// clients that act on it.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// Error codes the gateway adds to its errors.
const (
	codeScaledToZero    = "deployment/scaled_to_zero"
	codeVersionNotFound = "deployment/version_not_found"
	codeNoMetadata      = "deployment/metadata_unavailable"
	codeTenantQueueFull = "tenant/queue_full"
	codeBadPriority     = "request/invalid_priority"
)

func writeErrorCode(ctx *fasthttp.RequestCtx, status int, code, msg string) int {
	writeJSON(ctx, status, errorBody{Error: msg, Code: code})
	return status
}

// writeJSON replaces ctx's response body with v as JSON.
func writeJSON(ctx *fasthttp.RequestCtx, code int, v any) {
	ctx.Response.ResetBody()
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(code)
	_ = json.NewEncoder(ctx).Encode(v)
}

// writeText answers as net/http's http.Error does.
func writeText(ctx *fasthttp.RequestCtx, code int, msg string) {
	ctx.Response.ResetBody()
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	ctx.SetStatusCode(code)
	ctx.SetBodyString(msg + "\n")
}

// pageNotFound answers a path the gateway does not serve, as
// http.ServeMux does.
func pageNotFound(ctx *fasthttp.RequestCtx) {
	writeText(ctx, http.StatusNotFound, "404 page not found")
}

// methodNotAllowed answers a method a path does not take, as http.ServeMux
// does.
func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	writeText(ctx, http.StatusMethodNotAllowed, "Method Not Allowed")
}

// s2b returns s as bytes without copying, for fasthttp calls that copy
// them and never write to them.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// b2s returns b as a string without copying: only for strings that do not
// outlive b (a map lookup, a comparison, a message that is copied).
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
