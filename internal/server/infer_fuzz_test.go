package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"

	"github.com/ebb-ml/ebb/examples/diabetes"
	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/oip"
)

// FuzzInfer posts a body to the REST infer endpoint of a replica server
// that runs the real diabetes model (trees engine, input FP32 [-1, 10]).
// Whatever the body: the handler does not panic; it answers 200, or 400 (or
// 413) with an OIP error body, never a 500; a 200 carries the model's one
// output, which decodes as a valid tensor with one value per input row; and
// the request allocates in proportion to the body, not to the shapes it
// declares.
func FuzzInfer(f *testing.F) {
	f.Add(diabetes.Request)
	m, err := trees.Parse("diabetes", diabetes.Model)
	if err != nil {
		f.Fatal(err)
	}
	s := New("diabetes", m, Options{MaxRequestBytes: 1 << 20})
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v2/models/diabetes/infer", bytes.NewReader(body))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s.ServeHTTP(rec, req)
		runtime.ReadMemStats(&after)
		// The body buffer, the decoded tensors and the output; rows are
		// bounded by the body, 10 values each.
		if got, bound := after.TotalAlloc-before.TotalAlloc, 256*uint64(len(body))+4<<20; got > bound {
			t.Fatalf("a %d-byte infer request allocated %d bytes (bound %d)", len(body), got, bound)
		}

		switch rec.Code {
		case http.StatusOK:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			var e oip.ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("status %d with body %q: want an OIP error body", rec.Code, rec.Body)
			}
			return
		default:
			t.Fatalf("status %d (%s) for body %q: want 200, 400 or 413", rec.Code, rec.Body, body)
		}

		var in oip.InferRequest
		if err := oip.ParseRequest(body, &in); err != nil || len(in.Inputs) != 1 {
			t.Fatalf("200 for a body that is not one infer input: %v", err)
		}
		rows := int64(1)
		if len(in.Inputs[0].Shape) == 2 {
			rows = in.Inputs[0].Shape[0]
		}
		resp, err := oip.ParseResponse(rec.Body.Bytes(), rec.Body.Len())
		if err != nil {
			t.Fatalf("200 with a body that is not an infer response: %v\n%s", err, rec.Body)
		}
		if resp.ModelName != "diabetes" || len(resp.Outputs) != 1 {
			t.Fatalf("response names model %q with %d outputs, want diabetes with 1", resp.ModelName, len(resp.Outputs))
		}
		out := resp.Outputs[0]
		if out.Name != trees.OutputName || out.Datatype != oip.FP32 || len(out.Shape) != 1 || out.Shape[0] != rows {
			t.Fatalf("output %s %s %v, want %s FP32 [%d]", out.Name, out.Datatype, out.Shape, trees.OutputName, rows)
		}
	})
}

// FuzzInferBinary is FuzzInfer for requests with binary tensor data: a
// JSON header of headerLen bytes, then raw data. The same contract holds,
// the memory bound included: binary data is checked against the shapes
// before anything is allocated for it.
func FuzzInferBinary(f *testing.F) {
	js := `{"inputs":[{"name":"input","shape":[1,10],"datatype":"FP32","parameters":{"binary_data_size":40}}],"parameters":{"binary_data_output":true}}`
	f.Add(uint16(len(js)), append([]byte(js), make([]byte, 40)...))
	f.Add(uint16(len(js)), append([]byte(js), make([]byte, 39)...))
	m, err := trees.Parse("diabetes", diabetes.Model)
	if err != nil {
		f.Fatal(err)
	}
	s := New("diabetes", m, Options{MaxRequestBytes: 1 << 20})
	f.Fuzz(func(t *testing.T, headerLen uint16, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v2/models/diabetes/infer", bytes.NewReader(body))
		req.Header.Set(oip.HeaderInferenceHeaderLength, strconv.Itoa(int(headerLen)))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s.ServeHTTP(rec, req)
		runtime.ReadMemStats(&after)
		if got, bound := after.TotalAlloc-before.TotalAlloc, 256*uint64(len(body))+4<<20; got > bound {
			t.Fatalf("a %d-byte infer request allocated %d bytes (bound %d)", len(body), got, bound)
		}
		switch rec.Code {
		case http.StatusOK:
			n, err := strconv.Atoi(cmpHeader(rec, oip.HeaderInferenceHeaderLength, rec.Body.Len()))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := oip.ParseResponse(rec.Body.Bytes(), n); err != nil {
				t.Fatalf("200 with a body that is not an infer response: %v", err)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			var e oip.ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("status %d with body %q: want an OIP error body", rec.Code, rec.Body)
			}
		default:
			t.Fatalf("status %d (%s): want 200, 400 or 413", rec.Code, rec.Body)
		}
	})
}

// cmpHeader returns rec's header h, or def as a string when it is absent.
func cmpHeader(rec *httptest.ResponseRecorder, h string, def int) string {
	if v := rec.Header().Get(h); v != "" {
		return v
	}
	return strconv.Itoa(def)
}
