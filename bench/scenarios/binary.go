package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/oip"
)

// Binary sends the same 1 MiB FP32 tensor through ebb's gateway to an echo
// replica, which returns it, once as JSON both ways and once as binary
// tensor data both ways (Triton's binary_data extension: the JSON header,
// then the raw little-endian bytes; Inference-Header-Content-Length says
// where the JSON ends), and compares the throughput end to end.
type Binary struct{}

// Name implements harness.Scenario.
func (Binary) Name() string { return "binary" }

// Title implements harness.Scenario.
func (Binary) Title() string { return "9. Binary tensor data vs JSON (1 MiB FP32)" }

const (
	binaryElements  = 1 << 18 // 262,144 FP32 values: 1 MiB
	binaryConns     = 4
	binaryGoalRatio = 5.0
)

// binaryCase is one encoding under load.
type binaryCase struct {
	name    string
	body    []byte
	jsonLen int // the Inference-Header-Content-Length; 0 for plain JSON
}

// binaryBodies returns the request bodies of both encodings for data.
func binaryBodies(data []float32) (jsonCase, binCase binaryCase, err error) {
	in := []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{1, int64(len(data))}, Data: data}}
	jb, _, err := oip.RequestBody(oip.InferRequest{}, in, false)
	if err != nil {
		return jsonCase, binCase, err
	}
	req := oip.InferRequest{Outputs: []oip.RequestOutput{{Name: "input", Parameters: map[string]any{oip.ParamBinaryData: true}}}}
	bb, n, err := oip.RequestBody(req, in, true)
	if err != nil {
		return jsonCase, binCase, err
	}
	return binaryCase{name: "JSON", body: jb}, binaryCase{name: "binary", body: bb, jsonLen: n}, nil
}

// binaryData is the tensor sent: values with many significant digits, as
// real activations or pixels scaled to floats have.
func binaryData() []float32 {
	data := make([]float32, binaryElements)
	for i := range data {
		data[i] = float32(math.Sin(float64(i)) * 1000)
	}
	return data
}

// post sends c's body to url and returns the response's status, body and
// Inference-Header-Content-Length (len(body) when absent).
func (c binaryCase) post(ctx context.Context, hc *http.Client, url string) (int, []byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(c.body))
	if err != nil {
		return 0, nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.jsonLen > 0 {
		req.Header.Set(oip.HeaderInferenceHeaderLength, strconv.Itoa(c.jsonLen))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	n := len(out)
	if h := resp.Header.Get(oip.HeaderInferenceHeaderLength); h != "" {
		if n, err = strconv.Atoi(h); err != nil {
			return 0, nil, 0, fmt.Errorf("%s: %q: %w", oip.HeaderInferenceHeaderLength, h, err)
		}
	}
	return resp.StatusCode, out, n, err
}

// check sends c once and verifies that the echo came back intact.
func (c binaryCase) check(ctx context.Context, hc *http.Client, url string, want []float32) error {
	code, out, n, err := c.post(ctx, hc, url)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("%s request: HTTP %d %v %.300s", c.name, code, err, out)
	}
	resp, err := oip.ParseResponse(out, n)
	if err != nil {
		return fmt.Errorf("%s response: %w", c.name, err)
	}
	if len(resp.Outputs) != 1 {
		return fmt.Errorf("%s response has %d outputs, want 1", c.name, len(resp.Outputs))
	}
	got, ok := resp.Outputs[0].Data.([]float32)
	if !ok || len(got) != len(want) {
		return fmt.Errorf("%s response: %T of %d values, want %d float32", c.name, resp.Outputs[0].Data, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			return fmt.Errorf("%s response: value %d is %v, sent %v", c.name, i, got[i], want[i])
		}
	}
	if c.jsonLen > 0 && n == len(out) {
		return fmt.Errorf("%s response came as JSON, not binary tensor data", c.name)
	}
	return nil
}

// load sends c over conns connections for d and returns the requests per
// second and the failures.
func (c binaryCase) load(ctx context.Context, hc *http.Client, url string, conns int, d time.Duration) (float64, int64) {
	var done, failed atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				code, _, _, err := c.post(ctx, hc, url)
				switch {
				case ctx.Err() != nil:
					return
				case err != nil || code != http.StatusOK:
					failed.Add(1)
				default:
					done.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds(), failed.Load()
}

// Run implements harness.Scenario.
func (Binary) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	data := binaryData()
	jc, bc, err := binaryBodies(data)
	if err != nil {
		return res, err
	}
	ebb, err := env.StartEbb(ctx, "ebb-binary")
	if err != nil {
		return res, err
	}
	if err := ebb.Create(ctx, "echo", harness.DeploymentSpec("echo", "", 1, 1, 10*time.Minute)); err != nil {
		return res, err
	}
	if _, _, err := ebb.WaitReady(ctx, "echo", 1, 60*time.Second); err != nil {
		return res, err
	}
	url := ebb.URL + "/v2/models/echo/infer"
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: binaryConns}}
	cases := []binaryCase{jc, bc}
	for _, c := range cases {
		if err := c.check(ctx, hc, url, data); err != nil {
			return res, err
		}
	}
	warmup := harness.Pick(env, time.Second, 500*time.Millisecond)
	dur := harness.Pick(env, 4*time.Second, 2*time.Second)
	rounds := harness.Pick(env, 3, 1)
	for _, c := range cases {
		c.load(ctx, hc, url, binaryConns, warmup)
	}
	rps := map[string][]float64{}
	var raw [][]string
	var failures int64
	for round := 1; round <= rounds; round++ {
		for _, c := range cases {
			r, failed := c.load(ctx, hc, url, binaryConns, dur)
			failures += failed
			rps[c.name] = append(rps[c.name], r)
			raw = append(raw, []string{c.name, fmt.Sprint(round), harness.F(r), fmt.Sprint(failed)})
			env.Logf("round %d %-6s %8.1f req/s (%d failed)", round, c.name, r, failed)
		}
	}
	j, b := harness.Median(rps["JSON"]), harness.Median(rps["binary"])
	ratio := harness.Ratio(b, j)
	res.Figures = map[string]float64{"json.rps": j, "binary.rps": b, "ratio": ratio,
		"json.requestBytes": float64(len(jc.body)), "binary.requestBytes": float64(len(bc.body))}
	res.Goals = []harness.Goal{{
		Name: "1 MiB FP32 tensor, binary vs JSON", Target: fmt.Sprintf("binary tensor data ≥ %.0f× JSON's req/s, end to end", binaryGoalRatio),
		Ebb: b, Peer: j, PeerName: "JSON", Unit: "req/s", Ratio: ratio, Met: ratio >= binaryGoalRatio && failures == 0,
		Detail: fmt.Sprintf("binary %.1f req/s, JSON %.1f req/s: %.2f× (request bodies %d and %d bytes, answers alike)", b, j, ratio, len(bc.body), len(jc.body)),
	}}
	res.Tables = []harness.Table{{
		Caption: fmt.Sprintf("Rounds of %s at %d connections (closed loop, Go client in the harness):", dur, binaryConns),
		Header:  []string{"encoding", "round", "req/s", "failed"},
		Rows:    raw,
	}}
	if failures > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d requests failed.", failures))
	}
	res.Summary = fmt.Sprintf("One `ebb up` with a deployment `echo` (engine `echo`, one replica: it returns its input). The same tensor, "+
		"[1, %d] FP32 (1 MiB of values with seven significant digits), is sent through the gateway as JSON (%d bytes, answered in JSON) and as "+
		"binary tensor data (%d bytes, the output asked for as binary data too); each answer was checked to carry the sent values exactly before the load. "+
		"Rounds alternate between the two encodings.", binaryElements, len(jc.body), len(bc.body))
	return res, nil
}
