package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/google/go-cmp/cmp"
)

const row4 = `{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}`

func TestServeHTTP(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		path    string
		body    string
		predict func(context.Context, []oip.Tensor) ([]oip.Tensor, error)
		opts    Options

		wantStatus int
		// wantBody, when set, is compared as JSON with the response.
		wantBody string
		// wantError lists substrings the OIP error message must contain.
		wantError []string
	}{
		// Health and metadata.
		{name: "live", method: "GET", path: "/v2/health/live", wantStatus: 200, wantBody: `{"live":true}`},
		{name: "ready", method: "GET", path: "/v2/health/ready", wantStatus: 200, wantBody: `{"ready":true}`},
		{name: "server metadata", method: "GET", path: "/v2", wantStatus: 200, opts: Options{Version: "1.2.3"},
			wantBody: `{"name":"ebb","version":"1.2.3","extensions":["binary_tensor_data"]}`},
		{name: "model metadata carries the deployment name", method: "GET", path: "/v2/models/iris", wantStatus: 200,
			wantBody: `{"name":"iris","versions":["1"],"platform":"fake",
				"inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],
				"outputs":[{"name":"score","datatype":"FP32","shape":[-1]},{"name":"label","datatype":"INT64","shape":[-1]}]}`},
		{name: "versioned model metadata", method: "GET", path: "/v2/models/iris/versions/1", wantStatus: 200,
			wantBody: `{"name":"iris","versions":["1"],"platform":"fake",
				"inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],
				"outputs":[{"name":"score","datatype":"FP32","shape":[-1]},{"name":"label","datatype":"INT64","shape":[-1]}]}`},
		{name: "unknown version", method: "GET", path: "/v2/models/iris/versions/7", wantStatus: 404, wantError: []string{`"7"`, "iris"}},
		{name: "unknown model metadata", method: "GET", path: "/v2/models/wine", wantStatus: 404, wantError: []string{`"wine"`, `"iris"`}},
		{name: "model ready", method: "GET", path: "/v2/models/iris/ready", wantStatus: 200, wantBody: `{"name":"iris","ready":true}`},
		{name: "unknown model ready", method: "GET", path: "/v2/models/wine/ready", wantStatus: 404, wantError: []string{`"wine"`}},
		{name: "unknown path", method: "GET", path: "/v1/models/iris", wantStatus: 404, wantError: []string{"/v1/models/iris"}},
		{name: "unknown model action", method: "GET", path: "/v2/models/iris/explain", wantStatus: 404, wantError: []string{"explain"}},
		{name: "GET infer", method: "GET", path: "/v2/models/iris/infer", wantStatus: 405, wantError: []string{"POST"}},
		{name: "POST health", method: "POST", path: "/v2/health/live", wantStatus: 405, wantError: []string{"GET"}},
		{name: "replica info", method: "GET", path: "/ebb/v1/replica", wantStatus: 200},

		// Good infer requests.
		{name: "infer flat", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"id":"req-1","inputs":[` + row4 + `]}`,
			wantStatus: 200,
			wantBody: `{"model_name":"iris","model_version":"1","id":"req-1","outputs":[
				{"name":"score","datatype":"FP32","shape":[1],"data":[10]},
				{"name":"label","datatype":"INT64","shape":[1],"data":[1]}]}`},
		{name: "infer nested two rows", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP32","data":[[1,1,1,1],[-1,-1,-1,0.5]]}]}`,
			wantStatus: 200,
			wantBody: `{"model_name":"iris","model_version":"1","outputs":[
				{"name":"score","datatype":"FP32","shape":[2],"data":[4,-2.5]},
				{"name":"label","datatype":"INT64","shape":[2],"data":[1,0]}]}`},
		{name: "infer INT64 into an FP32 input", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"inputs":[{"name":"x","shape":[1,4],"datatype":"INT64","data":[1,2,3,4]}]}`,
			wantStatus: 200,
			wantBody: `{"model_name":"iris","model_version":"1","outputs":[
				{"name":"score","datatype":"FP32","shape":[1],"data":[10]},
				{"name":"label","datatype":"INT64","shape":[1],"data":[1]}]}`},
		{name: "infer versioned", method: "POST", path: "/v2/models/iris/versions/1/infer",
			body:       `{"id":"v","inputs":[` + row4 + `],"outputs":[{"name":"label"}]}`,
			wantStatus: 200,
			wantBody:   `{"model_name":"iris","model_version":"1","id":"v","outputs":[{"name":"label","datatype":"INT64","shape":[1],"data":[1]}]}`},
		{name: "infer requested outputs", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"inputs":[` + row4 + `],"outputs":[{"name":"score"}]}`,
			wantStatus: 200,
			wantBody:   `{"model_name":"iris","model_version":"1","outputs":[{"name":"score","datatype":"FP32","shape":[1],"data":[10]}]}`},

		// Bad infer requests.
		{name: "unknown model infer", method: "POST", path: "/v2/models/wine/infer", body: `{"inputs":[` + row4 + `]}`,
			wantStatus: 404, wantError: []string{`"wine"`}},
		{name: "unknown version infer", method: "POST", path: "/v2/models/iris/versions/2/infer", body: `{"inputs":[` + row4 + `]}`,
			wantStatus: 404, wantError: []string{`"2"`}},
		{name: "empty body", method: "POST", path: "/v2/models/iris/infer", body: ``,
			wantStatus: 400, wantError: []string{"empty"}},
		{name: "malformed JSON", method: "POST", path: "/v2/models/iris/infer", body: `{"inputs":[`,
			wantStatus: 400, wantError: []string{"not valid JSON"}},
		{name: "trailing garbage", method: "POST", path: "/v2/models/iris/infer", body: `{"inputs":[` + row4 + `]} x`,
			wantStatus: 400, wantError: []string{"not valid JSON"}},
		{name: "body is an array", method: "POST", path: "/v2/models/iris/infer", body: `[1,2]`,
			wantStatus: 400, wantError: []string{"JSON object", "array"}},
		{name: "shape is a string", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"inputs":[{"name":"x","shape":"1,4","datatype":"FP32","data":[1,2,3,4]}]}`,
			wantStatus: 400, wantError: []string{"inputs.shape", "array of integers", "string"}},
		{name: "unknown input", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"inputs":[{"name":"y","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`,
			wantStatus: 400, wantError: []string{`unknown input "y"`, `"x" (FP32 [-1,4])`}},
		{name: "missing input", method: "POST", path: "/v2/models/iris/infer", body: `{"inputs":[]}`,
			wantStatus: 400, wantError: []string{`missing input "x"`, "FP32 [-1,4]"}},
		{name: "no inputs field", method: "POST", path: "/v2/models/iris/infer", body: `{}`,
			wantStatus: 400, wantError: []string{`missing input "x"`}},
		{name: "duplicate input", method: "POST", path: "/v2/models/iris/infer", body: `{"inputs":[` + row4 + `,` + row4 + `]}`,
			wantStatus: 400, wantError: []string{`input "x" appears more than once`}},
		{name: "datatype the model cannot convert", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"inputs":[{"name":"x","shape":[1,4],"datatype":"BYTES","data":["a","b","c","d"]}]}`,
			wantStatus: 400, wantError: []string{`input "x"`, "BYTES given", "expects FP32"}},
		{name: "unsupported datatype", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FLOAT","data":[1,2,3,4]}]}`,
			wantStatus: 400, wantError: []string{`input "x"`, "FLOAT given", "expects FP32"}},
		{name: "missing datatype", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"inputs":[{"name":"x","shape":[1,4],"data":[1,2,3,4]}]}`,
			wantStatus: 400, wantError: []string{`input "x"`, "datatype is missing"}},
		{name: "missing shape", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"inputs":[{"name":"x","datatype":"FP32","data":[1,2,3,4]}]}`,
			wantStatus: 400, wantError: []string{`input "x"`, "shape is missing", "[-1,4]"}},
		{name: "wrong rank", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[1,2,3,4]}]}`,
			wantStatus: 400, wantError: []string{`input "x"`, "shape [4] given", "expects [-1,4]"}},
		{name: "wrong fixed dimension", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}`,
			wantStatus: 400, wantError: []string{`input "x"`, "shape [1,3] given", "expects [-1,4]"}},
		{name: "data does not fill the shape", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP32","data":[1,2,3,4]}]}`,
			wantStatus: 400, wantError: []string{`input "x"`, "8 elements", "data has 4"}},
		{name: "data of the wrong type", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,"3",4]}]}`,
			wantStatus: 400, wantError: []string{`input "x"`, "FP32", `"3"`}},
		{name: "negative dimension", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"inputs":[{"name":"x","shape":[-1,4],"datatype":"FP32","data":[1,2,3,4]}]}`,
			wantStatus: 400, wantError: []string{`input "x"`, "negative"}},
		{name: "unknown output", method: "POST", path: "/v2/models/iris/infer",
			body:       `{"inputs":[` + row4 + `],"outputs":[{"name":"proba"}]}`,
			wantStatus: 400, wantError: []string{`unknown output "proba"`, `"score" (FP32 [-1])`}},
		{name: "body over the limit", method: "POST", path: "/v2/models/iris/infer", opts: Options{MaxRequestBytes: 64},
			body:       `{"inputs":[` + row4 + `]}` + strings.Repeat(" ", 64),
			wantStatus: 413, wantError: []string{"64 bytes", "(--max-body-bytes)"}},

		// Engine failures.
		{name: "engine input error", method: "POST", path: "/v2/models/iris/infer", body: `{"inputs":[` + row4 + `]}`,
			predict: func(context.Context, []oip.Tensor) ([]oip.Tensor, error) {
				return nil, &engine.InputError{Message: "feature 3 must be finite"}
			},
			wantStatus: 400, wantError: []string{"feature 3 must be finite"}},
		{name: "engine wrapped input error", method: "POST", path: "/v2/models/iris/infer", body: `{"inputs":[` + row4 + `]}`,
			predict: func(context.Context, []oip.Tensor) ([]oip.Tensor, error) {
				return nil, errors.Join(errors.New("tree 2"), &engine.InputError{Message: "bad row"})
			},
			wantStatus: 400, wantError: []string{"bad row"}},
		{name: "engine failure", method: "POST", path: "/v2/models/iris/infer", body: `{"inputs":[` + row4 + `]}`,
			predict: func(context.Context, []oip.Tensor) ([]oip.Tensor, error) {
				return nil, errors.New("out of memory")
			},
			wantStatus: 500, wantError: []string{"iris", "out of memory"}},
		{name: "engine panic", method: "POST", path: "/v2/models/iris/infer", body: `{"inputs":[` + row4 + `]}`,
			predict: func(context.Context, []oip.Tensor) ([]oip.Tensor, error) {
				panic("index out of range")
			},
			wantStatus: 500, wantError: []string{"index out of range"}},
		{name: "engine output not a tensor", method: "POST", path: "/v2/models/iris/infer", body: `{"inputs":[` + row4 + `]}`,
			predict: func(context.Context, []oip.Tensor) ([]oip.Tensor, error) {
				return []oip.Tensor{{Name: "score", Datatype: oip.FP64, Shape: []int64{1}, Data: map[string]int{}}}, nil
			},
			wantStatus: 500, wantError: []string{"encoding the response", `output "score": data of type map[string]int`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &fakeModel{width: 4, versions: []string{"1"}, predict: tt.predict}
			ts := httptest.NewServer(New("iris", m, tt.opts))
			defer ts.Close()

			req, err := http.NewRequest(tt.method, ts.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d; body %s", resp.StatusCode, tt.wantStatus, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var got any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body is not JSON: %v: %s", err, body)
			}
			if tt.wantBody != "" {
				var want any
				if err := json.Unmarshal([]byte(tt.wantBody), &want); err != nil {
					t.Fatalf("bad wantBody: %v", err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("body mismatch (-want +got):\n%s", diff)
				}
			}
			if tt.wantError != nil {
				var e oip.ErrorResponse
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Fatalf("body %s is not an OIP error (err %v)", body, err)
				}
				for _, sub := range tt.wantError {
					if !strings.Contains(e.Error, sub) {
						t.Errorf("error %q does not mention %q", e.Error, sub)
					}
				}
			}
		})
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

// TestPredictSeesInputsInMetadataOrder checks that the engine receives the
// inputs in the metadata's order whatever order the client sent, and that
// the request context reaches Predict.
func TestPredictSeesInputsInMetadataOrder(t *testing.T) {
	type ctxKey struct{}
	var got []string
	var gotCtx any
	m := &twoInputModel{predict: func(ctx context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
		for _, t := range in {
			got = append(got, t.Name)
		}
		gotCtx = ctx.Value(ctxKey{})
		return nil, nil
	}}
	s := New("m", m, Options{})
	body := `{"inputs":[{"name":"b","shape":[1],"datatype":"INT64","data":[1]},{"name":"a","shape":[1],"datatype":"FP32","data":[2]}]}`
	req := httptest.NewRequest("POST", "/v2/models/m/infer", strings.NewReader(body))
	req = req.WithContext(context.WithValue(req.Context(), ctxKey{}, "from-request"))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if diff := cmp.Diff([]string{"a", "b"}, got); diff != "" {
		t.Errorf("input order (-want +got):\n%s", diff)
	}
	if gotCtx != "from-request" {
		t.Errorf("Predict's context value = %v, want the request's context", gotCtx)
	}
	if diff := cmp.Diff(`{"model_name":"m","outputs":[]}`, strings.TrimSpace(rec.Body.String())); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
}

type twoInputModel struct {
	predict func(ctx context.Context, in []oip.Tensor) ([]oip.Tensor, error)
}

func (m *twoInputModel) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{
		Platform: "fake",
		Inputs: []oip.TensorMetadata{
			{Name: "a", Datatype: oip.FP32, Shape: []int64{1}},
			{Name: "b", Datatype: oip.INT64, Shape: []int64{-1}},
		},
	}
}

func (m *twoInputModel) Predict(ctx context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
	return m.predict(ctx, in)
}

// TestVersions checks which /versions/{v} a replica serves: the registry
// version it was given (Options.ModelVersion), which responses then report
// even when the request names none; or, for a model given by path with no
// version in its metadata, none at all.
func TestVersions(t *testing.T) {
	tests := []struct {
		name        string
		opts        Options
		path        string
		method      string
		wantStatus  int
		wantVersion string // model_version of an infer response
		wantError   string
	}{
		{name: "registry version metadata", opts: Options{ModelVersion: "m:3"}, method: "GET", path: "/v2/models/m/versions/3", wantStatus: 200},
		{name: "registry version ready", opts: Options{ModelVersion: "m:3"}, method: "GET", path: "/v2/models/m/versions/3/ready", wantStatus: 200},
		{name: "registry version infer", opts: Options{ModelVersion: "m:3"}, method: "POST", path: "/v2/models/m/versions/3/infer", wantStatus: 200, wantVersion: "3"},
		{name: "unversioned infer reports the version", opts: Options{ModelVersion: "m:3"}, method: "POST", path: "/v2/models/m/infer", wantStatus: 200, wantVersion: "3"},
		{name: "other version infer", opts: Options{ModelVersion: "m:3"}, method: "POST", path: "/v2/models/m/versions/999/infer", wantStatus: 404,
			wantError: `model "m" has no version "999": this replica serves version 3`},
		{name: "other version metadata", opts: Options{ModelVersion: "m:3"}, method: "GET", path: "/v2/models/m/versions/2", wantStatus: 404, wantError: `no version "2"`},
		{name: "path model has no versions", method: "POST", path: "/v2/models/m/versions/999/infer", wantStatus: 404,
			wantError: "model given by path, which has no registry version"},
		{name: "path model versioned ready", method: "GET", path: "/v2/models/m/versions/1/ready", wantStatus: 404, wantError: "no registry version"},
		{name: "path model unversioned infer", method: "POST", path: "/v2/models/m/infer", wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New("m", &fakeModel{width: 4}, tt.opts)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, strings.NewReader(`{"inputs":[`+row4+`]}`)))
			if rec.Code != tt.wantStatus {
				t.Fatalf("%s %s = %d %s; want %d", tt.method, tt.path, rec.Code, rec.Body, tt.wantStatus)
			}
			if tt.wantError != "" {
				var e oip.ErrorResponse
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.Contains(e.Error, tt.wantError) {
					t.Errorf("error = %s; want it to contain %q", rec.Body, tt.wantError)
				}
			}
			if tt.method == "POST" && rec.Code == 200 {
				var resp oip.InferResponse
				if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
					t.Fatal(err)
				}
				if resp.ModelVersion != tt.wantVersion {
					t.Errorf("model_version = %q; want %q", resp.ModelVersion, tt.wantVersion)
				}
			}
		})
	}
	meta := New("m", &fakeModel{width: 4}, Options{ModelVersion: "diabetes:3"}).meta
	if !slices.Equal(meta.Versions, []string{"3"}) {
		t.Errorf("metadata versions = %v; want [3]", meta.Versions)
	}
	if got := New("m", &fakeModel{width: 4}, Options{ModelVersion: "diabetes:3"}).Info().ModelVersion; got != "diabetes:3" {
		t.Errorf("replica info model version = %q; want diabetes:3", got)
	}
}
