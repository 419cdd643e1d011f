package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"

	sigsjson "sigs.k8s.io/json"

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
// request/malformed, and unknown or duplicate fields (names match
// case-sensitively) and values of the wrong type or form are one
// deployment/invalid error that names every such field.
func decodeDeployment(data []byte) (deploymentBody, error) {
	var b deploymentBody
	if err := checkJSONObject(data, "request body"); err != nil {
		return b, err
	}
	strict, err := sigsjson.UnmarshalStrict(data, &b)
	if err == nil && len(strict) == 0 {
		return b, canonical(&b.Spec)
	}
	fes := fieldErrors(strict)
	if err != nil {
		fes = valueErrors(nil, data, err)
	}
	slices.SortStableFunc(fes, func(a, b *serving.FieldError) int { return strings.Compare(a.Field, b.Field) })
	return deploymentBody{}, invalid(&serving.ValidationError{Errors: fes})
}

// fieldErrors turns sigs.k8s.io/json's strict errors (unknown and
// duplicate fields) into field errors that say what to do.
func fieldErrors(strict []error) []*serving.FieldError {
	var fes []*serving.FieldError
	for _, err := range strict {
		fe, ok := err.(sigsjson.FieldError)
		if !ok {
			fes = append(fes, &serving.FieldError{Message: err.Error()})
			continue
		}
		msg := "unknown field: check its spelling and case"
		if strings.HasPrefix(fe.Error(), "duplicate field") {
			msg = "duplicate field: give it once"
		}
		fes = append(fes, &serving.FieldError{Field: fe.FieldPath(), Message: msg})
	}
	return fes
}

// maxValueErrors bounds the problems valueErrors looks for.
const maxValueErrors = 100

// valueErrors finds every problem in raw, the value at path (JSON object
// keys from the body's top) in a body whose decoding failed with err, a
// value that does not decode into its field. The decoder stops at the
// first such value and says where only for some, so when raw is an object
// and err is not about raw itself, each of its members is decoded again on
// its own, nested at its path in an otherwise empty body, and so on down;
// members that decode report their unknown and duplicate fields.
func valueErrors(path []string, raw json.RawMessage, err error) []*serving.FieldError {
	here := []*serving.FieldError{{Field: strings.Join(path, "."), Message: valueMessage(err)}}
	if ute, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && ute.Field == strings.Join(path, ".") {
		return here
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(raw, &members) != nil {
		return here // not an object: the problem is raw itself
	}
	keys := make([]string, 0, len(members))
	for k := range members {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var fes []*serving.FieldError
	for _, k := range keys {
		if len(fes) >= maxValueErrors {
			break
		}
		p := append(slices.Clip(path), k)
		strict, err := sigsjson.UnmarshalStrict(nested(p, members[k]), new(deploymentBody))
		if err != nil {
			fes = append(fes, valueErrors(p, members[k], err)...)
		} else {
			fes = append(fes, fieldErrors(strict)...)
		}
	}
	if len(fes) == 0 {
		return here // each member decodes on its own: raw as a whole does not
	}
	return fes
}

// nested returns a JSON body that is empty but for value at path.
func nested(path []string, value json.RawMessage) []byte {
	var b bytes.Buffer
	for _, k := range path {
		key, _ := json.Marshal(k)
		b.WriteByte('{')
		b.Write(key)
		b.WriteByte(':')
	}
	b.Write(value)
	b.WriteString(strings.Repeat("}", len(path)))
	return b.Bytes()
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

// canonical rewrites s into the form it has after a JSON round trip, so a
// stored spec and the spec read back from it are the same: an empty map or
// list given in a body (`"limits":{}`) is dropped like an absent one rather
// than kept as a non-nil empty value that marshals differently.
func canonical(s *serving.Spec) error {
	data, err := json.Marshal(s)
	if err != nil {
		return &apiError{http.StatusBadRequest, codeInvalid, "invalid deployment: spec cannot be encoded: " + err.Error()}
	}
	var out serving.Spec
	if err := json.Unmarshal(data, &out); err != nil {
		return &apiError{http.StatusBadRequest, codeInvalid, "invalid deployment: spec cannot be read back: " + err.Error()}
	}
	*s = out
	return nil
}
