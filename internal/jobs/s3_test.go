package jobs

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strconv"
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

// TestPartsLogS3 writes a parts log on S3: one object per group, read
// back whole, a torn object (as no PUT leaves one, but a copy may) read
// up to its tear, and every object under the parts prefix removed at the
// end, the part files of earlier versions with them.
func TestPartsLogS3(t *testing.T) {
	srv := artifacttest.StartS3Server(t)
	client, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st := &Storage{S3: s3.Options{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}}
	out, err := parseLoc("s3://" + srv.Bucket + "/out/scores.csv")
	if err != nil {
		t.Fatal(err)
	}
	w := st.partsWriter(out)
	want := map[string]string{}
	for g, group := range [][]string{{"c0", "c1", "c2"}, {"c3", "c4"}} {
		for _, id := range group {
			want[id] = "rows of " + id + " in group " + strconv.Itoa(g)
			if _, err := w.append(id, []byte(want[id])); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	torn := append(encodeFrame("c5", []byte("whole")), encodeFrame("c6", []byte("torn"))...)
	want["c5"] = "whole"
	for key, body := range map[string][]byte{"out/scores.csv.parts/0-torn.log": torn[:len(torn)-1], "out/scores.csv.parts/c9.jsonl": []byte("{}\n")} {
		if _, err := client.PutObject(ctx, srv.Bucket, key, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := st.listS3Parts(ctx, out)
	if err != nil || len(objs) != 4 {
		t.Fatalf("objects under the parts prefix: %d, %v; want 2 groups, the torn one and the old part", len(objs), err)
	}
	idx, err := st.scanParts(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	r := st.partsReader(out)
	for id, body := range want {
		got, err := r.part(ctx, id, idx[id])
		if err != nil || string(got) != body {
			t.Errorf("part of %s = %q, %v; want %q", id, got, err, body)
		}
	}
	if len(idx) != len(want) {
		t.Errorf("indexed %v; want %d chunks (c6 torn)", idx, len(want))
	}
	if err := st.removeParts(ctx, out); err != nil {
		t.Fatal(err)
	}
	if objs, err := st.listS3Parts(ctx, out); err != nil || len(objs) != 0 {
		t.Errorf("objects left under the parts prefix: %d, %v", len(objs), err)
	}
}
