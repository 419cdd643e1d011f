package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/serving"
)

// countingReplica is a replica that counts the requests it gets and keeps
// their bodies; its answers are the echo model's unless fail, given the
// request's count (from 1) and its inputs, says otherwise (a status and a
// message, or 0 to echo).
type countingReplica struct {
	ep     *balance.Endpoint
	hits   atomic.Int32
	mu     sync.Mutex
	bodies [][]byte
}

func newCountingReplica(t *testing.T, id string, fail func(n int32, data []float32) (int, string)) *countingReplica {
	t.Helper()
	return newEchoReplica(t, id, "", fail)
}

// newEchoReplica is newCountingReplica with the echo model's signature
// file (path; "" for the default).
func newEchoReplica(t *testing.T, id, path string, fail func(n int32, data []float32) (int, string)) *countingReplica {
	t.Helper()
	m, err := echo.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	echoed := server.New("m", m, server.Options{ReplicaID: id})
	c := &countingReplica{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/infer") {
			echoed.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		n := c.hits.Add(1)
		c.mu.Lock()
		c.bodies = append(c.bodies, body)
		c.mu.Unlock()
		if fail != nil {
			if code, msg := fail(n, jsonData(body)); code != 0 {
				w.WriteHeader(code)
				_ = json.NewEncoder(w).Encode(oip.ErrorResponse{Error: msg})
				return
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		echoed.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.ep = balance.NewEndpoint(id, srv.URL)
	return c
}

// jsonData returns the data of a JSON request's first input; nil for any
// other body.
func jsonData(body []byte) []float32 {
	var req oip.InferRequest
	if oip.ParseRequest(body, &req) != nil || len(req.Inputs) == 0 {
		return nil
	}
	t, err := oip.Decode(req.Inputs[0])
	if err != nil {
		return nil
	}
	d, _ := t.Data.([]float32)
	return d
}

// rowsRequest is a request of rows rows of input [rows, 2] holding
// 0, 1, 2, ... in JSON, or with binary tensor data (then jsonLen > 0).
func rowsRequest(t *testing.T, rows int, binary bool) (body []byte, jsonLen int, want []float32) {
	t.Helper()
	want = make([]float32, 2*rows)
	for i := range want {
		want[i] = float32(i)
	}
	in := oip.Tensor{Name: "input", Datatype: oip.FP32, Shape: []int64{int64(rows), 2}, Data: want}
	req := oip.InferRequest{ID: "req"}
	if binary {
		req.Parameters = map[string]any{oip.ParamBinaryDataOutput: true}
	}
	body, jsonLen, err := oip.RequestBody(req, []oip.Tensor{in}, binary)
	if err != nil {
		t.Fatal(err)
	}
	if !binary {
		jsonLen = 0
	}
	return body, jsonLen, want
}

// postScatter posts body (binary after jsonLen bytes when jsonLen > 0) to
// deployment m of f and returns the answer.
func postScatter(t *testing.T, f *fixture, body []byte, jsonLen int) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.url+"/v2/models/m/infer", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if jsonLen > 0 {
		req.Header.Set(oip.HeaderInferenceHeaderLength, strconv.Itoa(jsonLen))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

// scatterFixture routes deployment m, with scatter sc, to replicas.
func scatterFixture(t *testing.T, sc serving.Scatter, replicas ...*countingReplica) *fixture {
	t.Helper()
	var eps []*balance.Endpoint
	for _, r := range replicas {
		eps = append(eps, r.ep)
	}
	return newFixture(t, routing.Route{Deployment: "m", Endpoints: eps, Scatter: &sc})
}

// outputOf decodes the one output of an answer.
func outputOf(t *testing.T, resp *http.Response, body []byte) oip.Tensor {
	t.Helper()
	out, err := oip.ParseResponse(body, jsonLength([]byte(resp.Header.Get(oip.HeaderInferenceHeaderLength)), len(body)))
	if err != nil || len(out.Outputs) != 1 {
		t.Fatalf("answer %.300s: %v", body, err)
	}
	if out.ID != "req" {
		t.Errorf("answer id %q; want the request's, req", out.ID)
	}
	return out.Outputs[0]
}

func TestPlanSegments(t *testing.T) {
	tests := []struct {
		rows, segRows, max int
		wantSize, wantN    int
	}{
		{rows: 8, segRows: 4, max: 64, wantSize: 4, wantN: 2},
		{rows: 10, segRows: 3, max: 64, wantSize: 3, wantN: 4}, // 3, 3, 3, 1
		{rows: 100000, segRows: 25000, max: 64, wantSize: 25000, wantN: 4},
		{rows: 10, segRows: 1, max: 3, wantSize: 4, wantN: 3}, // 4, 4, 2
		{rows: 9, segRows: 1, max: 4, wantSize: 3, wantN: 3},  // fewer than max when even
		{rows: 1025, segRows: 1, max: 1024, wantSize: 2, wantN: 513},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%d/%d", tt.rows, tt.segRows, tt.max), func(t *testing.T) {
			size, n := planSegments(tt.rows, tt.segRows, tt.max)
			if size != tt.wantSize || n != tt.wantN {
				t.Errorf("planSegments = %d rows × %d; want %d × %d", size, n, tt.wantSize, tt.wantN)
			}
			if (n-1)*size >= tt.rows || n*size < tt.rows || n > tt.max {
				t.Errorf("%d segments of %d do not cover %d rows within %d segments", n, size, tt.rows, tt.max)
			}
		})
	}
}

func TestScatterJoinsInOrder(t *testing.T) {
	tests := []struct {
		name         string
		rows         int
		sc           serving.Scatter
		binary       bool
		wantSegments int
	}{
		{name: "even", rows: 8, sc: serving.Scatter{SegmentRows: 2}, wantSegments: 4},
		{name: "uneven last segment", rows: 10, sc: serving.Scatter{SegmentRows: 3}, wantSegments: 4},
		{name: "more segments than replicas", rows: 10, sc: serving.Scatter{SegmentRows: 1}, wantSegments: 10},
		{name: "capped by maxSegments", rows: 10, sc: serving.Scatter{SegmentRows: 1, MaxSegments: 3}, wantSegments: 3},
		{name: "binary tensor data", rows: 10, sc: serving.Scatter{SegmentRows: 3}, binary: true, wantSegments: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reps := []*countingReplica{newCountingReplica(t, "r1", nil), newCountingReplica(t, "r2", nil), newCountingReplica(t, "r3", nil)}
			f := scatterFixture(t, tt.sc, reps...)
			body, jsonLen, want := rowsRequest(t, tt.rows, tt.binary)
			resp, out := postScatter(t, f, body, jsonLen)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("= %d %.300s", resp.StatusCode, out)
			}
			if got := resp.Header.Get(segmentsHeader); got != strconv.Itoa(tt.wantSegments) {
				t.Errorf("%s = %q; want %d", segmentsHeader, got, tt.wantSegments)
			}
			if tt.binary != (resp.Header.Get(oip.HeaderInferenceHeaderLength) != "") {
				t.Errorf("binary request answered with %s %q", oip.HeaderInferenceHeaderLength, resp.Header.Get(oip.HeaderInferenceHeaderLength))
			}
			got := outputOf(t, resp, out)
			if !slices.Equal(got.Shape, []int64{int64(tt.rows), 2}) || !slices.Equal(got.Data.([]float32), want) {
				t.Errorf("joined output %v %v; want [%d 2] %v", got.Shape, got.Data, tt.rows, want)
			}
			hits := 0
			for _, r := range reps {
				hits += int(r.hits.Load())
			}
			if hits != tt.wantSegments {
				t.Errorf("replicas got %d requests; want one per segment, %d", hits, tt.wantSegments)
			}
			if s := f.rec.Sample(time.Now()); s.Requests != tt.wantSegments {
				t.Errorf("demand counted %d requests; want one per segment, %d", s.Requests, tt.wantSegments)
			}
		})
	}
}

func TestScatterSpreadsSegments(t *testing.T) {
	var reps []*countingReplica
	for i := range 4 {
		reps = append(reps, newCountingReplica(t, fmt.Sprintf("r%d", i), nil))
	}
	f := scatterFixture(t, serving.Scatter{SegmentRows: 25}, reps...)
	for range 3 {
		body, _, _ := rowsRequest(t, 100, false)
		resp, out := postScatter(t, f, body, 0)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("= %d %.300s", resp.StatusCode, out)
		}
		if ids := strings.Split(resp.Header.Get(replicaHeader), ","); len(ids) != 4 {
			t.Errorf("Ebb-Replica = %q; want the 4 replicas", resp.Header.Get(replicaHeader))
		}
	}
	for _, r := range reps {
		if n := r.hits.Load(); n != 3 {
			t.Errorf("replica %s got %d segments of 3 requests; want one of each", r.ep.ID, n)
		}
	}
}

func TestScatterUntouched(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{name: "at segmentRows", body: `{"id":"x","inputs":[{"name":"input","shape":[4,2],"datatype":"FP32","data":[1,2,3,4,5,6,7,8]}]}`},
		{name: "no common batch dimension", body: `{"inputs":[{"name":"input","shape":[5,1],"datatype":"FP32","data":[1,2,3,4,5]},{"name":"b","shape":[6],"datatype":"FP32","data":[1,2,3,4,5,6]}]}`},
		{name: "a scalar input", body: `{"inputs":[{"name":"input","shape":[6],"datatype":"FP32","data":[1,2,3,4,5,6]},{"name":"s","shape":[],"datatype":"FP32","data":[1]}]}`},
		{name: "per-input parameters", body: `{"inputs":[{"name":"input","shape":[6],"datatype":"FP32","parameters":{"content_type":"np"},"data":[1,2,3,4,5,6]}]}`},
		{name: "not JSON", body: `{"inputs":[{"name":"input","shape":[6,1],"datatype":"FP32","data":[1,2,3,4,5,6]}` + strings.Repeat(" ", 20)},
		{name: "data that does not decode", body: `{"inputs":[{"name":"input","shape":[6,1],"datatype":"FP32","data":[1,2,3,"x",5,6]}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r1, r2 := newCountingReplica(t, "r1", nil), newCountingReplica(t, "r2", nil)
			f := scatterFixture(t, serving.Scatter{SegmentRows: 4}, r1, r2)
			resp, out := postScatter(t, f, []byte(tt.body), 0)
			if resp.Header.Get(segmentsHeader) != "" {
				t.Errorf("split: %s = %q (%d %.200s)", segmentsHeader, resp.Header.Get(segmentsHeader), resp.StatusCode, out)
			}
			var got [][]byte
			for _, r := range []*countingReplica{r1, r2} {
				got = append(got, r.bodies...)
			}
			if len(got) != 1 || string(got[0]) != tt.body {
				t.Errorf("replicas got %q; want the request's body once, unchanged", got)
			}
		})
	}
}

func TestScatterRetriesFailedSegment(t *testing.T) {
	// Two segments over two replicas, one of which fails a segment once
	// (an error answer) or for good (nothing listens): the segment is
	// retried on the other.
	tests := []struct {
		name      string
		other     func(t *testing.T) (*balance.Endpoint, func() int32)
		wantTotal int32 // requests the two replicas got
	}{
		{name: "answers 500 once", wantTotal: 3, other: func(t *testing.T) (*balance.Endpoint, func() int32) {
			flaky := newCountingReplica(t, "flaky", func(n int32, _ []float32) (int, string) {
				if n == 1 {
					return http.StatusInternalServerError, "flaky once"
				}
				return 0, ""
			})
			return flaky.ep, func() int32 { return flaky.hits.Load() }
		}},
		{name: "does not answer", wantTotal: 2, other: func(t *testing.T) (*balance.Endpoint, func() int32) {
			return deadEndpoint(t, "dead"), func() int32 { return 0 }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := newCountingReplica(t, "good", nil)
			other, hits := tt.other(t)
			f := newFixture(t, routing.Route{Deployment: "m", Scatter: &serving.Scatter{SegmentRows: 3}, Endpoints: []*balance.Endpoint{other, good.ep}})
			body, _, want := rowsRequest(t, 6, false)
			resp, out := postScatter(t, f, body, 0)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("= %d %.300s", resp.StatusCode, out)
			}
			if got := outputOf(t, resp, out); !slices.Equal(got.Data.([]float32), want) {
				t.Errorf("joined output %v; want %v", got.Data, want)
			}
			if n := hits() + good.hits.Load(); n != tt.wantTotal || good.hits.Load() < 1 {
				t.Errorf("replicas got %d requests (good %d); want %d", n, good.hits.Load(), tt.wantTotal)
			}
		})
	}
}

func TestScatterErrorNamesSegment(t *testing.T) {
	// Row 7 holds 666, which every replica refuses: segment 2 (rows 6 to
	// 8) fails.
	tests := []struct {
		name     string
		code     int
		wantHits int32 // requests with the bad row, over both replicas
		wantIn   []string
	}{
		{name: "server error, retried", code: http.StatusInternalServerError, wantHits: 2,
			wantIn: []string{"segment 2 of 4 (counting from 0: rows 6 to 8 of the request's 10) failed", "2 replicas failed", "answered 500: bad row 666"}},
		{name: "client error, final", code: http.StatusBadRequest, wantHits: 1,
			wantIn: []string{"segment 2 of 4", "rows 6 to 8", "answered 400: bad row 666"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bad atomic.Int32
			refuse := func(_ int32, data []float32) (int, string) {
				if slices.Contains(data, 666) {
					bad.Add(1)
					return tt.code, "bad row 666"
				}
				return 0, ""
			}
			f := scatterFixture(t, serving.Scatter{SegmentRows: 3}, newCountingReplica(t, "r1", refuse), newCountingReplica(t, "r2", refuse))
			data := make([]string, 20)
			for i := range data {
				data[i] = strconv.Itoa(i)
			}
			data[14] = "666" // row 7
			body := `{"inputs":[{"name":"input","shape":[10,2],"datatype":"FP32","data":[` + strings.Join(data, ",") + `]}]}`
			resp, out := postScatter(t, f, []byte(body), 0)
			if resp.StatusCode != tt.code {
				t.Fatalf("= %d %s; want %d", resp.StatusCode, out, tt.code)
			}
			var e errorBody
			if err := json.Unmarshal(out, &e); err != nil || e.Code != codeSegmentFailed {
				t.Errorf("error body %s: want code %s", out, codeSegmentFailed)
			}
			for _, w := range tt.wantIn {
				if !strings.Contains(e.Error, w) {
					t.Errorf("error %q; want it to say %q", e.Error, w)
				}
			}
			if n := bad.Load(); n != tt.wantHits {
				t.Errorf("the failing segment was sent %d times; want %d", n, tt.wantHits)
			}
		})
	}
}

func TestScatterMismatchedOutputs(t *testing.T) {
	// One replica answers one column where the other echoes two.
	narrow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rows := len(jsonData(body)) / 2
		zeros := strings.TrimSuffix(strings.Repeat("0,", rows), ",")
		fmt.Fprintf(w, `{"model_name":"m","outputs":[{"name":"input","datatype":"FP32","shape":[%d,1],"data":[%s]}]}`, rows, zeros)
	}))
	t.Cleanup(narrow.Close)
	f := newFixture(t, routing.Route{Deployment: "m", Scatter: &serving.Scatter{SegmentRows: 3},
		Endpoints: []*balance.Endpoint{balance.NewEndpoint("narrow", narrow.URL), newCountingReplica(t, "wide", nil).ep}})
	body, _, _ := rowsRequest(t, 6, false)
	resp, out := postScatter(t, f, body, 0)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(out), `output \"input\" is FP32 [3,`) {
		t.Errorf("= %d %s; want 502 naming output input's shapes", resp.StatusCode, out)
	}
}

func TestScatterWakesColdDeployment(t *testing.T) {
	r1, r2 := newCountingReplica(t, "r1", nil), newCountingReplica(t, "r2", nil)
	f := newFixture(t, routing.Route{Deployment: "m", Scatter: &serving.Scatter{SegmentRows: 2}})
	f.pub.eps = []*balance.Endpoint{r1.ep, r2.ep}
	body, _, want := rowsRequest(t, 8, false)
	resp, out := postScatter(t, f, body, 0)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("= %d %.300s", resp.StatusCode, out)
	}
	if got := outputOf(t, resp, out); !slices.Equal(got.Data.([]float32), want) {
		t.Errorf("joined output %v; want %v", got.Data, want)
	}
	if r1.hits.Load()+r2.hits.Load() != 4 || r1.hits.Load() == 0 || r2.hits.Load() == 0 {
		t.Errorf("r1 got %d, r2 %d segments; want 4 over both", r1.hits.Load(), r2.hits.Load())
	}
}

func TestScatterSplitsEveryInput(t *testing.T) {
	// Two inputs of different datatypes and ranks share the batch
	// dimension: each segment carries the same rows of both.
	sig := filepath.Join(t.TempDir(), "sig.json")
	if err := os.WriteFile(sig, []byte(`{"inputs":[{"name":"ids","datatype":"INT64","shape":[-1]},{"name":"x","datatype":"FP32","shape":[-1,2,2]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	f := scatterFixture(t, serving.Scatter{SegmentRows: 2}, newEchoReplica(t, "r1", sig, nil), newEchoReplica(t, "r2", sig, nil))
	ids := []int64{10, 11, 12, 13, 14}
	x := make([]float32, 5*4)
	for i := range x {
		x[i] = float32(i) / 4
	}
	in := []oip.Tensor{
		{Name: "ids", Datatype: oip.INT64, Shape: []int64{5}, Data: ids},
		{Name: "x", Datatype: oip.FP32, Shape: []int64{5, 2, 2}, Data: x},
	}
	body, _, err := oip.RequestBody(oip.InferRequest{ID: "req"}, in, false)
	if err != nil {
		t.Fatal(err)
	}
	resp, out := postScatter(t, f, body, 0)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(segmentsHeader) != "3" {
		t.Fatalf("= %d (%s %q) %.300s; want 200 in 3 segments", resp.StatusCode, segmentsHeader, resp.Header.Get(segmentsHeader), out)
	}
	got, err := oip.ParseResponse(out, len(out))
	if err != nil || len(got.Outputs) != 2 {
		t.Fatalf("answer %.300s: %v", out, err)
	}
	for _, o := range got.Outputs {
		switch o.Name {
		case "ids":
			if !slices.Equal(o.Shape, []int64{5}) || !slices.Equal(o.Data.([]int64), ids) {
				t.Errorf("ids = %v %v; want [5] %v", o.Shape, o.Data, ids)
			}
		case "x":
			if !slices.Equal(o.Shape, []int64{5, 2, 2}) || !slices.Equal(o.Data.([]float32), x) {
				t.Errorf("x = %v %v; want [5 2 2] %v", o.Shape, o.Data, x)
			}
		default:
			t.Errorf("unexpected output %q", o.Name)
		}
	}
}

func TestScatterHoldTimesOut(t *testing.T) {
	// Nothing wakes the deployment: every segment's hold ends at the
	// activator's timeout, and the answer names the segment that timed
	// out first (the other is cancelled then).
	f := newFixture(t, routing.Route{Deployment: "m", Scatter: &serving.Scatter{SegmentRows: 3}})
	body, _, _ := rowsRequest(t, 6, false)
	resp, out := postScatter(t, f, body, 0)
	var e errorBody
	if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(out, &e) != nil || e.Code != codeSegmentFailed ||
		!strings.Contains(e.Error, " of 2 (counting from 0: rows ") || !strings.Contains(e.Error, "of the request's 6) failed: deployment \"m\"") {
		t.Errorf("= %d %s; want 503 naming a segment and the hold's failure", resp.StatusCode, out)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if n := f.rec.InFlight(); n != 0 {
		t.Errorf("%d segments still counted in flight", n)
	}
}
