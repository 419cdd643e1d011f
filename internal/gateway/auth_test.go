package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/ebb-ml/ebb/internal/store"
)

// tokenMap is an auth.TokenGetter over a map, counting reads.
type tokenMap struct {
	m     map[string]auth.Token
	reads int
}

func (s *tokenMap) GetToken(_ context.Context, id string) (auth.Token, error) {
	s.reads++
	t, ok := s.m[id]
	if !ok {
		return auth.Token{}, store.ErrNotFound
	}
	return t, nil
}

// add stores a token with scopes and returns its secret.
func (s *tokenMap) add(t testing.TB, scopes ...string) string {
	t.Helper()
	secret, tok, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tok.Name, tok.Scopes = strings.Join(scopes, ","), scopes
	s.m[tok.ID] = tok
	return secret
}

// authFixture is newFixture with the auth stage on.
func authFixture(t testing.TB, a Authenticator, route routing.Route) *Gateway {
	t.Helper()
	tab, rec := &routing.Table{}, &stats.Recorder{}
	route.Stats = rec
	tab.Publish(route)
	act := activator.New(tab, &publisher{tab: tab, rec: rec}, activator.Options{Timeout: 300 * time.Millisecond})
	return New(tab, act, Options{Metrics: NewMetrics(prometheus.NewRegistry()), HoldTimeout: 200 * time.Millisecond, Auth: a})
}

func TestAuthStageREST(t *testing.T) {
	tokens := &tokenMap{m: map[string]auth.Token{}}
	v := auth.NewVerifier(tokens, 0, nil)
	m, other, admin, read := tokens.add(t, "predict:m"), tokens.add(t, "predict:other-*"), tokens.add(t, "admin"), tokens.add(t, "read")
	closed := serve(t, authFixture(t, v, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(t, "r1")}}))
	open := serve(t, authFixture(t, nil, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(t, "r1")}}))
	tests := []struct {
		name           string
		url            string
		method, path   string
		token          string
		want           int
		wantCode       string
		wantChallenged bool
	}{
		{"open: infer without token", open, "POST", "/v2/models/m/infer", "", 200, "", false},
		{"infer with predict:m", closed, "POST", "/v2/models/m/infer", m, 200, "", false},
		{"infer with admin", closed, "POST", "/v2/models/m/infer", admin, 200, "", false},
		{"versioned infer with predict:m", closed, "POST", "/v2/models/m/versions/1/infer", m, 0, "", false},
		{"infer without token", closed, "POST", "/v2/models/m/infer", "", 401, auth.CodeUnauthenticated, true},
		{"infer with a bad token", closed, "POST", "/v2/models/m/infer", "ebb_nope", 401, auth.CodeUnauthenticated, true},
		{"infer with another deployment's scope", closed, "POST", "/v2/models/m/infer", other, 403, auth.CodeForbidden, false},
		{"infer with read", closed, "POST", "/v2/models/m/infer", read, 403, auth.CodeForbidden, false},
		{"metadata without token", closed, "GET", "/v2/models/m", "", 401, auth.CodeUnauthenticated, true},
		{"model ready without token", closed, "GET", "/v2/models/m/ready", "", 401, auth.CodeUnauthenticated, true},
		{"live stays open", closed, "GET", "/v2/health/live", "", 200, "", false},
		{"ready stays open", closed, "GET", "/v2/health/ready", "", 200, "", false},
		{"server metadata stays open", closed, "GET", "/v2", "", 200, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, tt.url+tt.path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if tt.want == 0 { // past auth: anything but 401/403
				if resp.StatusCode == 401 || resp.StatusCode == 403 {
					t.Errorf("= %d %s; want past the auth stage", resp.StatusCode, b)
				}
				return
			}
			if resp.StatusCode != tt.want {
				t.Fatalf("= %d %s; want %d", resp.StatusCode, b, tt.want)
			}
			if got := resp.Header.Get("WWW-Authenticate") != ""; got != tt.wantChallenged {
				t.Errorf("WWW-Authenticate %q; want one: %v", resp.Header.Get("WWW-Authenticate"), tt.wantChallenged)
			}
			if tt.wantCode != "" {
				var eb errorBody
				if err := json.Unmarshal(b, &eb); err != nil || eb.Code != tt.wantCode || eb.Error == "" {
					t.Errorf("body %s; want an OIP error with code %s", b, tt.wantCode)
				}
			}
		})
	}
	if tokens.reads > 4 {
		t.Errorf("the store was read %d times for 4 distinct valid tokens; want each verified once and cached", tokens.reads)
	}
}

func TestAuthStageGRPC(t *testing.T) {
	tokens := &tokenMap{m: map[string]auth.Token{}}
	v := auth.NewVerifier(tokens, 0, nil)
	m, other := tokens.add(t, "predict:m"), tokens.add(t, "predict:other")
	tab, rec := &routing.Table{}, &stats.Recorder{}
	tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{grpcReplica(t, "g1")}, Stats: rec})
	act := activator.New(tab, &publisher{tab: tab, rec: rec}, activator.Options{Timeout: 300 * time.Millisecond})
	gw := NewGRPC(tab, act, Options{Metrics: NewMetrics(prometheus.NewRegistry()), HoldTimeout: 200 * time.Millisecond, Auth: v})
	ln := listenLoopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ctx, ln, 5*time.Second) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); cancel(); <-served })
	c := oipgrpc.NewGRPCInferenceServiceClient(cc)
	withToken := func(tok string) context.Context {
		if tok == "" {
			return context.Background()
		}
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	}
	for _, tt := range []struct {
		name  string
		token string
		want  codes.Code
	}{
		{"predict:m", m, codes.OK},
		{"no token", "", codes.Unauthenticated},
		{"bad token", "ebb_nope", codes.Unauthenticated},
		{"another deployment's scope", other, codes.PermissionDenied},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.ModelInfer(withToken(tt.token), inferRequest(t, "m"))
			if status.Code(err) != tt.want {
				t.Errorf("ModelInfer = %v; want %v", err, tt.want)
			}
			_, err = c.ModelMetadata(withToken(tt.token), &oipgrpc.ModelMetadataRequest{Name: "m"})
			if tt.want != codes.OK && status.Code(err) != tt.want {
				t.Errorf("ModelMetadata = %v; want %v", err, tt.want)
			}
		})
	}
	if _, err := c.ServerLive(context.Background(), &oipgrpc.ServerLiveRequest{}); err != nil {
		t.Errorf("ServerLive without a token = %v; want open", err)
	}
}
