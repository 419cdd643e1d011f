package e2e

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/serving"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestClusterAuth installs the chart with its defaults (auth on) and
// checks the cluster's auth as a user meets it: the admin API through the
// gateway needs a token and takes the admin token from the Secret; a
// predict-only token made through /v1/tokens infers on its deployment
// (waking it from zero, so the gateways' wake-ups and demand reports get
// through to the operator with their own token) and nothing else; the
// operator's internal endpoints refuse requests without the gateway token.
func TestClusterAuth(t *testing.T) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	chart := installVolumeChart(t, c, ns)
	base := "http://" + c.ServiceAddr(ns, chart.Gateway, 8080)
	anon := &home{t: t, name: "cluster, no token", base: base, grpcAddr: c.ServiceAddr(ns, chart.Gateway, 8081)}
	admin := *anon
	admin.name, admin.token = "cluster, admin", clusterAdminToken(t, chart)

	if code, body := anon.do(http.MethodGet, "/v1/deployments", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("GET /v1/deployments without a token: %d %s, want 401", code, body)
	}
	if code, body := admin.do(http.MethodGet, "/v1/deployments", nil, nil); code != http.StatusOK {
		t.Fatalf("GET /v1/deployments with the admin token: %d %s", code, body)
	}

	// The operator's internal endpoints.
	opBase := "http://" + c.ServiceAddr(ns, chart.Operator, 8090)
	gwToken := clusterTokenSecret(t, chart, "--gateway-token-secret=")
	report := []byte(`{"gateway":"e2e","deployments":{}}`)
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"admin token", admin.token, http.StatusOK},
		{"gateway token", gwToken, http.StatusOK},
	} {
		// The tenant limits the gateways poll need the same token.
		lreq, _ := http.NewRequest(http.MethodGet, opBase+operator.LimitsPath, nil)
		if tc.token != "" {
			lreq.Header.Set("Authorization", "Bearer "+tc.token)
		}
		lresp, err := http.DefaultClient.Do(lreq)
		if err != nil {
			t.Fatal(err)
		}
		lresp.Body.Close()
		if lresp.StatusCode != tc.want {
			t.Errorf("GET %s with %s: %d, want %d", operator.LimitsPath, tc.name, lresp.StatusCode, tc.want)
		}
		req, _ := http.NewRequest(http.MethodPost, opBase+operator.DemandPath, bytes.NewReader(report))
		req.Header.Set("Content-Type", "application/json")
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("POST %s with %s: %d, want %d", operator.DemandPath, tc.name, resp.StatusCode, tc.want)
		}
	}
	// The gateway token does nothing else.
	gw := *anon
	gw.name, gw.token = "cluster, gateway token", gwToken
	if code, body := gw.do(http.MethodGet, "/v1/deployments", nil, nil); code != http.StatusForbidden {
		t.Errorf("GET /v1/deployments with the gateway token: %d %s, want 403", code, body)
	}

	// A cold deployment and a predict-only token for it.
	model, _ := filepath.Abs("../../examples/diabetes/model.json")
	admin.cli("models", "push", model, "--name", "diabetes", "--alias", "champion")
	for _, name := range []string{"diabetes", "other"} {
		d := serving.Deployment{Name: name, Spec: serving.Spec{Model: "diabetes@champion",
			Scaling: serving.Scaling{MinReplicas: 0, MaxReplicas: 1}}}
		if code, body := admin.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
			t.Fatalf("create deployment %s: %d %s", name, code, body)
		}
		admin.waitKnown(name)
	}
	var created api.CreatedToken
	if code, body := admin.do(http.MethodPost, "/v1/tokens", api.TokenRequest{Name: "e2e-predict", Scopes: []string{"predict:diabetes"}}, &created); code != http.StatusCreated {
		t.Fatalf("POST /v1/tokens: %d %s", code, body)
	}
	pred := *anon
	pred.name, pred.token = "cluster, predict:diabetes", created.Secret

	g := loadGolden(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, code, body := anon.inferRow(ctx, "/v2/models/diabetes/infer", g.Rows[0]); code != http.StatusUnauthorized {
		t.Errorf("infer without a token: %d %s, want 401", code, body)
	}
	// Cold: the gateway holds the request and wakes the deployment
	// through the operator with its own token.
	if got, code, body := pred.inferRow(ctx, "/v2/models/diabetes/infer", g.Rows[0]); code != http.StatusOK || !near(got, g.Predictions[0]) {
		t.Fatalf("infer with predict:diabetes: %d %s (got %v want %v)", code, body, got, g.Predictions[0])
	}
	if _, code, body := pred.inferRow(ctx, "/v2/models/other/infer", g.Rows[0]); code != http.StatusForbidden {
		t.Errorf("infer on another deployment with predict:diabetes: %d %s, want 403", code, body)
	}
	d := serving.Deployment{Name: "third", Spec: serving.Spec{Model: "diabetes@champion"}}
	if code, body := pred.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusForbidden {
		t.Errorf("deploy with predict:diabetes: %d %s, want 403", code, body)
	}
	if code, body := pred.do(http.MethodGet, "/v1/deployments/diabetes", nil, nil); code != http.StatusForbidden {
		t.Errorf("read with predict:diabetes: %d %s, want 403", code, body)
	}

	// gRPC: the same token, in the authorization metadata.
	cc, err := grpc.NewClient(anon.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	infer := func(token, name string) error {
		req := &oipgrpc.ModelInferRequest{ModelName: name, Id: "e2e"}
		row := g.Rows[0]
		if err := oipgrpc.SetInputs(req, []oip.Tensor{{Name: "input", Datatype: oip.FP64, Shape: []int64{1, int64(len(row))}, Data: row}}, false); err != nil {
			t.Fatal(err)
		}
		ctx := ctx
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		_, err := oipgrpc.NewGRPCInferenceServiceClient(cc).ModelInfer(ctx, req)
		return err
	}
	if err := infer(pred.token, "diabetes"); err != nil {
		t.Errorf("gRPC infer with predict:diabetes: %v", err)
	}
	if err := infer("", "diabetes"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC infer without a token: %v, want Unauthenticated", err)
	}
	if err := infer(pred.token, "other"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("gRPC infer on another deployment: %v, want PermissionDenied", err)
	}
}
