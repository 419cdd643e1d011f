// Package telemetry sets up OpenTelemetry tracing for ebb's processes and
// gives every part of ebb the same span names, attributes and W3C trace
// context handling.
//
// Setup builds a TracerProvider from a Config: with no OTLP endpoint it is
// a no-op provider whose spans cost a few nanoseconds and no allocation
// (BenchmarkSpan), so tracing left off costs nothing on the request path;
// an incoming traceparent still passes through to the replicas.
// With an endpoint, spans are sampled parent-based at Config.SampleRatio
// (a request that arrives with a sampled traceparent is traced whatever
// the ratio; a root is traced with that probability) and exported over
// OTLP, gRPC or HTTP/protobuf, by a batch processor whose queue is bounded
// (2048 spans; beyond that spans are dropped, never queued without limit).
// Plaintext is used only for a loopback endpoint; any other host must be
// reached over TLS (an https:// endpoint, or a CA file). Setup also makes
// its provider and the W3C trace-context propagator otel's globals, which
// the gRPC instrumentation (GRPCServerOptions, GRPCDialOptions) reads.
//
// ExtractFastHTTP and InjectFastHTTP carry W3C trace context (traceparent,
// tracestate) through fasthttp headers, where ebb's REST gateway and
// replicas serve; both do no allocation when there is no trace context to
// carry. NewLogHandler adds trace_id and span_id to the log records of a
// context with a span. spans.go names the spans of a request's life and of
// a cold start, and RecordPhases turns cold-start phase times, learnt
// after the fact, into spans.
package telemetry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"google.golang.org/grpc/credentials"
)

// Protocols of Config.Protocol.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http"
)

// Config says where and how much to trace. The zero value traces nothing.
type Config struct {
	// Endpoint is the OTLP receiver: host:port, or a URL
	// (http://host:port, https://host:port[/base]). Empty: no tracing,
	// unless $OTEL_EXPORTER_OTLP_ENDPOINT names one. The port defaults to
	// 4317 for gRPC and 4318 for HTTP.
	Endpoint string
	// Protocol is ProtocolGRPC (the default, or as
	// $OTEL_EXPORTER_OTLP_PROTOCOL says) or ProtocolHTTP.
	Protocol string
	// CAFile is a PEM bundle that verifies the receiver's certificate;
	// setting it means TLS. Without it an https:// endpoint or a
	// non-loopback host uses TLS with the system's roots.
	CAFile string
	// SampleRatio is the share of root requests traced, in [0, 1]; a
	// request's sampled parent always wins, so 0 traces only requests
	// that arrive sampled. AddFlags makes 1 the default.
	SampleRatio float64
	// ServiceName is the resource's service.name, e.g. "ebb-gateway";
	// $OTEL_SERVICE_NAME overrides it.
	ServiceName string
	// ResourceAttributes are added to the resource;
	// $OTEL_RESOURCE_ATTRIBUTES adds to and overrides them.
	ResourceAttributes map[string]string
}

// AddFlags registers --otlp-endpoint, --otlp-protocol, --otlp-ca-file and
// --trace-sample-ratio on fs, bound to c.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	if c.SampleRatio == 0 {
		c.SampleRatio = 1
	}
	fs.StringVar(&c.Endpoint, "otlp-endpoint", c.Endpoint, "OTLP receiver for traces: host:port or http(s)://host:port (default $OTEL_EXPORTER_OTLP_ENDPOINT; empty: no tracing); plaintext only to a loopback address")
	fs.StringVar(&c.Protocol, "otlp-protocol", c.Protocol, "OTLP protocol: grpc or http (default $OTEL_EXPORTER_OTLP_PROTOCOL, else grpc)")
	fs.StringVar(&c.CAFile, "otlp-ca-file", c.CAFile, "PEM CA bundle that verifies the OTLP receiver (implies TLS)")
	fs.Float64Var(&c.SampleRatio, "trace-sample-ratio", c.SampleRatio, "share of requests traced when no sampled parent decides, in [0, 1]")
}

// target is a resolved endpoint.
type target struct {
	protocol string
	hostPort string
	path     string // HTTP only: the URL path of the traces endpoint
	tls      *tls.Config
}

// resolve applies the environment and defaults and checks c.
func (c Config) resolve() (*target, error) {
	ep := c.Endpoint
	if ep == "" {
		ep = os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if ep == "" {
		return nil, nil
	}
	proto := c.Protocol
	if proto == "" {
		switch p := os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"); p {
		case "http/protobuf", "http":
			proto = ProtocolHTTP
		default:
			proto = ProtocolGRPC
		}
	}
	if proto != ProtocolGRPC && proto != ProtocolHTTP {
		return nil, fmt.Errorf("OTLP protocol %q: use %s or %s", proto, ProtocolGRPC, ProtocolHTTP)
	}
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		return nil, fmt.Errorf("trace sample ratio %v is not in [0, 1]", c.SampleRatio)
	}
	t := &target{protocol: proto}
	scheme := ""
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("OTLP endpoint %q: want host:port or http(s)://host:port", ep)
		}
		scheme, t.hostPort, t.path = u.Scheme, u.Host, strings.TrimSuffix(u.Path, "/")
		if proto == ProtocolGRPC && t.path != "" {
			return nil, fmt.Errorf("OTLP endpoint %q: a gRPC endpoint has no path", ep)
		}
	} else {
		t.hostPort = ep
	}
	host, port, err := net.SplitHostPort(t.hostPort)
	if err != nil {
		host, port = t.hostPort, map[string]string{ProtocolGRPC: "4317", ProtocolHTTP: "4318"}[proto]
		t.hostPort = net.JoinHostPort(host, port)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil || host == "" {
		return nil, fmt.Errorf("OTLP endpoint %q: bad host or port", ep)
	}
	t.path += "/v1/traces"
	useTLS := scheme == "https" || c.CAFile != "" || !isLoopback(host)
	if scheme == "http" && useTLS {
		return nil, fmt.Errorf("OTLP endpoint %q: plaintext is only allowed to a loopback address; use https:// (and --otlp-ca-file if the receiver's certificate is not in the system's roots)", ep)
	}
	if useTLS {
		t.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("OTLP CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("OTLP CA file %s holds no PEM certificate", c.CAFile)
			}
			t.tls.RootCAs = pool
		}
	}
	return t, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Setup returns the tracer provider c asks for and the function that
// flushes and stops it (call it, with a deadline, when the process ends),
// and makes them otel's global provider and propagator. With no endpoint
// the provider is a no-op and shutdown does nothing. Setup makes no
// connection: the exporter connects when it first exports.
func Setup(ctx context.Context, c Config) (trace.TracerProvider, func(context.Context) error, error) {
	t, err := c.resolve()
	if err != nil {
		return nil, nil, err
	}
	otel.SetTextMapPropagator(propagation.TraceContext{})
	if t == nil {
		tp := offProvider{}
		otel.SetTracerProvider(tp)
		return tp, func(context.Context) error { return nil }, nil
	}
	var exp sdktrace.SpanExporter
	switch t.protocol {
	case ProtocolGRPC:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(t.hostPort)}
		if t.tls == nil {
			opts = append(opts, otlptracegrpc.WithInsecure())
		} else {
			opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(t.tls)))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(t.hostPort), otlptracehttp.WithURLPath(t.path)}
		if t.tls == nil {
			opts = append(opts, otlptracehttp.WithInsecure())
		} else {
			opts = append(opts, otlptracehttp.WithTLSClientConfig(t.tls))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("OTLP exporter: %w", err)
	}
	res, err := c.resource(ctx)
	if err != nil {
		return nil, nil, errors.Join(err, exp.Shutdown(ctx))
	}
	ratio := c.SampleRatio
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	)
	otel.SetTracerProvider(tp)
	return tp, tp.Shutdown, nil
}

// offProvider is the provider of a process that does not trace. Like
// otel's no-op provider, its spans are the context's span (a non-recording
// one that carries an incoming trace context on, or an invalid one), so
// trace context still passes through; unlike it, Start returns ctx itself
// instead of allocating a new context.
type offProvider struct{ embedded.TracerProvider }

func (offProvider) Tracer(string, ...trace.TracerOption) trace.Tracer { return offTracer{} }

type offTracer struct{ embedded.Tracer }

func (offTracer) Start(ctx context.Context, _ string, _ ...trace.SpanStartOption) (context.Context, trace.Span) {
	return ctx, trace.SpanFromContext(ctx)
}

func (c Config) resource(ctx context.Context) (*resource.Resource, error) {
	attrs := make([]attribute.KeyValue, 0, len(c.ResourceAttributes)+1)
	for k, v := range c.ResourceAttributes {
		attrs = append(attrs, attribute.String(k, v))
	}
	if c.ServiceName != "" {
		attrs = append(attrs, attribute.String("service.name", c.ServiceName))
	}
	return resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attrs...),
		resource.WithFromEnv(),
	)
}
