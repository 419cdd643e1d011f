package telemetry

import (
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// GRPCServerOptions trace a gRPC server's calls with otelgrpc: each call
// becomes a server span, the child of the caller's span when the call's
// metadata carries W3C trace context. A nil tp means otel's global one.
func GRPCServerOptions(tp trace.TracerProvider) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(grpcOptions(tp)...))}
}

// GRPCDialOptions trace a gRPC client's calls with otelgrpc: each call
// becomes a client span and carries W3C trace context in its metadata. A
// nil tp means otel's global one.
func GRPCDialOptions(tp trace.TracerProvider) []grpc.DialOption {
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(grpcOptions(tp)...))}
}

func grpcOptions(tp trace.TracerProvider) []otelgrpc.Option {
	opts := []otelgrpc.Option{otelgrpc.WithPropagators(propagation.TraceContext{})}
	if tp != nil {
		opts = append(opts, otelgrpc.WithTracerProvider(tp))
	}
	return opts
}
