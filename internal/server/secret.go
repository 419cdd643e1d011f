package server

import (
	"context"
	"crypto/subtle"
	"net/http"

	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/serving/core"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// A replica given a secret (Options.Secret) serves only requests that carry
// it in core.SecretHeader: a loopback port is open to every user of the
// machine, and only ebb's gateway should reach the model. Health checks and
// /ebb/v1/replica stay open: they run no model and tell no more than `ps`
// does (ID, deployment, PID), and the control loop and tools that find
// replica processes use them.

// secretFree reports whether path is served without the secret.
func secretFree(path string) bool {
	switch path {
	case "/v2/health/live", "/v2/health/ready", "/ebb/v1/replica":
		return true
	}
	return false
}

// hasSecret reports whether got is the replica's secret, in constant time.
func (s *Server) hasSecret(got string) bool {
	return subtle.ConstantTimeCompare([]byte(got), s.secret) == 1
}

// hasSecretBytes is hasSecret without a string.
func (s *Server) hasSecretBytes(got []byte) bool {
	return subtle.ConstantTimeCompare(got, s.secret) == 1
}

// refuseREST answers 401 and returns true when r lacks the secret.
func (s *Server) refuseREST(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.Secret == "" || secretFree(r.URL.Path) || s.hasSecret(r.Header.Get(core.SecretHeader)) {
		return false
	}
	writeError(w, http.StatusUnauthorized, "this replica serves only ebb's gateway: send the request to the gateway")
	return true
}

// grpcSecret refuses calls without the secret, but health checks.
func (s *Server) grpcSecret(ctx context.Context, method string) error {
	if s.opts.Secret == "" {
		return nil
	}
	switch method {
	case oipgrpc.GRPCInferenceService_ServerLive_FullMethodName, oipgrpc.GRPCInferenceService_ServerReady_FullMethodName:
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(core.SecretHeader); len(v) == 1 && s.hasSecret(v[0]) {
		return nil
	}
	return status.Error(codes.Unauthenticated, "this replica serves only ebb's gateway: send the call to the gateway")
}

func (s *Server) secretUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.grpcSecret(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) secretStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.grpcSecret(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}
