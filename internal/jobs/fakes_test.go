package jobs

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// The dataset of the tests: row i has id "r<i>", a = i, b = i%7 + 0.5,
// c = -(i%3); the model's y is a + b + c.

func rowValues(i int) (id string, a, b float64, c int64) {
	return "r" + strconv.Itoa(i), float64(i), float64(i%7) + 0.5, -int64(i % 3)
}

func wantY(i int) float64 {
	_, a, b, c := rowValues(i)
	return a + b + float64(c)
}

// writeDataset writes rows rows in format to a file in dir and returns its
// path. bad, when not negative, is a row whose b is not a number.
func writeDataset(t *testing.T, dir, format string, rows, bad int) string {
	t.Helper()
	path := filepath.Join(dir, "in."+format)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	switch format {
	case serving.FormatCSV:
		fmt.Fprintln(w, "id,a,b,c,unused")
		for i := range rows {
			id, a, b, c := rowValues(i)
			bs := strconv.FormatFloat(b, 'g', -1, 64)
			if i == bad {
				bs = "oops"
			}
			fmt.Fprintf(w, "%s,%g,%s,%d,x\n", id, a, bs, c)
		}
	case serving.FormatJSONL:
		for i := range rows {
			id, a, b, c := rowValues(i)
			if i == bad {
				fmt.Fprintf(w, "{\"id\":%q,\"a\":%g,\"b\":\"oops\",\"c\":%d}\n", id, a, c)
				continue
			}
			fmt.Fprintf(w, "{\"id\":%q,\"a\":%g,\"b\":%g,\"c\":%d}\n\n", id, a, b, c)
		}
	case serving.FormatParquet:
		type row struct {
			ID string  `parquet:"id"`
			A  int64   `parquet:"a"`
			B  float64 `parquet:"b"`
			C  int32   `parquet:"c"`
		}
		pw := parquet.NewGenericWriter[row](w, parquet.PageBufferSize(4096), parquet.MaxRowsPerRowGroup(700))
		batch := make([]row, 0, rows)
		for i := range rows {
			id, a, b, c := rowValues(i)
			batch = append(batch, row{id, int64(a), b, int32(c)})
		}
		if _, err := pw.Write(batch); err != nil {
			t.Fatal(err)
		}
		if err := pw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return path
}

// outRow is one row of a job's output.
type outRow struct {
	id   string
	y    float64
	pair [2]float64
}

// readOutput reads a job's output at path in format.
func readOutput(t *testing.T, path, format string) []outRow {
	t.Helper()
	var out []outRow
	switch format {
	case serving.FormatJSONL:
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var r struct {
				ID   string     `json:"id"`
				Y    float64    `json:"y"`
				Pair [2]float64 `json:"pair"`
			}
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("output line %q: %v", l, err)
			}
			out = append(out, outRow{r.ID, r.Y, r.Pair})
		}
	case serving.FormatCSV:
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		recs, err := csv.NewReader(f).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(recs[0], ","); got != "id,y,pair_0,pair_1" {
			t.Fatalf("CSV header = %q", got)
		}
		for _, r := range recs[1:] {
			y, _ := strconv.ParseFloat(r[1], 64)
			p0, _ := strconv.ParseFloat(r[2], 64)
			p1, _ := strconv.ParseFloat(r[3], 64)
			out = append(out, outRow{r[0], y, [2]float64{p0, p1}})
		}
	case serving.FormatParquet:
		type row struct {
			ID    *string  `parquet:"id,optional"`
			Y     *float64 `parquet:"y,optional"`
			Pair0 *float32 `parquet:"pair_0,optional"`
			Pair1 *float32 `parquet:"pair_1,optional"`
		}
		rows, err := parquet.ReadFile[row](path)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			out = append(out, outRow{*r.ID, *r.Y, [2]float64{float64(*r.Pair0), float64(*r.Pair1)}})
		}
	}
	return out
}

// checkOutput checks that the output holds every row of rows but skip,
// once, in order, with its y.
func checkOutput(t *testing.T, got []outRow, rows int, skip int) {
	t.Helper()
	var want []outRow
	for i := range rows {
		if i == skip {
			continue
		}
		id, a, _, c := rowValues(i)
		want = append(want, outRow{id, wantY(i), [2]float64{a, float64(c)}})
	}
	if len(got) != len(want) {
		t.Fatalf("output has %d rows; want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("output row %d = %+v; want %+v", i, got[i], want[i])
		}
	}
}

// sumModel is the fake Predictor: for each row, y is the sum of every
// input value, and pair is (its first input's first value, its last
// input's last value). Before each call it runs before, when set.
type sumModel struct {
	calls  atomic.Int64
	before func(ctx context.Context, call int64) error

	mu  sync.Mutex
	ids map[string]int // calls by request id: the chunk's
}

// replicaRequest decodes a chunk as ebb's replica server does: JSON, or
// a JSON header and binary tensor data.
func replicaRequest(msg Message) (oip.InferRequest, []oip.Tensor, error) {
	var req oip.InferRequest
	n := msg.HeaderLength
	if n == 0 {
		n = len(msg.Body)
	}
	if err := oip.ParseRequest(msg.Body[:n], &req); err != nil {
		return req, nil, err
	}
	binary, err := oip.BinaryInputs(&req, msg.Body[n:])
	if err != nil {
		return req, nil, err
	}
	inputs := make([]oip.Tensor, len(req.Inputs))
	for i, in := range req.Inputs {
		if binary != nil && binary[i] != nil {
			inputs[i], err = oip.DecodeBinary(in, binary[i])
		} else {
			inputs[i], err = oip.Decode(in)
		}
		if err != nil {
			return req, nil, err
		}
	}
	return req, inputs, nil
}

// replicaResponse encodes outputs as ebb's replica server does: as binary
// tensor data when req asks for it. hideLength drops the header length,
// as a Forwarder that does not keep the header would.
func replicaResponse(req *oip.InferRequest, deployment string, outs []oip.Tensor, hideLength bool) (Message, error) {
	names := make([]string, len(outs))
	for i, t := range outs {
		names[i] = t.Name
	}
	binary, err := oip.BinaryOutputs(req, names)
	if err != nil {
		return Message{}, err
	}
	body, n, err := oip.AppendResponse(nil, &oip.InferResponse{ModelName: deployment, ID: req.ID, Outputs: outs}, binary)
	if hideLength {
		n = 0
	}
	return Message{Body: body, HeaderLength: n}, err
}

func (m *sumModel) Infer(ctx context.Context, deployment string, msg Message) (Message, error) {
	n := m.calls.Add(1)
	req, inputs, err := replicaRequest(msg)
	if err != nil {
		return Message{}, err
	}
	m.mu.Lock()
	if m.ids == nil {
		m.ids = map[string]int{}
	}
	m.ids[req.ID]++
	m.mu.Unlock()
	if m.before != nil {
		if err := m.before(ctx, n); err != nil {
			return Message{}, err
		}
	}
	var rows int
	var ys []float64
	var pair []float32
	for k, in := range req.Inputs {
		v, err := valuesOf(inputs[k].Data)
		if err != nil {
			return Message{}, err
		}
		rows = int(in.Shape[0])
		width := int(in.Shape[1])
		if ys == nil {
			ys, pair = make([]float64, rows), make([]float32, 2*rows)
		}
		for r := range rows {
			for c := range width {
				var f float64
				if v.f != nil {
					f = v.f[r*width+c]
				} else {
					f = float64(v.i[r*width+c])
				}
				ys[r] += f
				if k == 0 && c == 0 {
					pair[2*r] = float32(f)
				}
				if k == len(req.Inputs)-1 && c == width-1 {
					pair[2*r+1] = float32(f)
				}
			}
		}
	}
	return replicaResponse(&req, deployment, []oip.Tensor{
		{Name: "y", Datatype: oip.FP64, Shape: []int64{int64(rows)}, Data: ys},
		{Name: "pair", Datatype: oip.FP32, Shape: []int64{int64(rows), 2}, Data: pair},
	}, n%2 == 0)
}

// callsOf is how often the chunk whose id ends in suffix was sent.
func (m *sumModel) callsOf(suffix string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, n := range m.ids {
		if strings.HasSuffix(id, suffix) {
			return n
		}
	}
	return 0
}

// fakeScaler records what a job asked of it.
type fakeScaler struct {
	mu       sync.Mutex
	replicas []int32
	released []string
	onSet    func(n int32)
}

func (s *fakeScaler) Provision(_ context.Context, j serving.Job) (string, error) {
	if j.Spec.Deployment != "" {
		return j.Spec.Deployment, nil
	}
	return "job-" + j.Name, nil
}

func (s *fakeScaler) SetReplicas(_ context.Context, _ string, n int32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replicas = append(s.replicas, n)
	if s.onSet != nil {
		s.onSet(n)
	}
	return nil
}

func (s *fakeScaler) Release(_ context.Context, _ serving.Job, d string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.released = append(s.released, d)
	return nil
}

func (s *fakeScaler) history() ([]int32, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int32(nil), s.replicas...), append([]string(nil), s.released...)
}

// stepClock is a Clock that tests move.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// openStore opens a SQLite store in dir (the same file again after a
// "crash").
func openStore(t testing.TB, dir string) *sqlstore.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// testJob is a job over the dataset at in, to out.
func testJob(name, in, out string) serving.Job {
	j := serving.Job{Name: name, Spec: serving.JobSpec{
		Input: serving.JobInput{URI: in, IDColumn: "id", Columns: []serving.TensorColumns{
			{Tensor: "x", Columns: []string{"a", "b"}},
			{Tensor: "z", Datatype: oip.FP64, Columns: []string{"c"}},
		}},
		Deployment: "sum",
		Output:     serving.JobOutput{URI: out},
		Deadline:   time.Now().Add(time.Hour),
		Lease:      serving.Lease{MaxReplicas: 4, MaxReplicaHours: 100},
		ChunkRows:  100,
	}, Status: serving.JobStatus{Phase: serving.JobPending}}
	j.Spec.Default()
	return j
}

// fastOptions step often, so that tests do not wait.
func fastOptions() Options {
	return Options{StatusEvery: 5 * time.Millisecond, ReplanEvery: 20 * time.Millisecond, ProbeChunks: 2,
		RetryBackoff: time.Millisecond}
}
