package oip

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestAppendResponseMatchesEncodingJSON: for what standard JSON can say,
// AppendResponse writes the bytes encoding/json writes.
func TestAppendResponseMatchesEncodingJSON(t *testing.T) {
	resp := InferResponse{
		ModelName: "m", ModelVersion: "3", ID: "req <1>",
		Parameters: map[string]any{"k": "v"},
		Outputs: []Tensor{
			{Name: "f32", Datatype: FP32, Shape: []int64{2, 3}, Data: []float32{0, -1.5, 1e-7, 3.4e38, 0.1, 123456789}},
			{Name: "f64", Datatype: FP64, Shape: []int64{3}, Data: []float64{1e21, 5e-324, -0.3}},
			{Name: "i", Datatype: INT64, Shape: []int64{2}, Data: []int64{math.MinInt64, math.MaxInt64}},
			{Name: "s", Datatype: BYTES, Shape: []int64{4}, Data: []string{"a\"b\\c\n\t\x01", "Grüße", "\xff", "\u2028<&>"}},
			{Name: "b", Datatype: BOOL, Shape: []int64{1}, Data: []bool{true}},
		},
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(resp); err != nil {
		t.Fatal(err)
	}
	got, n, err := AppendResponse(nil, &resp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(got) {
		t.Errorf("JSON length %d, body %d; want equal without binary outputs", n, len(got))
	}
	if w := strings.TrimSuffix(want.String(), "\n"); string(got) != w {
		t.Errorf("AppendResponse:\n got %s\nwant %s", got, w)
	}
}

func TestAppendResponseSpecialValuesAndTypes(t *testing.T) {
	resp := InferResponse{ModelName: "m", Outputs: samples()}
	got, _, err := AppendResponse(nil, &resp, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`{"name":"f32","datatype":"FP32","shape":[3],"data":[NaN,Infinity,-3.4028235e+38]}`,
		`{"name":"f16","datatype":"FP16","shape":[3],"data":[-1.5,NaN,65500]}`,
		`{"name":"bf16","datatype":"BF16","shape":[3],"data":[0.5,-Infinity,3e+38]}`,
		`{"name":"u8","datatype":"UINT8","shape":[3],"data":[0,128,255]}`,
		`{"name":"u64","datatype":"UINT64","shape":[3],"data":[0,1,18446744073709551615]}`,
		`"data":[-Infinity,5e-324,1.7976931348623157e+308]`,
	} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("response lacks %s:\n%s", want, got)
		}
	}
	// Python's json module reads it; here: the tokens quoted, standard JSON.
	quoted, ok := quoteSpecialFloats(got)
	if !ok {
		t.Fatal("no special tokens found")
	}
	var back InferResponse
	if err := json.Unmarshal(quoted, &back); err != nil {
		t.Fatalf("the response is not JSON once its tokens are quoted: %v\n%s", err, quoted)
	}
}

// TestResponseRoundTrip decodes what AppendResponse writes as Decode reads
// a request: every datatype comes back the same, NaN and infinities too.
func TestResponseRoundTrip(t *testing.T) {
	for _, s := range samples() {
		t.Run(s.Datatype, func(t *testing.T) {
			data, err := AppendData(nil, s)
			if err != nil {
				t.Fatal(err)
			}
			body := []byte(`{"inputs":[{"name":"x","shape":[3],"datatype":"` + s.Datatype + `","data":` + string(data) + `}]}`)
			var req InferRequest
			if err := ParseRequest(body, &req); err != nil {
				t.Fatalf("ParseRequest(%s): %v", body, err)
			}
			got, err := Decode(req.Inputs[0])
			if err != nil {
				t.Fatalf("Decode(%s): %v", data, err)
			}
			got.Name = s.Name
			if s.Datatype == FP16 || s.Datatype == BF16 {
				g, _ := got.Float32s()
				w, _ := s.Float32s()
				if diff := cmp.Diff(w, g, cmpopts.EquateNaNs()); diff != "" {
					t.Errorf("round trip of %s (-want +got):\n%s", data, diff)
				}
				return
			}
			if diff := cmp.Diff(s, got, cmpopts.EquateNaNs()); diff != "" {
				t.Errorf("round trip of %s (-want +got):\n%s", data, diff)
			}
		})
	}
}

func TestAppendResponseBinary(t *testing.T) {
	resp := InferResponse{ModelName: "m", Outputs: []Tensor{
		{Name: "a", Datatype: FP32, Shape: []int64{2}, Data: []float32{1, 2}},
		{Name: "b", Datatype: INT8, Shape: []int64{}, Data: []int8{-1}},
		{Name: "c", Datatype: BYTES, Shape: []int64{1}, Data: []string{"xy"}},
	}}
	body, n, err := AppendResponse([]byte("prefix"), &resp, []bool{true, false, true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(body, []byte("prefix")) {
		t.Fatal("dst was not appended to")
	}
	body = body[len("prefix"):]
	wantJSON := `{"model_name":"m","outputs":[{"name":"a","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}},{"name":"b","datatype":"INT8","shape":[],"data":[-1]},{"name":"c","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":6}}]}`
	if string(body[:n]) != wantJSON {
		t.Errorf("JSON part:\n got %s\nwant %s", body[:n], wantJSON)
	}
	wantBin := []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 2, 0, 0, 0, 'x', 'y'}
	if !bytes.Equal(body[n:], wantBin) {
		t.Errorf("binary part = %v, want %v", body[n:], wantBin)
	}
	if _, _, err := AppendResponse(nil, &InferResponse{Outputs: []Tensor{{Name: "x", Data: 3}}}, nil); err == nil || !strings.Contains(err.Error(), `output "x": data of type int`) {
		t.Errorf("AppendResponse of bad data: error = %v", err)
	}
}

func TestParseRequestSpecialTokens(t *testing.T) {
	body := []byte(`{"id":"NaN Infinity","inputs":[{"name":"x","shape":[6],"datatype":"FP64","data":[NaN, Infinity,-Infinity,Inf,-Inf ,1]}]}`)
	var req InferRequest
	if err := ParseRequest(body, &req); err != nil {
		t.Fatal(err)
	}
	if req.ID != "NaN Infinity" {
		t.Errorf("the id string changed: %q", req.ID)
	}
	got, err := Decode(req.Inputs[0])
	if err != nil {
		t.Fatal(err)
	}
	inf := math.Inf(1)
	if diff := cmp.Diff([]float64{math.NaN(), inf, -inf, inf, -inf, 1}, got.Data, cmpopts.EquateNaNs()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	tests := []struct{ body, wantErr string }{
		{`{"inputs":[{"data":[NaNa]}]}`, "invalid character 'N'"},
		{`{"inputs":[{"data":[Nope]}]}`, "invalid character 'N'"},
		{`{"inputs":[}`, "invalid character '}'"},
		{`{"inputs":3}`, "cannot unmarshal number"},
	}
	for _, tt := range tests {
		var req InferRequest
		if err := ParseRequest([]byte(tt.body), &req); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseRequest(%s) error = %v; want it to contain %q", tt.body, err, tt.wantErr)
		}
	}
}

func TestBinaryInputs(t *testing.T) {
	req := func(params ...map[string]any) *InferRequest {
		r := &InferRequest{}
		for i, p := range params {
			r.Inputs = append(r.Inputs, RequestInput{Name: string(rune('a' + i)), Parameters: p})
		}
		return r
	}
	size := func(n any) map[string]any { return map[string]any{ParamBinaryDataSize: n} }
	got, err := BinaryInputs(req(size(2.0), nil, size(json.Number("3"))), []byte("abcde"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]byte{[]byte("ab"), nil, []byte("cde")}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	withData := req(size(1.0))
	withData.Inputs[0].Data = json.RawMessage(`[1]`)
	tests := []struct {
		name    string
		req     *InferRequest
		binary  string
		wantErr string
	}{
		{"too little", req(size(4.0)), "abc", `input "a": binary_data_size is 4 but only 3 bytes of binary data remain`},
		{"left over", req(size(1.0)), "abc", "3 bytes after its JSON (Inference-Header-Content-Length) but the inputs' binary_data_size add up to 1"},
		{"no binary inputs", req(nil), "abc", "add up to 0"},
		{"fraction", req(size(1.5)), "ab", "must be a whole number"},
		{"negative", req(size(-1.0)), "", "must be a whole number"},
		{"string", req(size("2")), "ab", "must be a whole number"},
		{"both", withData, "a", `input "a" has both binary_data_size and JSON data`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := BinaryInputs(tt.req, []byte(tt.binary))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("BinaryInputs error = %v; want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestBinaryOutputs(t *testing.T) {
	out := func(name string, binary any) RequestOutput {
		return RequestOutput{Name: name, Parameters: map[string]any{ParamBinaryData: binary}}
	}
	tests := []struct {
		name    string
		req     InferRequest
		want    []bool
		wantErr string
	}{
		{"none", InferRequest{}, nil, ""},
		{"all", InferRequest{Parameters: map[string]any{ParamBinaryDataOutput: true}}, []bool{true, true}, ""},
		{"one", InferRequest{Outputs: []RequestOutput{out("y", true)}}, []bool{false, true}, ""},
		{"all but one", InferRequest{Parameters: map[string]any{ParamBinaryDataOutput: true}, Outputs: []RequestOutput{out("x", false), {Name: "y"}}}, []bool{false, true}, ""},
		{"not a bool", InferRequest{Outputs: []RequestOutput{out("x", "yes")}}, nil, `output "x": parameter binary_data is yes: it must be true or false`},
		{"request not a bool", InferRequest{Parameters: map[string]any{ParamBinaryDataOutput: 1.0}}, nil, "request parameter binary_data_output is 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BinaryOutputs(&tt.req, []string{"x", "y"})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v; want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeBinary(t *testing.T) {
	got, err := DecodeBinary(RequestInput{Name: "img", Shape: []int64{2, 2}, Datatype: UINT8}, []byte{1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Tensor{Name: "img", Datatype: UINT8, Shape: []int64{2, 2}, Data: []uint8{1, 2, 3, 4}}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := DecodeBinary(RequestInput{Name: "img", Shape: []int64{2, 2}, Datatype: FP32}, []byte{1, 2, 3, 4}); err == nil || !strings.Contains(err.Error(), `input "img": binary data: 4 bytes of data do not fit shape [2,2] of FP32`) {
		t.Errorf("error = %v", err)
	}
}

// TestTensorMarshalJSON: encoding/json writes tensors as the protocol
// does, UINT8 as numbers and special values as strings Decode reads back.
func TestTensorMarshalJSON(t *testing.T) {
	for _, s := range samples() {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("%s: %v", s.Datatype, err)
		}
		var in RequestInput
		if err := json.Unmarshal(b, &in); err != nil {
			t.Fatalf("%s: %s is not JSON: %v", s.Datatype, b, err)
		}
		got, err := Decode(in)
		if err != nil {
			t.Fatalf("%s: Decode(%s): %v", s.Datatype, b, err)
		}
		if diff := cmp.Diff(s, got, cmpopts.EquateNaNs()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", s.Datatype, diff)
		}
	}
	b, err := json.Marshal(Tensor{Name: "u", Datatype: UINT8, Shape: []int64{2}, Data: []uint8{1, 255}})
	if err != nil || string(b) != `{"name":"u","datatype":"UINT8","shape":[2],"data":[1,255]}` {
		t.Errorf("UINT8 = %s, %v", b, err)
	}
	b, err = json.Marshal(Tensor{Name: "a", Datatype: FP64, Shape: []int64{1}, Data: []any{1.5}})
	if err != nil || string(b) != `{"name":"a","datatype":"FP64","shape":[1],"data":[1.5]}` {
		t.Errorf("[]any data = %s, %v", b, err)
	}
}
