package predlog

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ebb-ml/ebb/internal/artifact/artifacttest"
)

// TestUploaderS3 runs a Logger, a FileSink and an Uploader against a real
// S3 server (versitygw): every part lands under prefix/dt=date/ with the
// bytes written locally, and the local copies go.
func TestUploaderS3(t *testing.T) {
	srv := artifacttest.StartS3Server(t)
	client, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, 0)
	dir := t.TempDir()
	up, err := NewUploader(client, "s3://"+srv.Bucket+"/predictions/", dir, UploaderOptions{Metrics: m, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var local = map[string][]byte{}             // part name → content, read when it completes
	clk := clocktesting.NewFakePassiveClock(t0) // parts start on 2026-03-04
	sink, err := NewFileSink(FileOptions{Dir: dir, Format: Parquet, MaxPartBytes: 2000, Clock: clk, OnPart: func(path string, n int) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Error(err)
		}
		local[filepath.Base(path)] = b
		up.Notify(path, n)
	}})
	if err != nil {
		t.Fatal(err)
	}
	l := New(sink, Options{DefaultRatio: 1, Metrics: m})

	ctx, cancel := context.WithCancel(context.Background())
	upDone := make(chan error, 1)
	go func() { upDone <- up.Run(ctx) }()
	logCtx, stopLog := context.WithCancel(ctx)
	logDone := make(chan error, 1)
	go func() { logDone <- l.Run(logCtx) }()
	for i := range 20 {
		r := testRecords()[i%3]
		r.RequestID = strings.Repeat("x", i)
		l.Log(r)
	}
	stopLog()
	if err := <-logDone; err != nil {
		t.Fatal(err)
	}
	cancel() // the uploader's last look sends what the log's end closed
	if err := <-upDone; err != nil {
		t.Fatal(err)
	}

	if len(local) < 2 {
		t.Fatalf("%d parts; want the size limit to make several", len(local))
	}
	objs := map[string]bool{}
	for o := range client.ListObjects(context.Background(), srv.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		objs[o.Key] = true
	}
	records := 0
	for name, want := range local {
		key := "predictions/dt=2026-03-04/" + name
		if up.Key(name) != key || !objs[key] {
			t.Errorf("part %s: key %s; objects %v", name, up.Key(name), slices.Collect(mapKeys(objs)))
			continue
		}
		obj, err := client.GetObject(context.Background(), srv.Bucket, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(obj)
		obj.Close()
		if err != nil || string(got) != string(want) {
			t.Errorf("%s: uploaded %d bytes (%v); wrote %d", key, len(got), err, len(want))
		}
		info, _ := ParsePartName(name)
		records += info.Records
	}
	if records != 20 {
		t.Errorf("%d records uploaded; want 20", records)
	}
	if left := readParts(t, dir); len(left) != 0 {
		t.Errorf("parts left locally after upload: %v", left)
	}
	if got := testutil.ToFloat64(m.uploaded); got != float64(len(local)) {
		t.Errorf("uploaded %v; want %d", got, len(local))
	}
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestUploaderBacklog: with S3 unreachable, parts wait up to
// MaxPendingBytes; beyond it the oldest are deleted and their records
// counted as dropped.
func TestUploaderBacklog(t *testing.T) {
	dir := t.TempDir()
	names := []string{
		"predlog-20260304T050607.000Z-aaaaaaaa-000001-n10.jsonl",
		"predlog-20260304T050608.000Z-aaaaaaaa-000002-n20.jsonl",
		"predlog-20260304T050609.000Z-aaaaaaaa-000003-n30.jsonl",
		".predlog-20260304T050610.000Z-aaaaaaaa-000004.jsonl.tmp", // not complete: never touched
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), make([]byte, 100), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing listens on port 1 of loopback: every upload fails fast.
	client, err := minio.New("127.0.0.1:1", &minio.Options{Creds: credentials.NewStaticV4("a", "b", ""), MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, 0)
	up, err := NewUploader(client, "s3://b", dir, UploaderOptions{MaxPendingBytes: 150, Metrics: m, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := up.UploadPending(ctx); err == nil {
		t.Fatal("UploadPending succeeded with S3 unreachable")
	}
	entries, _ := os.ReadDir(dir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	slices.Sort(left)
	want := []string{names[3], names[2]}
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Errorf("left %v; want %v", left, want)
	}
	if got := testutil.ToFloat64(m.droppedVec.WithLabelValues(AllDeployments, ReasonUploadBacklog)); got != 30 {
		t.Errorf("dropped %v records; want 30 (the two oldest parts)", got)
	}
	if got := testutil.ToFloat64(m.uploadErrs); got != 1 {
		t.Errorf("upload errors %v; want 1", got)
	}
}

func TestNewUploaderLocation(t *testing.T) {
	for _, loc := range []string{"", "s3://", "http://b/p", "b/p"} {
		if _, err := NewUploader(nil, loc, t.TempDir(), UploaderOptions{}); err == nil {
			t.Errorf("NewUploader(%q) succeeded", loc)
		}
	}
	up, err := NewUploader(nil, "s3://b", "", UploaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := up.Key("predlog-20260304T050607.000Z-aaaaaaaa-000001-n10.jsonl"); got != "dt=2026-03-04/predlog-20260304T050607.000Z-aaaaaaaa-000001-n10.jsonl" {
		t.Errorf("key without a prefix: %s", got)
	}
}
