package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/artifact/artifacttest"
	"github.com/ebb-ml/ebb/internal/serving"
)

// TestUpS3Artifacts: ebb up keeps its registry's artifacts in S3
// (--artifacts s3://...), as the cluster does (TestHomeCluster), and its
// replicas fetch them through `ebb fetch-artifact`: the lean replica binary
// links no S3 client. A pushed model serves; the replica's cold start shows
// the bytes it fetched; a version whose object was deleted from the bucket
// fails its replica's start with the store's answer, not a hang.
func TestUpS3Artifacts(t *testing.T) {
	srv := artifacttest.StartS3Server(t)
	t.Setenv("EBB_S3_ENDPOINT", srv.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	p := startEbb(t, freeAddr(t), t.TempDir(), "--artifacts", "s3://"+srv.Bucket+"/models")
	model, _ := filepath.Abs("../../examples/diabetes/model.json")
	p.cli("models", "push", model, "--name", "diabetes")
	d := serving.Deployment{Name: "diabetes", Spec: serving.Spec{Model: "diabetes:1",
		Scaling: serving.Scaling{MinReplicas: 1, MaxReplicas: 1}}}
	if code := p.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("create deployment: %d", code)
	}
	st := p.waitStatus("diabetes", 60*time.Second, "a ready replica", func(st serving.Status) bool { return st.ReadyReplicas == 1 })
	if fetch := artifactPhase(st); fetch == nil || fetch.Bytes == 0 {
		t.Errorf("no artifact_fetched phase with bytes in the replica's cold start: %+v", st.ReplicaStatuses)
	}
	g := loadGoldenFile(t, "golden.json")
	h := &home{t: t, name: "ebb up, S3 artifacts", base: p.base, token: p.token}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if got, code, body := h.inferRow(ctx, "/v2/models/diabetes/infer", g.Rows[0]); code != http.StatusOK || !near(got, g.Predictions[0]) {
		t.Fatalf("infer: %d %s (got %v, want %v)", code, body, got, g.Predictions[0])
	}

	// Another model's object goes missing from the bucket before any
	// replica fetched it: its replica fails to start, with the store's
	// answer, at once (a missing artifact is not retried).
	before := objects(t, srv)
	model2, _ := filepath.Abs("../../examples/diabetes/model-v2.json")
	p.cli("models", "push", model2, "--name", "lost")
	var added []string
	for _, o := range objects(t, srv) {
		if !slices.Contains(before, o) {
			added = append(added, o)
		}
	}
	if len(added) != 1 {
		t.Fatalf("the push stored %d new objects in the bucket (%v), want 1", len(added), added)
	}
	if err := os.Remove(added[0]); err != nil {
		t.Fatal(err)
	}
	lost := serving.Deployment{Name: "lost", Spec: serving.Spec{Model: "lost:1",
		Scaling: serving.Scaling{MinReplicas: 1, MaxReplicas: 1}}}
	if code := p.do(http.MethodPost, "/v1/deployments", lost, nil); code != http.StatusCreated {
		t.Fatalf("create deployment lost: %d", code)
	}
	st = p.waitStatus("lost", 60*time.Second, "a failure", func(st serving.Status) bool { return st.Failure != "" })
	if !strings.Contains(st.Failure, "artifact not found") {
		t.Errorf("failure %q, want the missing artifact named", st.Failure)
	}
}

// objects lists the files of the S3 server's bucket under models/.
func objects(t *testing.T, srv *artifacttest.S3Server) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(srv.Root, srv.Bucket, "models"), func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
