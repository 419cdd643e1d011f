package drift

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/predlog"
)

// trainingCSV is a sample of two numeric inputs, one categorical input
// and a numeric output: y = 2a + b.
func trainingCSV(n int, seed uint64) string {
	rng := rand.New(rand.NewPCG(seed, 1))
	var b strings.Builder
	b.WriteString("a,b,color,y\n")
	for range n {
		a, c := rng.NormFloat64(), 10+rng.NormFloat64()
		color := "red"
		if rng.Float64() < 0.3 {
			color = "blue"
		}
		fmt.Fprintf(&b, "%g,%g,%s,%g\n", a, c, color, 2*a+c)
	}
	return b.String()
}

func testProfile(t *testing.T, ignore ...string) *monitor.Profile {
	t.Helper()
	p, err := ReadSample(strings.NewReader(trainingCSV(5000, 1)), SampleOptions{Format: FormatCSV, Outputs: []string{"y"}, Ignore: ignore})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// request returns the OIP v2 bodies of a prediction of rows (a, b,
// color), answered with y = 2a + b. Named, it sends one tensor per
// feature, named after it, and answers "y"; else one FP64 tensor of
// columns a and b, answered by one tensor "predict".
func request(t *testing.T, rows [][3]any, named bool) (req, resp []byte) {
	t.Helper()
	n := int64(len(rows))
	var as, bs, nums []float64
	var colors, ys []any
	for _, r := range rows {
		a, b := r[0].(float64), r[1].(float64)
		as, bs = append(as, a), append(bs, b)
		nums = append(nums, a, b)
		colors = append(colors, r[2])
		ys = append(ys, 2*a+b)
	}
	in := oip.InferRequest{Inputs: []oip.RequestInput{{Name: "input", Shape: []int64{n, 2}, Datatype: oip.FP64, Data: mustJSON(t, nums)}}}
	out := "predict"
	if named {
		out = "y"
		in.Inputs = []oip.RequestInput{
			{Name: "color", Shape: []int64{n}, Datatype: oip.BYTES, Data: mustJSON(t, colors)},
			{Name: "b", Shape: []int64{n, 1}, Datatype: oip.FP32, Data: mustJSON(t, bs)},
			{Name: "a", Shape: []int64{n}, Datatype: oip.FP64, Data: mustJSON(t, as)},
		}
	}
	answer := map[string]any{"model_name": "m", "model_version": "3", "outputs": []map[string]any{
		{"name": out, "shape": []int64{n, 1}, "datatype": "FP32", "data": ys},
	}}
	return mustJSON(t, in), mustJSON(t, answer)
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// records returns n logged predictions of 5 rows each, b shifted by
// shift reference standard deviations.
func records(t *testing.T, n int, shift float64, named bool, seed uint64) []predlog.Record {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 2))
	var recs []predlog.Record
	for i := range n {
		var rows [][3]any
		for range 5 {
			color := "red"
			if rng.Float64() < 0.3 {
				color = "blue"
			}
			rows = append(rows, [3]any{rng.NormFloat64(), 10 + shift + rng.NormFloat64(), color})
		}
		req, resp := request(t, rows, named)
		recs = append(recs, predlog.Record{Deployment: "d", ModelVersion: "3", RequestID: fmt.Sprint(i), Inputs: req, Outputs: resp, Status: 200})
	}
	return recs
}

func statuses(r monitor.VersionReport) map[string]monitor.Status {
	got := map[string]monitor.Status{}
	for _, f := range r.Features {
		got[f.Feature] = f.Status
	}
	return got
}

// A shifted feature is detected through the prediction log's records, by
// the real decoding of OIP v2 bodies, and the features beside it are not.
func TestSinkDetectsShift(t *testing.T) {
	tests := []struct {
		name   string
		named  bool
		ignore []string
		shift  float64
		want   map[string]monitor.Status
	}{
		{"named tensors, b shifted", true, nil, 1.5,
			map[string]monitor.Status{"a": monitor.StatusOK, "b": monitor.StatusDrift, "color": monitor.StatusOK, "y": monitor.StatusDrift}},
		{"named tensors, nothing shifted", true, nil, 0,
			map[string]monitor.Status{"a": monitor.StatusOK, "b": monitor.StatusOK, "color": monitor.StatusOK, "y": monitor.StatusOK}},
		{"columns of one tensor, b shifted", false, []string{"color"}, 1.5,
			map[string]monitor.Status{"a": monitor.StatusOK, "b": monitor.StatusDrift, "y": monitor.StatusDrift}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clocktesting.NewFakePassiveClock(time.Unix(1e9, 0))
			mon := NewMonitor(monitor.WindowOptions{Clock: clk})
			mon.Set([]Entry{{Deployment: "d", Version: "m:3", ProfileID: "p1", Profile: testProfile(t, tt.ignore...)}})
			if err := NewSink(mon, nil, nil, nil).Write(records(t, 300, tt.shift, tt.named, 2)); err != nil {
				t.Fatal(err)
			}
			reports := mon.Reports("d")
			if len(reports) != 1 || reports[0].Version != "m:3" || reports[0].Rows != 1500 {
				t.Fatalf("reports = %+v; want one of m:3 with 1500 rows", reports)
			}
			if diff := cmp.Diff(tt.want, statuses(reports[0])); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
		})
	}
}

// Records the monitor cannot count are skipped, counted by reason, and a
// deployment × version it does not watch asks for a sync.
func TestSinkSkips(t *testing.T) {
	mon := NewMonitor(monitor.WindowOptions{})
	mon.Set([]Entry{{Deployment: "d", Version: "m:3", ProfileID: "p1", Profile: testProfile(t)}})
	good := records(t, 1, 0, true, 3)[0]
	wide := records(t, 1, 0, false, 3)[0] // one tensor of 2 columns; the profile has 3 inputs
	tests := []struct {
		name   string
		rec    predlog.Record
		reason string
		missed bool
	}{
		{"counted by OIP version", good, "", false},
		{"counted by registry version", with(good, func(r *predlog.Record) { r.ModelVersion = "m:3" }), "", false},
		{"counted by the answer's version", with(good, func(r *predlog.Record) { r.ModelVersion = "" }), "", false},
		{"failed prediction", with(good, func(r *predlog.Record) { r.Status = 503 }), ReasonStatus, false},
		{"binary tensors", with(good, func(r *predlog.Record) { r.Inputs = append([]byte(`{"inputs":[]}`), 0, 1, 2) }), ReasonNotJSON, false},
		{"no matching tensor", with(good, func(r *predlog.Record) {
			r.Inputs = []byte(`{"inputs":[{"name":"p","shape":[1],"datatype":"FP32","data":[1]},{"name":"q","shape":[1],"datatype":"FP32","data":[1]}]}`)
		}), ReasonNoTensor, false},
		{"columns that do not fit", wide, ReasonShape, false},
		{"unwatched version", with(good, func(r *predlog.Record) { r.ModelVersion = "4"; r.Outputs = []byte(`{"outputs":[]}`) }), ReasonNoProfile, true},
		{"unwatched deployment", with(good, func(r *predlog.Record) { r.Deployment = "other" }), ReasonNoProfile, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			missed := false
			before := mon.Reports("d")[0].Rows
			if err := NewSink(mon, nil, NewMetrics(reg), func() { missed = true }).Write([]predlog.Record{tt.rec}); err != nil {
				t.Fatal(err)
			}
			counted := mon.Reports("d")[0].Rows - before
			if want := tt.reason == ""; (counted == 5) != want {
				t.Errorf("counted %d rows; want counted %v", counted, want)
			}
			if missed != tt.missed {
				t.Errorf("missed = %v; want %v", missed, tt.missed)
			}
			if tt.reason != "" {
				got := metricValue(t, reg, "ebb_drift_records_skipped_total", map[string]string{"deployment": tt.rec.Deployment, "reason": tt.reason})
				if got != 1 {
					t.Errorf("ebb_drift_records_skipped_total{reason=%q} = %v; want 1", tt.reason, got)
				}
			}
		})
	}
}

func with(r predlog.Record, change func(*predlog.Record)) predlog.Record {
	change(&r)
	return r
}

// metricValue gathers reg and returns the value of the counter or gauge
// name with labels, 0 when there is none.
func metricValue(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
