package apiclient_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// blobs is a content-addressed artifact store in a directory.
type blobs struct{ dir string }

func (b blobs) Put(ctx context.Context, r io.Reader) (string, string, int64, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return "", "", 0, err
	}
	s := sha256.Sum256(data)
	sum := hex.EncodeToString(s[:])
	p := filepath.Join(b.dir, sum)
	return "file://" + p, sum, int64(len(data)), os.WriteFile(p, data, 0o644)
}

func (b blobs) Open(ctx context.Context, uri, sum string) (io.ReadCloser, error) {
	return os.Open(strings.TrimPrefix(uri, "file://"))
}

func newModelsServer(t *testing.T) (*apiclient.Client, *registry.Service) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := registry.NewService(st, blobs{t.TempDir()}, registry.Options{})
	h := api.New(st, fakeController{}, nil)
	h.MountModels(svc)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return apiclient.New(srv.URL, srv.Client()), svc
}

func TestModelsClient(t *testing.T) {
	c, svc := newModelsServer(t)
	ctx := context.Background()
	if _, err := c.CreateModel(ctx, "diabetes", "regression"); err != nil {
		t.Fatalf("CreateModel: %v", err)
	}
	_, err := c.CreateModel(ctx, "diabetes", "")
	if ae, ok := errors.AsType[*apiclient.Error](err); !ok || ae.Code != "model/exists" || ae.Status != 409 {
		t.Errorf("CreateModel twice: %v, want model/exists", err)
	}
	file := filepath.Join(t.TempDir(), "model.json")
	os.WriteFile(file, []byte(`{"learner":{}}`), 0o644)
	v1, err := c.PushVersion(ctx, "diabetes", api.PushMetadata{Tags: map[string]string{"a": "1"}}, file)
	if err != nil {
		t.Fatalf("PushVersion: %v", err)
	}
	v2, err := c.RegisterVersion(ctx, "diabetes", api.PushMetadata{ArtifactURI: v1.ArtifactURI, SHA256: v1.SHA256, Engine: "trees"})
	if err != nil {
		t.Fatalf("RegisterVersion: %v", err)
	}
	if v2.Version != 2 || v2.SHA256 != v1.SHA256 {
		t.Errorf("RegisterVersion = %+v, want version 2 of the same artifact", v2)
	}
	one := "1"
	got, err := c.PatchVersionTags(ctx, "diabetes", 1, map[string]*string{"a": nil, "b": &one})
	if err != nil {
		t.Fatalf("PatchVersionTags: %v", err)
	}
	if diff := cmp.Diff(map[string]string{"b": "1"}, got.Tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	zero := 0
	if _, err := c.SetAlias(ctx, "diabetes", "champion", 1, &zero, "alice"); err != nil {
		t.Fatalf("SetAlias: %v", err)
	}
	_, err = c.SetAlias(ctx, "diabetes", "champion", 2, &zero, "bob")
	if ae, ok := errors.AsType[*apiclient.Error](err); !ok || ae.Code != "alias/conflict" || ae.Status != 409 {
		t.Errorf("SetAlias expecting no alias: %v, want alias/conflict", err)
	}
	stale := 2
	err = c.DeleteAlias(ctx, "diabetes", "champion", &stale, "carol")
	if ae, ok := errors.AsType[*apiclient.Error](err); !ok || ae.Code != "alias/conflict" {
		t.Errorf("DeleteAlias expecting 2: %v, want alias/conflict", err)
	}
	if err := c.DeleteAlias(ctx, "diabetes", "champion", nil, "carol"); err != nil {
		t.Fatalf("DeleteAlias: %v", err)
	}
	hist, err := c.AliasHistory(ctx, "diabetes", "champion")
	if err != nil {
		t.Fatalf("AliasHistory: %v", err)
	}
	if len(hist) != 2 || hist[1].By != "carol" || hist[1].To != 0 {
		t.Errorf("history = %+v, want the creation and carol's deletion", hist)
	}
	if err := svc.RecordServing(ctx, "web", "diabetes", 2); err != nil {
		t.Fatal(err)
	}
	recs, err := c.ServingHistory(ctx, "web")
	if err != nil || len(recs) != 1 || recs[0].Version != 2 {
		t.Errorf("ServingHistory = %+v, %v", recs, err)
	}
	list, err := c.ListModels(ctx, registry.ListOptions{Prefix: "dia"})
	if err != nil || len(list.Items) != 1 || list.Items[0].LatestVersion != 2 {
		t.Errorf("ListModels = %+v, %v", list, err)
	}
	_, err = c.GetVersion(ctx, "diabetes", 3)
	if ae, ok := errors.AsType[*apiclient.Error](err); !ok || ae.Code != "version/not_found" {
		t.Errorf("GetVersion(3): %v, want version/not_found", err)
	}
}
