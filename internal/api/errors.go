package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Error codes, the stable machine-readable half of every error response.
const (
	codeNotFound         = "deployment/not_found"
	codeExists           = "deployment/exists"
	codeInvalid          = "deployment/invalid"
	codeMalformed        = "request/malformed"
	codeTooLarge         = "request/too_large"
	codeUnsupportedMedia = "request/unsupported_media_type"
	codeMethodNotAllowed = "request/method_not_allowed"
	codeRouteNotFound    = "request/not_found"
	codeInternal         = "internal"
	codeUnavailable      = "store/unavailable"
)

// ErrorBody is the JSON body of every error response:
// {"error":{"code":"deployment/not_found","message":"..."}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the code and message of an error response. Code is stable
// and meant for programs; Message is for people and says how to fix it.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// apiError is an error with its HTTP status and code. Handlers return it
// (also from inside store update functions, which pass it through).
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func notFound(name string) *apiError {
	return &apiError{http.StatusNotFound, codeNotFound,
		fmt.Sprintf("deployment %q not found: list deployments with `ebb get deployments`", name)}
}

func exists(name string) *apiError {
	return &apiError{http.StatusConflict, codeExists,
		fmt.Sprintf("deployment %q already exists: replace it with `ebb deploy -f` (PUT /v1/deployments/%s), change it with PATCH, or delete it first", name, name)}
}

// invalid turns a *serving.ValidationError (or any error) into a
// deployment/invalid error whose message lists every problem.
func invalid(err error) *apiError {
	return &apiError{http.StatusBadRequest, codeInvalid, err.Error()}
}

// validate defaults d's spec and validates d.
func validate(d *serving.Deployment) error {
	d.Spec.Default()
	if err := d.Validate(); err != nil {
		return invalid(err)
	}
	return nil
}

// writeError writes err as an error response. Errors that are not
// *apiError are logged and answered with a 500 that reveals nothing.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if _, ok := errors.AsType[*auth.Error](err); ok {
		auth.WriteError(w, err)
		return
	}
	ae, ok := errors.AsType[*apiError](err)
	if !ok && errors.Is(err, store.ErrUnavailable) {
		h.log.Warn("admin request failed: store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "5")
		ae, ok = &apiError{http.StatusServiceUnavailable, codeUnavailable, err.Error() + "; nothing was changed: retry when it is back"}, true
	}
	if !ok {
		h.log.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = &apiError{http.StatusInternalServerError, codeInternal, "internal error: see the ebb server log for details"}
	}
	writeJSON(w, ae.status, ErrorBody{ErrorDetail{Code: ae.code, Message: clipMessage(ae.message)}})
}

// Bounds on what an error message echoes of a request: a quoted value
// (a spec field, a file name) keeps its first maxQuoted bytes, and a whole
// message its first maxMessage, so that a 100 KB python.class or env key
// is never answered with 100 KB.
const (
	maxQuoted  = 256
	maxMessage = 4096
)

// quoteClipped quotes s as %q does, keeping its first maxQuoted bytes and
// saying how long it was.
func quoteClipped(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(cutRunes(s, maxQuoted)), len(s))
}

// clipMessage clips each double-quoted Go string literal in msg (the %q
// of a user's value) that is longer than maxQuoted, then msg itself to
// maxMessage bytes.
func clipMessage(msg string) string {
	if len(msg) <= maxQuoted {
		return msg
	}
	var b strings.Builder
	for i := 0; i < len(msg); {
		j := strings.IndexByte(msg[i:], '"')
		if j < 0 {
			b.WriteString(msg[i:])
			break
		}
		b.WriteString(msg[i : i+j])
		i += j
		q, err := strconv.QuotedPrefix(msg[i:])
		if err != nil {
			b.WriteByte('"')
			i++
			continue
		}
		i += len(q)
		if len(q) <= maxQuoted+2 {
			b.WriteString(q)
			continue
		}
		v, err := strconv.Unquote(q)
		if err != nil { // cannot be: QuotedPrefix accepted it
			v = q
		}
		b.WriteString(quoteClipped(v))
	}
	out := b.String()
	if len(out) > maxMessage {
		out = cutRunes(out, maxMessage) + fmt.Sprintf("... (message clipped: %d bytes in all)", len(out))
	}
	return out
}

// cutRunes returns s's first n bytes or fewer, not splitting a UTF-8
// sequence.
func cutRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
