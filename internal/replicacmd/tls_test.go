package replicacmd

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/certs"
	"github.com/ebb-ml/ebb/internal/certs/certstest"
	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// TestReplicaTLS serves a replica's server (engine echo, REST and gRPC on
// one port) behind startReplicaTLS with mutual TLS, as `ebb replica
// --tls-cert --tls-key --tls-client-ca` does, and checks who gets what:
// inference needs TLS and a client certificate of the CA, REST and gRPC
// alike; plain HTTP gets the health checks and /ebb/v1/replica, and 403 for
// anything else.
func TestReplicaTLS(t *testing.T) {
	ca := certstest.NewCA(t, "ca")
	dir := t.TempDir()
	files := ca.Server(t, "replica", "ebb-replica").Write(t, dir, ca)
	clientDir := t.TempDir()
	client := ca.Client(t, "gateway").Write(t, clientDir, ca)
	stranger := certstest.NewCA(t, "stranger").Client(t, "stranger")

	log := slog.New(slog.DiscardHandler)
	o := certs.Files{CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: files.CA}
	stls, err := o.Load(log)
	if err != nil {
		t.Fatal(err)
	}
	root, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := root.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	ln := startReplicaTLS(ctx, root, o, stls, connlimit.Limits{}, log)
	m, err := echo.Load("")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New("m", m, server.Options{Logger: log, DrainTimeout: 2 * time.Second})
	served := make(chan error, 1)
	go func() { served <- srv.ServeWithGRPC(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ServeWithGRPC: %v", err)
		}
	}()

	clientCert, err := tls.LoadX509KeyPair(client.Cert, client.Key)
	if err != nil {
		t.Fatal(err)
	}
	// clientConfig is the gateway's TLS to replicas: the CA, the name the
	// replicas' certificate is for, and the client certificate.
	clientConfig := func(nextProtos ...string) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool(), ServerName: "ebb-replica", Certificates: []tls.Certificate{clientCert}, NextProtos: nextProtos}
	}
	infer := []byte(`{"inputs":[{"name":"input","datatype":"FP32","shape":[1,2],"data":[1,2]}]}`)
	plain := &http.Client{Timeout: 5 * time.Second}
	mtls := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: clientConfig("http/1.1")}}
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "ebb-replica"}}}
	badCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.Pool(), ServerName: "ebb-replica", Certificates: []tls.Certificate{stranger.TLS(t)}}}}
	for _, tt := range []struct {
		name   string
		client *http.Client
		scheme string
		method string
		path   string
		want   int    // 0: the request fails
		body   string // in the answer
	}{
		{"mTLS infer", mtls, "https", "POST", "/v2/models/m/infer", 200, `"data":[1,2]`},
		{"mTLS metadata", mtls, "https", "GET", "/v2/models/m", 200, `"name":"m"`},
		{"plain infer", plain, "http", "POST", "/v2/models/m/infer", 403, "mutual TLS"},
		{"plain metadata", plain, "http", "GET", "/v2/models/m", 403, "mutual TLS"},
		{"plain ready", plain, "http", "GET", "/v2/health/ready", 200, ""},
		{"plain live", plain, "http", "GET", "/v2/health/live", 200, ""},
		{"plain replica info", plain, "http", "GET", "/ebb/v1/replica", 200, `"deployment"`},
		{"plain POST to a health path", plain, "http", "POST", "/v2/health/ready", 403, ""},
		{"TLS without a certificate", noCert, "https", "POST", "/v2/models/m/infer", 0, ""},
		{"TLS with another CA's certificate", badCert, "https", "POST", "/v2/models/m/infer", 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, tt.scheme+"://"+addr+tt.path, bytes.NewReader(infer))
			resp, err := tt.client.Do(req)
			if tt.want == 0 {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("answered %s; want the handshake refused", resp.Status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want || !strings.Contains(string(b), tt.body) {
				t.Errorf("%d %s; want %d with %q", resp.StatusCode, b, tt.want, tt.body)
			}
		})
	}

	// gRPC over the same port: with the client certificate, and without.
	grpcInfer := func(cfg *tls.Config) error {
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		req := &oipgrpc.ModelInferRequest{ModelName: "m"}
		if err := oipgrpc.SetInputs(req, []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{1, 2}, Data: []float32{1, 2}}}, false); err != nil {
			t.Fatal(err)
		}
		gctx, gcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer gcancel()
		_, err = oipgrpc.NewGRPCInferenceServiceClient(cc).ModelInfer(gctx, req)
		return err
	}
	if err := grpcInfer(clientConfig()); err != nil {
		t.Errorf("gRPC infer with the client certificate: %v", err)
	}
	if err := grpcInfer(&tls.Config{RootCAs: ca.Pool(), ServerName: "ebb-replica"}); err == nil {
		t.Error("gRPC infer without a client certificate was served")
	}
}
