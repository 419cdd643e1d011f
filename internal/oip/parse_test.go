package oip

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// fastCases are request bodies for the fast path: fast says whether it
// must take them (false: it must leave them to encoding/json).
var fastCases = []struct {
	body string
	fast bool
}{
	{`{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3,4.5,-6e-3,0]}]}`, true},
	{` { "id" : "42" , "inputs" : [ { "name" : "x" , "shape" : [ 1 ] , "datatype" : "INT64" , "data" : [ 7 ] } ] } ` + "\n", true},
	{`{"id":"a","parameters":{"binary_data_output":true,"n":3,"s":"x"},"inputs":[],"outputs":[{"name":"y","parameters":{"binary_data":false}}]}`, true},
	{`{"inputs":[{"name":"x","shape":[],"datatype":"FP64","data":1.5}]}`, true},
	{`{"inputs":[{"name":"x","shape":[2],"datatype":"BYTES","data":["a\"b","\u00e9\n"]}]}`, true},
	{`{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}]}`, true},
	{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}`, true},
	{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"nested":{"a":[1,null]}},"data":[1]}]}`, true},
	{`{"inputs":[{"name":"héllo","shape":[-1,0],"datatype":"X","data":{"a":1}}]}`, true},
	{`{"inputs":[{"data":[true,false,"NaN",null]}]}`, true},
	{`{}`, true},
	{`{"outputs":[]}`, true},

	{`{"Inputs":[]}`, false},                                                                 // another case
	{`{"inputs":[],"extra":1}`, false},                                                       // unknown key
	{`{"id":"a","id":"b"}`, false},                                                           // repeated
	{`{"id":null}`, false},                                                                   // null
	{`{"id":"a\u0062"}`, false},                                                              // escape
	{"{\"id\":\"\xff\"}", false},                                                             // invalid UTF-8
	{`{"inputs":[{"name":"x","shape":[1.0]}]}`, false},                                       // fraction in a shape
	{`{"inputs":[{"name":"x","shape":[99999999999999999999]}]}`, false},                      // overflow
	{`{"inputs":[{"name":"x","data":null}]}`, false},                                         // null data
	{`{"inputs":[{"name":"x","data":[NaN]}]}`, false},                                        // a special token
	{`{"inputs":[{"name":"x","data":[1,]}]}`, false},                                         // trailing comma
	{`{"inputs":[{"name":"x","data":[01]}]}`, false},                                         // leading zero
	{`{"inputs":[{"name":"x","data":[1 2]}]}`, false},                                        // missing comma
	{`{"inputs":[{"name":"x","data":["\x"]}]}`, false},                                       // bad escape
	{`{"inputs":[]} x`, false},                                                               // after the value
	{`{"inputs":[]}{}`, false},                                                               // a second value
	{`{"inputs":[{"name":"x","data":[1]}]`, false},                                           // cut short
	{`{"inputs":3}`, false},                                                                  // wrong type
	{`{"parameters":{"n":1e999}}`, false},                                                    // out of range
	{`{"parameters":{"a":1,"b":"\u0041"}}`, false},                                           // escape in a value
	{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1],"data":[2]}]}`, false}, // repeated
	{``, false},
	{`[]`, false},
}

// TestParseFastAgrees checks the fast path against encoding/json: what it
// takes it decodes exactly as encoding/json does, and it takes the common
// requests.
func TestParseFastAgrees(t *testing.T) {
	for _, tt := range fastCases {
		var got InferRequest
		ok := parseFast([]byte(tt.body), &got)
		if ok != tt.fast {
			t.Errorf("parseFast(%s) = %v; want %v", tt.body, ok, tt.fast)
		}
		checkAgrees(t, []byte(tt.body))
	}
}

// checkAgrees fails when parseFast takes body but decodes it other than
// encoding/json.
func checkAgrees(t *testing.T, body []byte) {
	t.Helper()
	var fast InferRequest
	if !parseFast(body, &fast) {
		if !reflect.DeepEqual(fast, InferRequest{}) {
			t.Errorf("parseFast(%q) declined but changed the request: %+v", body, fast)
		}
		return
	}
	var want InferRequest
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatalf("parseFast took %q, which encoding/json refuses: %v", body, err)
	}
	if !reflect.DeepEqual(fast, want) {
		t.Fatalf("parseFast(%q):\n got %#v\nwant %#v", body, fast, want)
	}
}

// TestParseRequestFastAliases: the fast path's Data is the body's bytes,
// and a request already holding values goes to encoding/json (which
// merges).
func TestParseRequestFastAliases(t *testing.T) {
	body := []byte(`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`)
	var req InferRequest
	if err := ParseRequest(body, &req); err != nil {
		t.Fatal(err)
	}
	if d := req.Inputs[0].Data; &d[0] != &body[bytes.LastIndex(body, []byte(`[1]`))] || cap(d) != len(d) {
		t.Errorf("Data %q does not alias the body, capped", d)
	}
	merged := InferRequest{ID: "kept"}
	if err := ParseRequest(body, &merged); err != nil || merged.ID != "kept" || len(merged.Inputs) != 1 {
		t.Errorf("ParseRequest into a request with an ID: %+v, %v", merged, err)
	}
}

func FuzzParseFast(f *testing.F) {
	for _, tt := range fastCases {
		f.Add([]byte(tt.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkAgrees(t, body)
	})
}

func BenchmarkParseRequest(b *testing.B) {
	body := []byte(`{"inputs":[{"name":"input","shape":[2,10],"datatype":"FP32","data":[0.04534098505973816,-0.044641636312007904,-0.006205954123288393,-0.015998974442481995,0.12501870095729828,0.125198096036911,0.019186997786164284,0.03430885821580887,0.032432325184345245,-0.005219804588705301,0.09256398677825928,-0.044641636312007904,0.03690652921795845,0.0218723863363266,-0.02496015839278698,-0.016658151522278786,0.0007788080256432295,-0.0394933819770813,-0.022516528144478798,-0.021788232028484344]}]}`)
	for _, bench := range []struct {
		name  string
		parse func([]byte, *InferRequest) error
	}{
		{"ParseRequest", ParseRequest},
		{"encoding/json", func(b []byte, r *InferRequest) error { return json.Unmarshal(b, r) }},
	} {
		b.Run(bench.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var req InferRequest
				if err := bench.parse(body, &req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
