package jobs

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/ebb-ml/ebb/internal/artifact/artifacttest"
	"github.com/ebb-ml/ebb/internal/artifact/s3"
	"github.com/ebb-ml/ebb/internal/serving"
)

// TestRunS3 runs a job from and to a real S3 server (versitygw), stopped
// midway and resumed: parts and checkpoints work on S3 as on files, and
// the output appears whole, once.
func TestRunS3(t *testing.T) {
	srv := artifacttest.StartS3Server(t)
	client, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const rows = 1500
	dir := t.TempDir()
	local := writeDataset(t, dir, serving.FormatCSV, rows, -1)
	if _, err := client.FPutObject(ctx, srv.Bucket, "in/data.csv", local, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	storage := func() *Storage {
		return &Storage{S3: s3.Options{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}}
	}
	in, out := "s3://"+srv.Bucket+"/in/data.csv", "s3://"+srv.Bucket+"/out/scores.parquet"

	a := &Admission{Storage: storage()}
	for _, tt := range []struct{ in, out, msg string }{
		{"s3://" + srv.Bucket + "/in/nope.csv", out, "in/nope.csv does not exist"},
		{in, "s3://no-such-bucket/out.csv", `bucket "no-such-bucket" does not exist`},
	} {
		j := testJob("admit", tt.in, tt.out)
		err := a.Admit(ctx, &j)
		if _, ok := errors.AsType[*InputError](err); !ok || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Admit(%s → %s) = %v; want an input error with %q", tt.in, tt.out, err, tt.msg)
		}
	}

	st := openStore(t, dir)
	j := testJob("s3", in, out)
	if err := a.Admit(ctx, &j); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	first := &sumModel{before: func(_ context.Context, n int64) error {
		if n == 6 {
			stop()
		}
		return nil
	}}
	if err := NewRunner(j.Name, st, first, &fakeScaler{}, storage(), fastOptions()).Run(runCtx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after the stop = %v; want context.Canceled", err)
	}
	if _, err := client.StatObject(ctx, srv.Bucket, "out/scores.parquet", minio.StatObjectOptions{}); err == nil {
		t.Fatal("the output exists before the job is done")
	}
	recorded, _ := st.ListJobChunks(ctx, j.Name)
	second := &sumModel{}
	if err := NewRunner(j.Name, st, second, &fakeScaler{}, storage(), fastOptions()).Run(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := st.GetJob(ctx, j.Name)
	if got.Status.Phase != serving.JobSucceeded {
		t.Fatalf("phase = %s (%s); want Succeeded", got.Status.Phase, got.Status.Message)
	}
	if want := int64(15 - len(recorded)); second.calls.Load() != want {
		t.Errorf("the restart sent %d chunks; want the %d not recorded", second.calls.Load(), want)
	}
	path := filepath.Join(dir, "scores.parquet")
	if err := client.FGetObject(ctx, srv.Bucket, "out/scores.parquet", path, minio.GetObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	checkOutput(t, readOutput(t, path, serving.FormatParquet), rows, -1)
	for o := range client.ListObjects(ctx, srv.Bucket, minio.ListObjectsOptions{Prefix: "out/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		if o.Key != "out/scores.parquet" {
			t.Errorf("object %s is left beside the output", o.Key)
		}
	}
}
