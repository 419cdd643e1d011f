package oip

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestClientRoundTrip sends every datatype as a client request, reads it
// as the server does, answers it as the server does and reads the answer
// as a client: JSON and binary, each way.
func TestClientRoundTrip(t *testing.T) {
	for _, binaryIn := range []bool{false, true} {
		for _, binaryOut := range []bool{false, true} {
			name := map[bool]string{false: "json", true: "binary"}
			t.Run(name[binaryIn]+" in, "+name[binaryOut]+" out", func(t *testing.T) {
				var params map[string]any
				if binaryOut {
					params = map[string]any{ParamBinaryDataOutput: true}
				}
				body, jsonLen, err := RequestBody(InferRequest{ID: "7", Parameters: params}, samples(), binaryIn)
				if err != nil {
					t.Fatal(err)
				}
				if !binaryIn && jsonLen != len(body) {
					t.Errorf("JSON length %d of a %d-byte JSON body", jsonLen, len(body))
				}
				var req InferRequest
				if err := ParseRequest(body[:jsonLen], &req); err != nil {
					t.Fatalf("ParseRequest: %v\n%s", err, body[:jsonLen])
				}
				binary, err := BinaryInputs(&req, body[jsonLen:])
				if err != nil {
					t.Fatal(err)
				}
				var got []Tensor
				for i, in := range req.Inputs {
					var tensor Tensor
					if binary != nil && binary[i] != nil {
						tensor, err = DecodeBinary(in, binary[i])
					} else {
						tensor, err = Decode(in)
					}
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, tensor)
				}
				if diff := cmp.Diff(samples(), got, cmpopts.EquateNaNs()); diff != "" {
					t.Errorf("request round trip (-want +got):\n%s", diff)
				}

				names := make([]string, len(got))
				for i, tensor := range got {
					names[i] = tensor.Name
				}
				flags, err := BinaryOutputs(&req, names)
				if err != nil {
					t.Fatal(err)
				}
				respBody, respJSON, err := AppendResponse(nil, &InferResponse{ModelName: "m", ID: req.ID, Outputs: got}, flags)
				if err != nil {
					t.Fatal(err)
				}
				if binaryOut == (respJSON == len(respBody)) {
					t.Errorf("binary output %v but JSON length %d of %d bytes", binaryOut, respJSON, len(respBody))
				}
				resp, err := ParseResponse(respBody, respJSON)
				if err != nil {
					t.Fatalf("ParseResponse: %v", err)
				}
				if resp.ID != "7" || resp.ModelName != "m" {
					t.Errorf("response id %q model %q", resp.ID, resp.ModelName)
				}
				if diff := cmp.Diff(got, resp.Outputs, cmpopts.EquateNaNs()); diff != "" {
					t.Errorf("response round trip (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestParseResponseErrors(t *testing.T) {
	tests := []struct {
		body    string
		jsonLen int
		wantErr string
	}{
		{`{"outputs":[{"name":"y","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}}]}ab`, 92, "binary_data_size is 4 but only 2 bytes"},
		{`not json`, 8, "not an infer response"},
		{`{"outputs":[{"name":"y","datatype":"INT8","shape":[1],"data":[300]}]}`, 69, `decoding output "y"`},
		{`{}`, 3, "outside the body"},
	}
	for _, tt := range tests {
		_, err := ParseResponse([]byte(tt.body), tt.jsonLen)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseResponse(%s) error = %v; want %q", tt.body, err, tt.wantErr)
		}
	}
}
