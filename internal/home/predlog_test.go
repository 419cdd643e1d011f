package home

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ebb-ml/ebb/internal/artifact/artifacttest"
	"github.com/ebb-ml/ebb/internal/predlog"
	"github.com/ebb-ml/ebb/internal/serving"
)

// testFlags are the flags' defaults with dir.
func testFlags(dir string) PredictionLogFlags {
	return PredictionLogFlags{Dir: dir, Format: "jsonl", MaxBytes: 64 << 20, PartAge: time.Hour, PartBytes: 64 << 20, MaxDiskBytes: 1 << 30}
}

func testRecord(deployment, id string) predlog.Record {
	return predlog.Record{Time: time.Now(), Deployment: deployment, ModelVersion: "2", Tenant: "acme", RequestID: id,
		Inputs: []byte(`{"inputs":[]}`), Outputs: []byte(`{"outputs":[]}`), Status: 200, Latency: time.Millisecond}
}

// runLogFor runs pl until the returned stop, which waits for its flush.
func runLogFor(t *testing.T, pl *PredictionLog) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pl.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestPredictionLogUploads runs a home's prediction log with an upload
// to a real S3 server: the sampled deployment's records end up in one
// part under the prefix, the unsampled one's nowhere, and nothing is left
// locally.
func TestPredictionLogUploads(t *testing.T) {
	s3 := artifacttest.StartS3Server(t)
	t.Setenv("EBB_S3_ENDPOINT", s3.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	dir := t.TempDir()
	flags := testFlags(dir)
	flags.S3 = "s3://" + s3.Bucket + "/predictions"
	reg := prometheus.NewRegistry()
	pl, err := flags.Open(reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	pl.Sampling.Set("m", &serving.PredictionLog{Sample: 1})
	stop := runLogFor(t, pl)
	pl.Logger.Log(testRecord("m", "a"))
	pl.Logger.Log(testRecord("quiet", "b"))
	pl.Logger.Log(testRecord("m", "c"))
	stop() // closes the part and uploads it

	mc, err := s3.Client()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for o := range mc.ListObjects(context.Background(), s3.Bucket, minio.ListObjectsOptions{Prefix: "predictions/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "predictions/dt="+time.Now().UTC().Format("2006-01-02")+"/predlog-") {
		t.Fatalf("objects %v; want one part under predictions/dt=<today>/", keys)
	}
	obj, err := mc.GetObject(context.Background(), s3.Bucket, keys[0], minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	var ids []string
	for sc := bufio.NewScanner(obj); sc.Scan(); {
		var r predlog.JSONRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %s: %v", sc.Text(), err)
		}
		ids = append(ids, r.Deployment+"/"+r.RequestID)
	}
	if diff := cmp.Diff([]string{"m/a", "m/c"}, ids); diff != "" {
		t.Errorf("records uploaded (-want +got):\n%s", diff)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("%d files left in the directory after the upload; want none", len(entries))
	}
	if n, err := testutil.GatherAndCount(reg, "ebb_predlog_parts_uploaded_total", "ebb_predlog_records_written_total"); err != nil || n != 2 {
		t.Errorf("metrics: %d series, %v; want ebb_predlog_parts_uploaded_total and one written series", n, err)
	}
}

// TestPredictionLogParquet runs the log without S3: the part stays in the
// directory, in Parquet.
func TestPredictionLogParquet(t *testing.T) {
	dir := t.TempDir()
	flags := testFlags(dir)
	flags.Format = "parquet"
	pl, err := flags.Open(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	pl.Sampling.Set("m", &serving.PredictionLog{Sample: 1})
	stop := runLogFor(t, pl)
	pl.Logger.Log(testRecord("m", "a"))
	stop()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("%d files; want one part", len(entries))
	}
	info, ok := predlog.ParsePartName(entries[0].Name())
	if !ok || info.Format != predlog.Parquet || info.Records != 1 {
		t.Errorf("part %s (%+v); want a Parquet part of one record", entries[0].Name(), info)
	}
}

func TestPredictionLogFlags(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	if pl, err := testFlags("").Open(prometheus.NewRegistry(), log); pl != nil || err != nil {
		t.Errorf("Open without a directory = %v, %v; want nil, nil (off)", pl, err)
	}
	for _, tt := range []struct {
		name string
		edit func(*PredictionLogFlags)
		want string
	}{
		{"format", func(f *PredictionLogFlags) { f.Format = "csv" }, `--prediction-log-format "csv": use jsonl or parquet`},
		{"s3", func(f *PredictionLogFlags) { f.S3 = "gs://bucket" }, `--prediction-log-s3 "gs://bucket"`},
		{"memory", func(f *PredictionLogFlags) { f.MaxBytes = 0 }, "--prediction-log-max-bytes must be positive"},
		{"age", func(f *PredictionLogFlags) { f.PartAge = -time.Second }, "--prediction-log-part-age must be positive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := testFlags(t.TempDir())
			tt.edit(&f)
			_, err := f.Open(prometheus.NewRegistry(), log)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open = %v; want an error with %q", err, tt.want)
			}
		})
	}
}

// sampler records the ratios it is handed.
type sampler struct{ got []map[string]float64 }

func (s *sampler) SetSampling(m map[string]float64) {
	c := map[string]float64{}
	for k, v := range m {
		c[k] = v
	}
	s.got = append(s.got, c)
}

func dep(name string, sample float64) serving.Deployment {
	d := serving.Deployment{Name: name, Spec: serving.Spec{Model: "/models/" + name + ".json", Engine: "trees"}}
	if sample >= 0 {
		d.Spec.PredictionLog = &serving.PredictionLog{Sample: sample}
	}
	return d
}

func TestSampling(t *testing.T) {
	to := &sampler{}
	s := NewSampling(to)
	s.Set("a", &serving.PredictionLog{Sample: 0.5})
	s.Set("a", &serving.PredictionLog{Sample: 0.5}) // unchanged: not handed again
	s.Set("b", nil)                                 // not logged, as before
	s.Set("c", &serving.PredictionLog{Sample: 0})   // 0 is off
	s.Set("d", &serving.PredictionLog{Sample: 1})
	s.Remove("a")
	s.Replace([]serving.Deployment{dep("d", 1), dep("e", 0.1), dep("f", -1)})
	s.Replace([]serving.Deployment{dep("e", 0.1), dep("d", 1)}) // unchanged
	want := []map[string]float64{
		{"a": 0.5},
		{"a": 0.5, "d": 1},
		{"d": 1},
		{"d": 1, "e": 0.1},
	}
	if diff := cmp.Diff(want, to.got); diff != "" {
		t.Errorf("ratios handed over (-want +got):\n%s", diff)
	}
}

// TestSamplingSync follows a deployment in a real SQLite store through
// create, update and delete, and checks that a list begun before a Sync
// does not undo it.
func TestSamplingSync(t *testing.T) {
	t.Setenv("EBB_STORE_DSN", "")
	ctx := context.Background()
	st, err := OpenStore(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := NewSampling(&sampler{})
	step := func(what string, want map[string]float64) {
		t.Helper()
		if diff := cmp.Diff(want, s.Ratios()); diff != "" {
			t.Errorf("%s: ratios (-want +got):\n%s", what, diff)
		}
	}

	if _, err := st.CreateDeployment(ctx, dep("m", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx, st, "m"); err != nil {
		t.Fatal(err)
	}
	step("created", map[string]float64{"m": 1})

	// A list read before the change must not undo what Sync read after.
	n := s.beginList()
	stale, err := st.ListDeployments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateDeployment(ctx, "m", func(d *serving.Deployment) error {
		d.Spec.PredictionLog.Sample = 0.25
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx, st, "m"); err != nil {
		t.Fatal(err)
	}
	s.replace(stale, n)
	step("updated, then a stale list", map[string]float64{"m": 0.25})

	// The next list is newer than the Sync, and wins.
	if _, err := st.CreateDeployment(ctx, dep("other", 0.5)); err != nil {
		t.Fatal(err)
	}
	followCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Follow(followCtx, st, time.Hour, nil, func(err error) { t.Errorf("Follow: %v", err) })
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(s.Ratios()) != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	step("followed", map[string]float64{"m": 0.25, "other": 0.5})

	if err := st.DeleteDeployment(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx, st, "m"); err != nil {
		t.Fatal(err)
	}
	step("deleted", map[string]float64{"other": 0.5})
}
