package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/certs/certstest"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/serving"
)

// TestClusterTLS installs the chart with every listener on TLS from
// Secrets of one private CA (gateway, operator, and mutual TLS between
// the gateway and the replica pods) and OIDC beside ebb tokens, and checks
// what a user and an attacker on the pod network see:
//
//   - the gateway (REST, gRPC, the admin API it passes through) and the
//     operator serve TLS, and the gateway reaches the operator over TLS;
//   - an OIDC JWT from a local issuer wakes a deployment from zero through
//     the gateway, and the gateway reaches the replica over mutual TLS
//     (REST and gRPC); a JWT signed by another key, or for another
//     audience, gets 401; the admin API takes a JWT whose group maps to
//     admin;
//   - straight to the replica pod, plain HTTP inference gets 403 and TLS
//     without a client certificate fails the handshake (health checks stay
//     plain, for the kubelet and the operator);
//   - a renewed certificate Secret is served by the running gateway and
//     operator, and a rotated gateway token is used by the running
//     gateway, all without a restart.
func TestClusterTLS(t *testing.T) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	c.CreateNodes(t, 1, kubetest.NodeSpec{})
	c.CreateClaim(t, ns, "models", corev1.ReadWriteMany)
	cs := c.Clientset()

	// Service addresses are fixed before the Services exist, so the
	// certificates can name them as well as the in-cluster DNS names.
	gwAddr := c.ServiceAddr(ns, kubetest.ChartRelease+"-gateway", 8080)
	grpcAddr := c.ServiceAddr(ns, kubetest.ChartRelease+"-gateway", 8081)
	opAddr := c.ServiceAddr(ns, kubetest.ChartRelease+"-operator", 8090)
	hostOf := func(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
	ca := certstest.NewCA(t, "cluster CA")
	gwHosts := []string{"ebb-gateway." + ns + ".svc", hostOf(gwAddr)}
	opHosts := []string{"ebb-operator." + ns + ".svc", hostOf(opAddr)}
	gwCert := ca.Server(t, "gateway 1", gwHosts...)
	opCert := ca.Server(t, "operator 1", opHosts...)
	putTLSSecret(t, cs, ns, "gateway-tls", gwCert, ca)
	putTLSSecret(t, cs, ns, "operator-tls", opCert, ca)
	putTLSSecret(t, cs, ns, "replica-tls", ca.Server(t, "replicas", "ebb-replica"), ca)
	putTLSSecret(t, cs, ns, "gateway-client-tls", ca.Client(t, "gateways"), ca)
	idp := startIdP(t)

	chart := kubetest.InstallChart(t, c, ns, map[string]any{
		"gateway": map[string]any{"replicas": 1},
		"artifacts": map[string]any{
			"location": "file:///var/lib/ebb/artifacts",
			"volume":   map[string]any{"claimName": "models"},
		},
		"tls": map[string]any{
			"gateway":  map[string]any{"secretName": "gateway-tls"},
			"operator": map[string]any{"secretName": "operator-tls"},
			"replicas": map[string]any{"secretName": "replica-tls", "clientSecretName": "gateway-client-tls"},
		},
		"auth": map[string]any{"oidc": map[string]any{
			"issuer": idp.issuer, "audience": "ebb",
			"scopeMap": []string{"ml-predict=predict:diabetes", "ml-admins=admin"},
		}},
	})
	base := "https://" + gwAddr
	hc := &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	admin := clusterAdminToken(t, chart)

	// TLS everywhere, plain HTTP nowhere.
	if code, body := send(t, hc, http.MethodGet, base+"/v1/deployments", admin, nil, ""); code != http.StatusOK {
		t.Fatalf("GET /v1/deployments over HTTPS through the gateway (to the operator over HTTPS): %d %s", code, body)
	}
	if code, body := send(t, hc, http.MethodGet, "https://"+opAddr+"/v1/deployments", admin, nil, ""); code != http.StatusOK {
		t.Errorf("GET /v1/deployments over HTTPS at the operator: %d %s", code, body)
	}
	for _, addr := range []string{gwAddr, opAddr} {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("plain HTTP to %s answered %s", addr, resp.Status)
			}
		}
	}

	// A cold deployment of a pushed model.
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	model, _ := filepath.Abs("../../examples/diabetes/model.json")
	cli := &home{t: t, name: "cluster, TLS", base: base, token: admin}
	cli.cli("models", "push", model, "--name", "diabetes", "--alias", "champion", "--ca-file", caFile)
	d := serving.Deployment{Name: "diabetes", Spec: serving.Spec{Model: "diabetes@champion",
		Scaling: serving.Scaling{MinReplicas: 0, MaxReplicas: 1, ScaleToZeroAfter: serving.D(time.Hour)}}}
	if code, body := send(t, hc, http.MethodPost, base+"/v1/deployments", admin, d, ""); code != http.StatusCreated {
		t.Fatalf("create deployment: %d %s", code, body)
	}
	// The gateway learns of it from its watch, a moment after the API
	// answered; readiness never wakes it.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, body := send(t, hc, http.MethodGet, base+"/v2/models/diabetes/ready", admin, nil, "")
		if code != http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway still answers 404 for diabetes 30s after it was created: %s", body)
		}
	}

	// OIDC: a JWT wakes it; the gateway reaches the replica over mTLS.
	g := loadGolden(t)
	row := g.Rows[0]
	req := oip.InferRequest{Inputs: []oip.RequestInput{{Name: "input", Shape: []int64{1, int64(len(row))}, Datatype: oip.FP64}}}
	req.Inputs[0].Data, _ = json.Marshal(row)
	predict := func(token string) (int, string) {
		return send(t, hc, http.MethodPost, base+"/v2/models/diabetes/infer", token, req, "")
	}
	code, body := predict(idp.token(t, idp.key, "ebb", "ml-predict"))
	if code != http.StatusOK {
		t.Fatalf("infer with an OIDC JWT (cold start, mTLS to the replica): %d %s", code, body)
	}
	if got := prediction(t, body); !near(got, g.Predictions[0]) {
		t.Errorf("prediction %v, want %v", got, g.Predictions[0])
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a JWT signed by another key", idp.token(t, otherKey, "ebb", "ml-predict"), http.StatusUnauthorized},
		{"a JWT for another audience", idp.token(t, idp.key, "someone-else", "ml-predict"), http.StatusUnauthorized},
		{"a JWT whose groups map to nothing", idp.token(t, idp.key, "ebb", "staff"), http.StatusForbidden},
	} {
		if code, body := predict(tc.token); code != tc.want {
			t.Errorf("infer with %s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	// The operator's admin API takes JWTs too, by their groups.
	if code, body := send(t, hc, http.MethodGet, base+"/v1/deployments", idp.token(t, idp.key, "ebb", "ml-admins"), nil, ""); code != http.StatusOK {
		t.Errorf("GET /v1/deployments with an admin JWT: %d %s", code, body)
	}
	if code, body := send(t, hc, http.MethodGet, base+"/v1/deployments", idp.token(t, idp.key, "ebb", "ml-predict"), nil, ""); code != http.StatusForbidden {
		t.Errorf("GET /v1/deployments with a predict JWT: %d %s, want 403", code, body)
	}

	// gRPC over TLS, with the JWT; the gateway dials the replica's gRPC
	// over mTLS.
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), ServerName: hostOf(grpcAddr)})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	greq := &oipgrpc.ModelInferRequest{ModelName: "diabetes"}
	if err := oipgrpc.SetInputs(greq, []oip.Tensor{{Name: "input", Datatype: oip.FP64, Shape: []int64{1, int64(len(row))}, Data: row}}, false); err != nil {
		t.Fatal(err)
	}
	gctx, gcancel := context.WithTimeout(context.Background(), time.Minute)
	defer gcancel()
	jctx := metadata.AppendToOutgoingContext(gctx, "authorization", "Bearer "+idp.token(t, idp.key, "ebb", "ml-predict"))
	if _, err := oipgrpc.NewGRPCInferenceServiceClient(cc).ModelInfer(jctx, greq); err != nil {
		t.Errorf("gRPC infer over TLS with a JWT: %v", err)
	}
	if _, err := oipgrpc.NewGRPCInferenceServiceClient(cc).ModelInfer(gctx, greq); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC infer without a token: %v, want Unauthenticated", err)
	}

	// Straight to the replica pod.
	pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "serving.ebb.dev/deployment=diabetes"})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].Status.PodIP == "" {
		t.Fatalf("replica pods of diabetes: %v, %v", pods, err)
	}
	pod := net.JoinHostPort(pods.Items[0].Status.PodIP, "8080")
	plain := &http.Client{Timeout: 10 * time.Second}
	if code, body := send(t, plain, http.MethodPost, "http://"+pod+"/v2/models/diabetes/infer", "", req, ""); code != http.StatusForbidden {
		t.Errorf("plain HTTP infer straight to the replica: %d %s, want 403", code, body)
	}
	if code, body := send(t, plain, http.MethodGet, "http://"+pod+"/v2/health/ready", "", nil, ""); code != http.StatusOK {
		t.Errorf("plain HTTP health check of the replica: %d %s, want 200 (the kubelet's probe)", code, body)
	}
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "ebb-replica"}}}
	if resp, err := noCert.Post("https://"+pod+"/v2/models/diabetes/infer", "application/json", strings.NewReader("{}")); err == nil {
		resp.Body.Close()
		t.Errorf("TLS infer straight to the replica without a client certificate: %s, want the handshake refused", resp.Status)
	}
	withCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.Pool(), ServerName: "ebb-replica", Certificates: []tls.Certificate{ca.Client(t, "the test").TLS(t)}}}}
	if code, body := send(t, withCert, http.MethodPost, "https://"+pod+"/v2/models/diabetes/infer", "", req, ""); code != http.StatusOK {
		t.Errorf("TLS infer straight to the replica with a client certificate of the CA: %d %s, want 200", code, body)
	}

	// Renewed certificates, served by the running processes.
	gwPod, opPod := chartPodPIDs(t, c, chart, "gateway"), chartPodPIDs(t, c, chart, "operator")
	gwCert2, opCert2 := ca.Server(t, "gateway 2", gwHosts...), ca.Server(t, "operator 2", opHosts...)
	putTLSSecret(t, cs, ns, "gateway-tls", gwCert2, ca)
	putTLSSecret(t, cs, ns, "operator-tls", opCert2, ca)
	waitServed(t, ca, gwAddr, gwCert2.Cert.SerialNumber)
	waitServed(t, ca, grpcAddr, gwCert2.Cert.SerialNumber)
	waitServed(t, ca, opAddr, opCert2.Cert.SerialNumber)
	if code, body := send(t, hc, http.MethodGet, base+"/v1/deployments", admin, nil, ""); code != http.StatusOK {
		t.Errorf("GET /v1/deployments after the renewals: %d %s", code, body)
	}

	// A rotated gateway token: the new one in the Secret, the old one
	// revoked. A fresh ebb token (not in the gateway's cache) is checked
	// with the operator, with the gateway's new token.
	oldToken := clusterTokenSecret(t, chart, "--gateway-token-secret=")
	var rotated api.CreatedToken
	if code, body := send(t, hc, http.MethodPost, base+"/v1/tokens", admin, api.TokenRequest{Name: "gateways, rotated", Scopes: []string{auth.ScopeGateway}}, ""); code != http.StatusCreated {
		t.Fatalf("POST /v1/tokens: %d %s", code, body)
	} else if err := json.Unmarshal([]byte(body), &rotated); err != nil {
		t.Fatal(err)
	}
	putSecret(t, cs, ns, kubetest.ChartRelease+"-gateway-token", map[string][]byte{"token": []byte(rotated.Secret)}, corev1.SecretTypeOpaque)
	// Revoke the old one once the gateway has had time to reread its file.
	time.Sleep(5 * time.Second)
	oldID, _, _ := auth.ParseToken(oldToken)
	if code, body := send(t, hc, http.MethodDelete, base+"/v1/tokens/"+oldID, admin, nil, ""); code != http.StatusNoContent {
		t.Fatalf("revoke the old gateway token: %d %s", code, body)
	}
	var pred api.CreatedToken
	if code, body := send(t, hc, http.MethodPost, base+"/v1/tokens", admin, api.TokenRequest{Name: "predict", Scopes: []string{"predict:diabetes"}}, ""); code != http.StatusCreated {
		t.Fatalf("POST /v1/tokens: %d %s", code, body)
	} else if err := json.Unmarshal([]byte(body), &pred); err != nil {
		t.Fatal(err)
	}
	if code, body := predict(pred.Secret); code != http.StatusOK {
		t.Errorf("infer with a new ebb token after the gateway token's rotation: %d %s (the gateway must use its new token)", code, body)
	}

	// Nothing restarted.
	if got := chartPodPIDs(t, c, chart, "gateway"); got != gwPod {
		t.Errorf("gateway pods and PIDs %q after the renewals, were %q: restarted", got, gwPod)
	}
	if got := chartPodPIDs(t, c, chart, "operator"); got != opPod {
		t.Errorf("operator pods and PIDs %q after the renewals, were %q: restarted", got, opPod)
	}
}

// putTLSSecret creates or replaces a kubernetes.io/tls Secret holding p and
// ca's certificate, as cert-manager writes one.
func putTLSSecret(t *testing.T, cs kubernetes.Interface, ns, name string, p certstest.Pair, ca *certstest.CA) {
	t.Helper()
	putSecret(t, cs, ns, name, map[string][]byte{
		corev1.TLSCertKey: p.CertPEM, corev1.TLSPrivateKeyKey: p.KeyPEM, "ca.crt": ca.PEM,
	}, corev1.SecretTypeTLS)
}

func putSecret(t *testing.T, cs kubernetes.Interface, ns, name string, data map[string][]byte, typ corev1.SecretType) {
	t.Helper()
	ctx := context.Background()
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Type: typ, Data: data}
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	s.Data = data
	if _, err := cs.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitServed waits until a TLS handshake with addr gets the certificate
// with serial, trusting ca: the files the kubelet updated, reloaded.
func waitServed(t *testing.T, ca *certstest.CA, addr string, serial *big.Int) {
	t.Helper()
	host, _, _ := net.SplitHostPort(addr)
	deadline := time.Now().Add(45 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: host})
		if err == nil {
			leaf := conn.ConnectionState().PeerCertificates[0]
			conn.Close()
			if leaf.SerialNumber.Cmp(serial) == 0 {
				return
			}
			last = "certificate " + leaf.Subject.CommonName
		} else {
			last = err.Error()
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Errorf("%s does not serve the renewed certificate within 45s: %s", addr, last)
}

// chartPodPIDs names the release's pods of component with the PID the
// fake kubelet runs each with: it changes when a pod or its process is
// replaced.
func chartPodPIDs(t *testing.T, c *kubetest.Cluster, rel *kubetest.Release, component string) string {
	t.Helper()
	var parts []string
	for _, p := range rel.Pods(t, component) {
		if p.DeletionTimestamp != nil {
			continue
		}
		proc, _ := c.PodProcess(p.Namespace, p.Name)
		parts = append(parts, fmt.Sprintf("%s=%d", p.Name, proc.PID))
	}
	return strings.Join(parts, ",")
}

// prediction decodes the one prediction of an OIP v2 answer.
func prediction(t *testing.T, body string) float64 {
	t.Helper()
	var out struct {
		Outputs []struct {
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || len(out.Outputs) == 0 || len(out.Outputs[0].Data) != 1 {
		t.Fatalf("undecodable prediction %s: %v", body, err)
	}
	return out.Outputs[0].Data[0]
}

// idp is an OpenID Connect issuer on loopback: its discovery document and
// JWKS (one ES256 key), and tokens it signs.
type idp struct {
	issuer string
	key    *ecdsa.PrivateKey
}

func startIdP(t *testing.T) *idp {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &idp{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": p.issuer, "jwks_uri": p.issuer + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	p.issuer = srv.URL
	return p
}

// token returns a JWT of the issuer for audience with groups, signed by
// key with key id k1 (the issuer's own key, or another one).
func (p *idp) token(t *testing.T, key *ecdsa.PrivateKey, audience string, groups ...string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(map[string]any{
		"iss": p.issuer, "aud": audience, "sub": "alice", "groups": groups,
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
