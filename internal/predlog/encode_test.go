package predlog

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestJSONPayloads(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    JSONRecord
	}{
		{"none", "", JSONRecord{}},
		{"JSON", `{"outputs":[]}`, JSONRecord{Outputs: json.RawMessage(`{"outputs":[]}`)}},
		{"server-sent events", "data: {\"x\":1}\n\ndata: [DONE]\n\n", JSONRecord{OutputsText: "data: {\"x\":1}\n\ndata: [DONE]\n\n"}},
		{"text", "plain answer\twith tab", JSONRecord{OutputsText: "plain answer\twith tab"}},
		{"binary", "\x00\x01\x02", JSONRecord{OutputsBase64: []byte("\x00\x01\x02")}},
		{"invalid UTF-8", "caf\xe9", JSONRecord{OutputsBase64: []byte("caf\xe9")}},
		{"JSON with binary tensors after it", "{\"outputs\":[]}\x00\x00\x80\x3f", JSONRecord{OutputsBase64: []byte("{\"outputs\":[]}\x00\x00\x80\x3f")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got JSONRecord
			got.Outputs, got.OutputsText, got.OutputsBase64 = jsonTextOrBytes([]byte(tt.payload))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
