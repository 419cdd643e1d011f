package server

import (
	"context"
	"net/http"

	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/pool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// poolGRPC is the GRPCInferenceService of a pool's replica: the server's
// calls answered for the pool, each model's by that model's grpcService.
// A call for a model still loading waits for the load, as REST does.
type poolGRPC struct {
	oipgrpc.UnimplementedGRPCInferenceServiceServer
	s *Server
}

func (g *poolGRPC) ServerLive(context.Context, *oipgrpc.ServerLiveRequest) (*oipgrpc.ServerLiveResponse, error) {
	return &oipgrpc.ServerLiveResponse{Live: true}, nil
}

func (g *poolGRPC) ServerReady(context.Context, *oipgrpc.ServerReadyRequest) (*oipgrpc.ServerReadyResponse, error) {
	return &oipgrpc.ServerReadyResponse{Ready: g.s.Ready()}, nil
}

func (g *poolGRPC) ServerMetadata(context.Context, *oipgrpc.ServerMetadataRequest) (*oipgrpc.ServerMetadataResponse, error) {
	return &oipgrpc.ServerMetadataResponse{Name: "ebb", Version: g.s.opts.Version, Extensions: poolExtensions()}, nil
}

// ModelReady never waits for a load: a model loading is not ready.
func (g *poolGRPC) ModelReady(_ context.Context, req *oipgrpc.ModelReadyRequest) (*oipgrpc.ModelReadyResponse, error) {
	p := g.s.pool
	p.mu.RLock()
	e := p.models[req.GetName()]
	ready := e != nil && e.state == pool.Ready
	p.mu.RUnlock()
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "model %q is not loaded on this replica", req.GetName())
	}
	if !ready {
		return &oipgrpc.ModelReadyResponse{Ready: false}, nil
	}
	if err := e.rpc.checkModel(req.GetName(), req.GetVersion()); err != nil {
		return nil, err
	}
	return &oipgrpc.ModelReadyResponse{Ready: g.s.Ready()}, nil
}

func (g *poolGRPC) ModelMetadata(ctx context.Context, req *oipgrpc.ModelMetadataRequest) (*oipgrpc.ModelMetadataResponse, error) {
	e, err := g.get(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	defer g.s.pool.release(e)
	return e.rpc.ModelMetadata(ctx, req)
}

func (g *poolGRPC) ModelInfer(ctx context.Context, req *oipgrpc.ModelInferRequest) (*oipgrpc.ModelInferResponse, error) {
	e, err := g.get(ctx, req.GetModelName())
	if err != nil {
		return nil, err
	}
	defer g.s.pool.release(e)
	return e.rpc.ModelInfer(ctx, req)
}

// get is modelPool.get with its errors as gRPC statuses.
func (g *poolGRPC) get(ctx context.Context, name string) (*hostedModel, error) {
	e, rerr := g.s.pool.get(ctx, name)
	if rerr == nil {
		return e, nil
	}
	code := codes.Unavailable
	if rerr.Status == http.StatusNotFound {
		code = codes.NotFound
	}
	return nil, status.Error(code, rerr.Msg)
}
