package server

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultMaxRequestElements bounds the tensor elements of one infer
// request (64Mi: 256 MiB of FP32) when Options.MaxRequestElements is zero.
const DefaultMaxRequestElements = 64 << 20

// CheckMaxBodyBytes reports whether n is a valid --max-body-bytes, the
// limit on one infer request body or gRPC message (Options.MaxRequestBytes,
// the gateway's MaxBodyBytes): positive, and at most the largest gRPC
// message (2 GiB - 1).
func CheckMaxBodyBytes(n int64) error {
	if n <= 0 || n > math.MaxInt32 {
		return fmt.Errorf("--max-body-bytes must be between 1 and %d (2 GiB - 1, the largest gRPC message), not %d", math.MaxInt32, n)
	}
	return nil
}

// Limits a replica answers with 413, 408 or ResourceExhausted, as the
// label of ebb_replica_limited_total.
const (
	limitBodyBytes   = "body_bytes"
	limitBodyTimeout = "body_timeout"
	limitElements    = "elements"
	// A gRPC request message over MaxRequestBytes, refused by gRPC's
	// transport before the server sees it (ResourceExhausted).
	limitGRPCMessageSize = "grpc_message_size"
	// A gRPC call cancelled: its request message not in within BodyTimeout.
	limitGRPCMessageTimeout = "grpc_message_timeout"
)

// Metrics are a replica server's Prometheus metrics, served at /metrics. A
// nil *Metrics records nothing.
type Metrics struct {
	limited *prometheus.CounterVec
	handler http.Handler
}

// NewMetrics creates a replica's metrics in reg, served from gatherer.
func NewMetrics(reg prometheus.Registerer, gatherer prometheus.Gatherer) *Metrics {
	m := &Metrics{
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_replica_limited_total",
			Help: "Infer requests refused by a hard limit: body_bytes (413), body_timeout (408), elements (413), grpc_message_size (a gRPC request message over --max-body-bytes: ResourceExhausted), grpc_message_timeout (a gRPC call cancelled: its request message not in within --body-timeout).",
		}, []string{"limit"}),
		handler: promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}),
	}
	for _, l := range []string{limitBodyBytes, limitBodyTimeout, limitElements, limitGRPCMessageSize, limitGRPCMessageTimeout} {
		m.limited.WithLabelValues(l) // export zeros
	}
	reg.MustRegister(m.limited)
	return m
}

func (m *Metrics) limit(name string) {
	if m != nil {
		m.limited.WithLabelValues(name).Inc()
	}
}

// tooLarge answers a body declared larger than MaxRequestBytes, before a
// byte of it is read.
func (s *Server) tooLarge(n int64) *RequestError {
	s.opts.Metrics.limit(limitBodyBytes)
	return &RequestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes is larger than the limit of %d bytes (--max-body-bytes): send fewer rows per request", n, s.opts.MaxRequestBytes)}
}

// bodyError turns a failure to read the body into a RequestError.
func (s *Server) bodyError(err error) *RequestError {
	var tooBig *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &tooBig):
		return s.bodyTooLarge()
	case errors.As(err, &ne) && ne.Timeout():
		return s.bodyTimedOut()
	}
	return badRequest("reading the request body: %v", err)
}

// bodyTooLarge answers a body that passed MaxRequestBytes as it was read.
func (s *Server) bodyTooLarge() *RequestError {
	s.opts.Metrics.limit(limitBodyBytes)
	return &RequestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than the limit of %d bytes (--max-body-bytes): send fewer rows per request", s.opts.MaxRequestBytes)}
}

// bodyTimedOut answers a body that did not arrive within BodyTimeout.
func (s *Server) bodyTimedOut() *RequestError {
	s.opts.Metrics.limit(limitBodyTimeout)
	d := s.opts.Limits.BodyTimeout
	if d <= 0 {
		d = s.opts.Limits.ReadTimeout // what bounds it then
	}
	return &RequestError{http.StatusRequestTimeout, fmt.Sprintf("request body did not arrive within %v: send it faster, or in smaller requests", d)}
}

// checkElements bounds the elements that shapes declare in one request by
// Options.MaxRequestElements, before anything is decoded or allocated.
func (s *Server) checkElements(total *int64, name string, shape []int64) *RequestError {
	n, err := oip.Elements(shape)
	if err != nil {
		return badRequest("input %q: %v", name, err)
	}
	*total += int64(n)
	if *total > s.opts.MaxRequestElements {
		s.opts.Metrics.limit(limitElements)
		return &RequestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("input %q: shape %s brings the request to %d elements, more than the limit of %d: send fewer rows per request", name, oip.FormatShape(shape), *total, s.opts.MaxRequestElements)}
	}
	return nil
}
