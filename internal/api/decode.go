package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"

	"github.com/ebb-ml/ebb/internal/serving"
)

// maxBodyBytes bounds every request body.
const maxBodyBytes = 1 << 20

// deploymentBody is the request body of POST and PUT, and the document a
// PATCH's merge patch applies to.
type deploymentBody struct {
	Name string       `json:"name"`
	Spec serving.Spec `json:"spec"`

	// Output-only fields: accepted and ignored, so that what GET returns
	// (and `ebb get -o yaml` prints) can be sent back as is.
	Status     json.RawMessage `json:"status,omitempty"`
	Generation json.RawMessage `json:"generation,omitempty"`
	CreatedAt  json.RawMessage `json:"createdAt,omitempty"`
	UpdatedAt  json.RawMessage `json:"updatedAt,omitempty"`
}

// readBody reads r's body, at most maxBodyBytes of it.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, &apiError{http.StatusRequestEntityTooLarge, codeTooLarge,
				fmt.Sprintf("request body is larger than %d bytes", maxBodyBytes)}
		}
		return nil, &apiError{http.StatusBadRequest, codeMalformed, "cannot read request body: " + err.Error()}
	}
	return b, nil
}

// checkJSONObject returns a request/malformed error unless data is one
// well-formed JSON object.
func checkJSONObject(data []byte, what string) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return &apiError{http.StatusBadRequest, codeMalformed, what + " is empty: send a JSON object"}
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return &apiError{http.StatusBadRequest, codeMalformed, what + " is not valid JSON: " + strings.TrimPrefix(err.Error(), "json: ")}
	}
	if _, ok := v.(map[string]any); !ok {
		return &apiError{http.StatusBadRequest, codeMalformed, what + " must be a JSON object"}
	}
	return nil
}

// decodeDeployment decodes a deployment body strictly: a syntax error is
// request/malformed, and unknown fields and values of the wrong type or form
// are one deployment/invalid error that names every such field.
func decodeDeployment(data []byte) (deploymentBody, error) {
	var b deploymentBody
	if err := checkJSONObject(data, "request body"); err != nil {
		return b, err
	}
	if fes := checkFields("", data, reflect.TypeFor[deploymentBody]()); len(fes) > 0 {
		return b, invalid(&serving.ValidationError{Errors: fes})
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		// checkFields should have caught it; report what the decoder says.
		return b, &apiError{http.StatusBadRequest, codeInvalid, "invalid deployment: " + strings.TrimPrefix(err.Error(), "json: ")}
	}
	return b, nil
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// checkFields reports, with full field paths, every unknown field in data
// and every value that does not decode into its field of type t. data must
// be valid JSON.
func checkFields(path string, data json.RawMessage, t reflect.Type) []*serving.FieldError {
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := json.Unmarshal(data, reflect.New(t).Interface()); err != nil {
			return []*serving.FieldError{{Field: path, Message: valueMessage(err)}}
		}
		return nil
	}
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return []*serving.FieldError{{Field: path, Message: "must be a JSON object, got " + jsonKind(data)}}
	}
	fields := jsonFields(t)
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []*serving.FieldError
	for _, k := range keys {
		p := k
		if path != "" {
			p = path + "." + k
		}
		ft, ok := fields[k]
		if !ok {
			errs = append(errs, &serving.FieldError{Field: p, Message: "unknown field: check its spelling and case"})
			continue
		}
		errs = append(errs, checkFields(p, obj[k], ft)...)
	}
	return errs
}

// jsonFields maps the JSON names of t's exported fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	return m
}

// valueMessage turns a decoding error for one value into words for users.
func valueMessage(err error) string {
	if ute, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return fmt.Sprintf("must be %s, got %s", typeWords(ute.Type), ute.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func typeWords(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}

func jsonKind(data []byte) string {
	var v any
	_ = json.Unmarshal(data, &v)
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	}
	return "an object"
}
