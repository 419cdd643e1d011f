package httpproxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// The server behind may know the model by another name than the
// deployment's (Options.UpstreamModel). Requests reach it under its name;
// its answers are renamed back, so that a client sees the name it asked
// for: "name" in metadata and readiness, "model_name" in an infer answer
// (in the JSON header of a binary-data answer too).

// maxRenameBytes bounds the answers the replica buffers to rename; a larger
// one passes unchanged.
const maxRenameBytes = 64 << 20

// binaryHeader is the binary tensor data extension's header: the length of
// the JSON that opens a body followed by binary tensor data.
const binaryHeader = "Inference-Header-Content-Length"

// renameAnswer is the renaming proxy's ModifyResponse: it puts the
// deployment's name in a successful JSON answer of the server behind.
func (r *Replica) renameAnswer(resp *http.Response) error {
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	key := "name"
	if strings.HasSuffix(resp.Request.URL.Path, "/infer") {
		key = "model_name"
	}
	return renameIn(resp, key, r.opts.Deployment)
}

// renameIn sets the top-level string field key of resp's JSON body (or of
// the JSON header of a binary-data body) to name. A body that is not JSON,
// lacks the field, or is larger than maxRenameBytes is left as it was.
func renameIn(resp *http.Response, key, name string) error {
	jsonLen := -1
	if v := resp.Header.Get(binaryHeader); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil
		}
		jsonLen = n
	} else if !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		return nil
	}
	if resp.ContentLength > maxRenameBytes {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRenameBytes+1))
	if err != nil {
		return err // the proxy answers 502
	}
	if len(body) > maxRenameBytes {
		resp.Body = readCloser{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
		return nil
	}
	resp.Body.Close()
	head, rest := body, []byte(nil)
	if jsonLen >= 0 {
		if jsonLen > len(body) {
			jsonLen = len(body)
		}
		head, rest = body[:jsonLen], body[jsonLen:]
	}
	if renamed, ok := replaceString(head, key, name); ok {
		if jsonLen >= 0 {
			resp.Header.Set(binaryHeader, strconv.Itoa(len(renamed)))
		}
		body = append(renamed, rest...)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// replaceString returns the JSON object doc with the string value of its
// top-level field key replaced by value, every other byte as it was. It
// reports false, and returns nil, when doc is not an object or its field
// key is missing or not a string.
func replaceString(doc []byte, key, value string) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		k, _ := tok.(string)
		if k != key {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, false
			}
			continue
		}
		afterKey := dec.InputOffset()
		var old string
		if err := dec.Decode(&old); err != nil {
			return nil, false
		}
		end := int(dec.InputOffset())
		start := int(afterKey)
		for start < end && doc[start] != '"' {
			start++ // the colon and white space before the value
		}
		enc, err := json.Marshal(value)
		if err != nil {
			return nil, false
		}
		out := make([]byte, 0, len(doc)-(end-start)+len(enc))
		out = append(append(append(out, doc[:start]...), enc...), doc[end:]...)
		return out, true
	}
	return nil, false
}
