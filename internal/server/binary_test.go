package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ebb-ml/ebb/internal/oip"
)

// post sends body to model m's infer endpoint of s, with the
// Inference-Header-Content-Length header when header is not "".
func post(s *Server, body []byte, header string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/v2/models/m/infer", bytes.NewReader(body))
	if header != "" {
		req.Header.Set(oip.HeaderInferenceHeaderLength, header)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

// binaryBody is a JSON header followed by raw bytes, and the header's
// length as the Inference-Header-Content-Length value.
func binaryBody(js string, raw ...byte) ([]byte, string) {
	return append([]byte(js), raw...), strconv.Itoa(len(js))
}

func f32s(v ...float32) []byte {
	var b []byte
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

func TestBinaryRequest(t *testing.T) {
	s := New("m", &fakeModel{width: 2}, Options{})
	body, h := binaryBody(`{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","parameters":{"binary_data_size":16}}],"outputs":[{"name":"score","parameters":{"binary_data":true}},{"name":"label"}]}`, f32s(1, 2, -3, -4)...)
	rec := post(s, body, h)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	n, err := strconv.Atoi(rec.Header().Get(oip.HeaderInferenceHeaderLength))
	if err != nil {
		t.Fatalf("Inference-Header-Content-Length: %v", err)
	}
	if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(rec.Body.Len()) {
		t.Errorf("Content-Length = %s, body has %d bytes", cl, rec.Body.Len())
	}
	wantJSON := `{"model_name":"m","outputs":[{"name":"score","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}},{"name":"label","datatype":"INT64","shape":[2],"data":[1,0]}]}`
	if got := rec.Body.String()[:n]; got != wantJSON {
		t.Errorf("JSON part:\n got %s\nwant %s", got, wantJSON)
	}
	if got, want := rec.Body.Bytes()[n:], f32s(3, -7); !bytes.Equal(got, want) {
		t.Errorf("binary part = %v, want %v", got, want)
	}
}

// TestBinaryRequestErrors: every mistake in binary tensor data is a 400
// naming what is wrong, found before the data is decoded.
func TestBinaryRequestErrors(t *testing.T) {
	s := New("m", &fakeModel{width: 2}, Options{MaxRequestElements: 1 << 26})
	input := func(params string) string {
		return `{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","parameters":` + params + `}]}`
	}
	tests := []struct {
		name    string
		body    []byte
		header  string
		status  int
		wantErr string
	}{
		{"header not a number", []byte(input(`{"binary_data_size":8}`)), "ten", 400, `header Inference-Header-Content-Length is "ten"`},
		{"header past the body", []byte(input(`{}`)), "9999", 400, "from 1 to the body's"},
		{"header zero", []byte(input(`{}`)), "0", 400, "request body is empty"},
		{"no header", append([]byte(input(`{"binary_data_size":8}`)), f32s(1, 2)...), "", 400, "Inference-Header-Content-Length header"},
		{"size past the data", mustBody(input(`{"binary_data_size":12}`), f32s(1, 2)), "", 400, `input "x": binary_data_size is 12 but only 8 bytes`},
		{"data left over", mustBody(input(`{"binary_data_size":4}`), f32s(1, 2)), "", 400, "the inputs' binary_data_size add up to 4"},
		{"size of another shape", mustBody(input(`{"binary_data_size":4}`), f32s(1)), "", 400, `input "x": binary data: 4 bytes of data do not fit shape [1,2] of FP32: it needs 8 bytes`},
		{"size not a number", mustBody(input(`{"binary_data_size":"8"}`), f32s(1, 2)), "", 400, "binary_data_size is 8: it must be a whole number"},
		{"binary and JSON data", mustBody(`{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2],"parameters":{"binary_data_size":8}}]}`, f32s(1, 2)), "", 400, `input "x" has both binary_data_size and JSON data`},
		{"binary_data not a bool", mustBody(`{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}],"outputs":[{"name":"score","parameters":{"binary_data":1}}]}`, nil), "", 400, `output "score": parameter binary_data is 1: it must be true or false`},
		{"too many elements", mustBody(`{"inputs":[{"name":"x","shape":[67108864,2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}`, f32s(1, 2)), "", 413, "more than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, header := tt.body, tt.header
			if header == "" && bytes.HasPrefix(body, []byte("{")) && bytes.Contains(body, []byte("}]}")) && tt.name != "no header" {
				header = strconv.Itoa(bytes.LastIndex(body, []byte("}")) + 1)
			}
			rec := post(s, body, header)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			var e oip.ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.Contains(e.Error, tt.wantErr) {
				t.Errorf("error %q (%v); want it to contain %q", e.Error, err, tt.wantErr)
			}
		})
	}
}

func mustBody(js string, raw []byte) []byte { return append([]byte(js), raw...) }

// TestBinaryBoundedByBytes: a shape of 16M FP32 elements with 8 bytes of
// binary data is refused without allocating by the shape.
func TestBinaryBoundedByBytes(t *testing.T) {
	s := New("m", &anyShapeModel{}, Options{})
	body, h := binaryBody(`{"inputs":[{"name":"s","shape":[],"datatype":"BYTES","data":["x"]},{"name":"any","shape":[16777216],"datatype":"FP32","parameters":{"binary_data_size":8}}]}`, f32s(1, 2)...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rec := post(s, body, h)
	runtime.ReadMemStats(&after)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "8 bytes of data do not fit shape [16777216] of FP32") {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("a 120-byte request allocated %d bytes", got)
	}
}

// anyShapeModel has a scalar BYTES input "s" and an FP32 input "any"
// declared without a shape (both optional in practice: it echoes what it
// gets), and a scalar output "n" counting the elements of "any".
type anyShapeModel struct{}

func (anyShapeModel) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{
		Inputs:  []oip.TensorMetadata{{Name: "any", Datatype: oip.FP32}, {Name: "s", Datatype: oip.BYTES, Shape: []int64{}}},
		Outputs: []oip.TensorMetadata{{Name: "any_out", Datatype: oip.FP32}, {Name: "s_out", Datatype: oip.BYTES, Shape: []int64{}}},
	}
}

func (anyShapeModel) Predict(_ context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
	out := make([]oip.Tensor, len(in))
	for i, t := range in {
		t.Name += "_out"
		out[i] = t
	}
	return out, nil
}

// TestScalarsAndAnyShape: a scalar string input takes shape [] (data as
// ["x"] or "x") and nothing else; an input declared without a shape takes
// any; metadata shows [] and [-1].
func TestScalarsAndAnyShape(t *testing.T) {
	s := New("m", anyShapeModel{}, Options{})
	code, meta := get(s, "/v2/models/m")
	if code != 200 || !strings.Contains(meta, `{"name":"any","datatype":"FP32","shape":[-1]}`) || !strings.Contains(meta, `{"name":"s","datatype":"BYTES","shape":[]}`) {
		t.Errorf("metadata %d %s", code, meta)
	}
	for _, tt := range []struct {
		name, body, status, want string
	}{
		{"scalar string", `{"inputs":[{"name":"s","shape":[],"datatype":"BYTES","data":["hello"]},{"name":"any","shape":[2,1],"datatype":"FP32","data":[[1],[2]]}]}`, "200",
			`{"model_name":"m","outputs":[{"name":"any_out","datatype":"FP32","shape":[2,1],"data":[1,2]},{"name":"s_out","datatype":"BYTES","shape":[],"data":["hello"]}]}`},
		{"bare scalar, scalar any", `{"inputs":[{"name":"s","shape":[],"datatype":"BYTES","data":"hi"},{"name":"any","shape":[],"datatype":"FP32","data":[7]}]}`, "200",
			`{"model_name":"m","outputs":[{"name":"any_out","datatype":"FP32","shape":[],"data":[7]},{"name":"s_out","datatype":"BYTES","shape":[],"data":["hi"]}]}`},
		{"shape [1] for a scalar", `{"inputs":[{"name":"s","shape":[1],"datatype":"BYTES","data":["x"]},{"name":"any","shape":[],"datatype":"FP32","data":[7]}]}`, "400",
			`{"error":"input \"s\": shape [1] given, model expects [] (-1 is any size)"}`},
	} {
		rec := post(s, []byte(tt.body), "")
		if strconv.Itoa(rec.Code) != tt.status || strings.TrimSpace(rec.Body.String()) != tt.want {
			t.Errorf("%s: %d %s\nwant %s %s", tt.name, rec.Code, rec.Body, tt.status, tt.want)
		}
	}
}

// TestSpecialValuesREST: NaN and the infinities travel both ways over REST,
// as Triton writes them and as strings or null.
func TestSpecialValuesREST(t *testing.T) {
	s := New("m", anyShapeModel{}, Options{})
	body := `{"inputs":[{"name":"s","shape":[],"datatype":"BYTES","data":["NaN"]},{"name":"any","shape":[7],"datatype":"FP32","data":[NaN,Infinity,-Infinity,"NaN","-Infinity",null,1.5]}]}`
	rec := post(s, []byte(body), "")
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	want := `{"name":"any_out","datatype":"FP32","shape":[7],"data":[NaN,Infinity,-Infinity,NaN,-Infinity,NaN,1.5]}`
	if !strings.Contains(rec.Body.String(), want) {
		t.Errorf("response %s lacks %s", rec.Body, want)
	}
	if !strings.Contains(rec.Body.String(), `"data":["NaN"]`) {
		t.Errorf("the string NaN of a BYTES input changed: %s", rec.Body)
	}
	resp, err := oip.ParseResponse(rec.Body.Bytes(), rec.Body.Len())
	if err != nil {
		t.Fatal(err)
	}
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	if diff := cmp.Diff([]float32{nan, inf, -inf, nan, -inf, nan, 1.5}, resp.Outputs[0].Data, cmpopts.EquateNaNs()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
