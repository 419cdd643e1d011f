package httpproxy

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func TestNewChecksOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string // "" for no error
	}{
		{name: "command", opts: Options{Command: []string{"server"}}},
		{name: "upstream", opts: Options{Upstream: "http://127.0.0.1:8000/prefix"}},
		{name: "both", opts: Options{Command: []string{"server"}, Upstream: "http://127.0.0.1:8000"}, want: "not both"},
		{name: "neither", opts: Options{}, want: "set spec.command"},
		{name: "openai", opts: Options{Command: []string{"vllm", "serve"}, Protocol: "openai"}},
		{name: "unknown protocol", opts: Options{Command: []string{"server"}, Protocol: "grpc"}, want: `unknown protocol "grpc": use oip`},
		{name: "not a URL", opts: Options{Upstream: "127.0.0.1:8000"}, want: `upstream "127.0.0.1:8000" is not an http:// or https:// URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("New error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestReplaceString(t *testing.T) {
	tests := []struct {
		name, doc, key, value string
		want                  string // "" for not replaced
	}{
		{name: "first", doc: `{"model_name":"up","outputs":[]}`, key: "model_name", value: "d", want: `{"model_name":"d","outputs":[]}`},
		{name: "later, spaced", doc: "{ \"id\" : \"1\",\n \"model\" :  \"org/M\" , \"x\":{\"model\":\"in\"} }", key: "model", value: "m",
			want: "{ \"id\" : \"1\",\n \"model\" :  \"m\" , \"x\":{\"model\":\"in\"} }"},
		{name: "after a nested object with the key", doc: `{"x":{"model":"in"},"model":"out"}`, key: "model", value: "m", want: `{"x":{"model":"in"},"model":"m"}`},
		{name: "escaped", doc: `{"name":"a\"b\u00e9"}`, key: "name", value: `q"é`, want: `{"name":"q\"é"}`},
		{name: "missing", doc: `{"other":"x"}`, key: "model", value: "m"},
		{name: "not a string", doc: `{"model":3}`, key: "model", value: "m"},
		{name: "not an object", doc: `["model","x"]`, key: "model", value: "m"},
		{name: "broken", doc: `{"model":`, key: "model", value: "m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := replaceString([]byte(tt.doc), tt.key, tt.value)
			if ok != (tt.want != "") || string(got) != tt.want {
				t.Errorf("replaceString(%s) = %s, %v; want %s", tt.doc, got, ok, tt.want)
			}
		})
	}
}

func TestRenameInBinaryAnswer(t *testing.T) {
	head := `{"model_name":"upstream_name","outputs":[{"name":"y","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}}]}`
	tensor := "\x00\x00\x80\x3f"
	resp := &http.Response{
		StatusCode: 200,
		Header:     http.Header{binaryHeader: {strconv.Itoa(len(head))}, "Content-Type": {"application/octet-stream"}},
		Body:       io.NopCloser(strings.NewReader(head + tensor)),
	}
	if err := renameIn(resp, "model_name", "d"); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	wantHead := strings.Replace(head, "upstream_name", "d", 1)
	if string(b) != wantHead+tensor {
		t.Errorf("body %q; want %q", b, wantHead+tensor)
	}
	if got := resp.Header.Get(binaryHeader); got != strconv.Itoa(len(wantHead)) {
		t.Errorf("%s = %s; want %d", binaryHeader, got, len(wantHead))
	}
	if resp.ContentLength != int64(len(b)) || resp.Header.Get("Content-Length") != strconv.Itoa(len(b)) {
		t.Errorf("Content-Length %d / %q; want %d", resp.ContentLength, resp.Header.Get("Content-Length"), len(b))
	}
}
