package httpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/serving/core"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// This file answers the OIP v2 gRPC API (oipgrpc.GRPCInferenceService) for
// the server behind the replica by translating each call to its REST API:
// ModelInfer to POST /v2/models/{m}[/versions/{v}]/infer with JSON tensors,
// ModelMetadata and ModelReady to their GETs. Answers come back as gRPC
// messages, outputs in raw_output_contents when the request sent raw
// inputs (as Triton does), and the server's errors keep their message,
// with the status mapped as the gateway maps it the other way (400
// InvalidArgument, 404 NotFound, 413 ResourceExhausted, 503 Unavailable).
// The replica's secret is checked as the REST side checks it.

// maxErrorBytes bounds what is read of an upstream error answer.
const maxErrorBytes = 64 << 10

// newGRPCServer returns the gRPC service as an http.Handler (grpc-go's
// ServeHTTP), served beside REST by handler on HTTP/2 connections.
func (r *Replica) newGRPCServer(base *url.URL, client *http.Client) http.Handler {
	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(int(min(r.opts.MaxRequestBytes, math.MaxInt32))),
		grpc.ChainUnaryInterceptor(r.secretUnary),
	)
	oipgrpc.RegisterGRPCInferenceServiceServer(gs, &grpcService{r: r, base: base, client: client})
	return gs
}

// secretUnary refuses calls without the replica's secret, but the server
// health checks.
func (r *Replica) secretUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	switch info.FullMethod {
	case oipgrpc.GRPCInferenceService_ServerLive_FullMethodName, oipgrpc.GRPCInferenceService_ServerReady_FullMethodName:
		return h(ctx, req)
	}
	got := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(core.SecretHeader); len(v) == 1 {
			got = v[0]
		}
	}
	if r.secretOK(got) {
		return h(ctx, req)
	}
	return nil, status.Error(codes.Unauthenticated, "this replica serves only ebb's gateway: send the call to the gateway")
}

// grpcService translates gRPC calls to the REST API at base.
type grpcService struct {
	oipgrpc.UnimplementedGRPCInferenceServiceServer
	r      *Replica
	base   *url.URL
	client *http.Client
}

func (g *grpcService) ServerLive(context.Context, *oipgrpc.ServerLiveRequest) (*oipgrpc.ServerLiveResponse, error) {
	return &oipgrpc.ServerLiveResponse{Live: true}, nil
}

func (g *grpcService) ServerReady(context.Context, *oipgrpc.ServerReadyRequest) (*oipgrpc.ServerReadyResponse, error) {
	return &oipgrpc.ServerReadyResponse{Ready: g.r.ready.Load()}, nil
}

func (g *grpcService) ServerMetadata(ctx context.Context, _ *oipgrpc.ServerMetadataRequest) (*oipgrpc.ServerMetadataResponse, error) {
	if g.r.openAI() {
		return &oipgrpc.ServerMetadataResponse{Name: "ebb-http", Extensions: []string{}}, nil
	}
	var m oip.ServerMetadata
	if err := g.get(ctx, "/v2", &m); err != nil {
		return nil, err
	}
	return &oipgrpc.ServerMetadataResponse{Name: m.Name, Version: m.Version, Extensions: m.Extensions}, nil
}

func (g *grpcService) ModelReady(ctx context.Context, req *oipgrpc.ModelReadyRequest) (*oipgrpc.ModelReadyResponse, error) {
	path, err := g.modelPath(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, err
	}
	if !g.r.ready.Load() {
		return &oipgrpc.ModelReadyResponse{Ready: false}, nil
	}
	if g.r.openAI() {
		return &oipgrpc.ModelReadyResponse{Ready: true}, nil
	}
	resp, err := g.do(ctx, http.MethodGet, path+"/ready", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBytes))
	switch resp.StatusCode {
	case http.StatusOK:
		return &oipgrpc.ModelReadyResponse{Ready: true}, nil
	case http.StatusNotFound:
		return nil, status.Errorf(codes.NotFound, "the model server behind this replica does not know model %q", g.r.opts.UpstreamModel)
	}
	return &oipgrpc.ModelReadyResponse{Ready: false}, nil
}

func (g *grpcService) ModelMetadata(ctx context.Context, req *oipgrpc.ModelMetadataRequest) (*oipgrpc.ModelMetadataResponse, error) {
	path, err := g.modelPath(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, err
	}
	if err := g.notOpenAI(); err != nil {
		return nil, err
	}
	var m oip.ModelMetadata
	if err := g.get(ctx, path, &m); err != nil {
		return nil, err
	}
	m.Name = g.r.opts.Deployment
	return oipgrpc.MetadataResponse(m), nil
}

func (g *grpcService) ModelInfer(ctx context.Context, req *oipgrpc.ModelInferRequest) (*oipgrpc.ModelInferResponse, error) {
	path, err := g.modelPath(req.GetModelName(), req.GetModelVersion())
	if err != nil {
		return nil, err
	}
	if err := g.notOpenAI(); err != nil {
		return nil, err
	}
	inputs, err := oipgrpc.InputTensors(req)
	if err != nil {
		return nil, err
	}
	// oip's encoder writes every datatype (FP16 and BF16 as numbers, UINT8
	// as numbers rather than base64) and NaN/Inf as the tokens Triton
	// servers read.
	rest := oip.InferRequest{ID: req.GetId(), Parameters: jsonParams(req.GetParameters())}
	for _, o := range req.GetOutputs() {
		rest.Outputs = append(rest.Outputs, oip.RequestOutput{Name: o.GetName(), Parameters: jsonParams(o.GetParameters())})
	}
	b, _, err := oip.RequestBody(rest, inputs, false)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "the inputs cannot be sent to the model server behind this replica as JSON: %v", err)
	}
	resp, err := g.do(ctx, http.MethodPost, path+"/infer", b)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, upstreamError(resp)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxRenameBytes+1))
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading the answer of the model server behind this replica: %v", err)
	}
	if len(raw) > maxRenameBytes {
		return nil, status.Errorf(codes.ResourceExhausted, "the model server behind this replica answered more than %d bytes", maxRenameBytes)
	}
	jsonLen := len(raw)
	if h := resp.Header.Get(binaryHeader); h != "" {
		if jsonLen, err = strconv.Atoi(h); err != nil {
			return nil, status.Errorf(codes.Internal, "the model server behind this replica answered %s %q, not a length", binaryHeader, h)
		}
	}
	out, err := oip.ParseResponse(raw, jsonLen)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "the model server behind this replica answered infer that cannot be read: %v", err)
	}
	tensors := out.Outputs
	ans := &oipgrpc.ModelInferResponse{
		ModelName:    req.GetModelName(),
		ModelVersion: out.ModelVersion,
		Id:           req.GetId(),
		Parameters:   grpcParams(out.Parameters),
	}
	if err := oipgrpc.SetOutputs(ans, tensors, len(req.GetRawInputContents()) > 0); err != nil {
		return nil, status.Errorf(codes.Internal, "encoding the answer of the model server behind this replica: %v", err)
	}
	return ans, nil
}

// modelPath checks that name is the deployment this replica serves and
// returns the REST path of the upstream's model (of version, if any).
func (g *grpcService) modelPath(name, version string) (string, error) {
	if name != g.r.opts.Deployment {
		return "", status.Errorf(codes.NotFound, "model %q not found: this replica serves %q", name, g.r.opts.Deployment)
	}
	p := "/v2/models/" + url.PathEscape(g.r.opts.UpstreamModel)
	if version != "" {
		p += "/versions/" + url.PathEscape(version)
	}
	return p, nil
}

func (g *grpcService) notOpenAI() error {
	if g.r.openAI() {
		return status.Errorf(codes.Unimplemented, "deployment %q serves the OpenAI API, not the Open Inference Protocol: send requests to the gateway's /openai/v1/ over HTTP", g.r.opts.Deployment)
	}
	return nil
}

// do sends one request to the server behind. A server that does not
// answer is Unavailable.
func (g *grpcService) do(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	u := *g.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawPath = ""
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%s %s: %v", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if ids := md.Get("x-request-id"); len(ids) > 0 {
			req.Header.Set("X-Request-Id", ids[0])
		}
	}
	resp, err := g.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, status.Errorf(codes.Unavailable, "the model server behind this replica did not answer %s %s: %v", method, path, err)
	}
	return resp, nil
}

// get GETs path from the server behind and decodes its JSON answer into v.
func (g *grpcService) get(ctx context.Context, path string, v any) error {
	resp, err := g.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return upstreamError(resp)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxRenameBytes)).Decode(v); err != nil {
		return status.Errorf(codes.Internal, "the model server behind this replica answered GET %s with JSON that cannot be read: %v", path, err)
	}
	return nil
}

// upstreamError turns a failed REST answer into a status with the
// server's own message.
func upstreamError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	msg := strings.TrimSpace(string(b))
	var e oip.ErrorResponse
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	code := codes.Internal
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		code = codes.InvalidArgument
	case http.StatusNotFound:
		code = codes.NotFound
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		code = codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		code = codes.Unavailable
	case http.StatusGatewayTimeout, http.StatusRequestTimeout:
		code = codes.DeadlineExceeded
	case http.StatusNotImplemented:
		code = codes.Unimplemented
	}
	return status.Errorf(code, "%s (status %d from the model server behind this replica)", msg, resp.StatusCode)
}

// jsonParams converts gRPC parameters to their JSON form.
func jsonParams(ps map[string]*oipgrpc.InferParameter) map[string]any {
	if len(ps) == 0 {
		return nil
	}
	out := make(map[string]any, len(ps))
	for k, p := range ps {
		switch c := p.GetParameterChoice().(type) {
		case *oipgrpc.InferParameter_BoolParam:
			out[k] = c.BoolParam
		case *oipgrpc.InferParameter_Int64Param:
			out[k] = c.Int64Param
		case *oipgrpc.InferParameter_StringParam:
			out[k] = c.StringParam
		}
	}
	return out
}

// grpcParams converts JSON parameters to gRPC ones; a number that is not
// an integer travels as its decimal string, the only form left to it.
func grpcParams(ps map[string]any) map[string]*oipgrpc.InferParameter {
	if len(ps) == 0 {
		return nil
	}
	out := make(map[string]*oipgrpc.InferParameter, len(ps))
	for k, v := range ps {
		p := &oipgrpc.InferParameter{}
		switch v := v.(type) {
		case bool:
			p.ParameterChoice = &oipgrpc.InferParameter_BoolParam{BoolParam: v}
		case string:
			p.ParameterChoice = &oipgrpc.InferParameter_StringParam{StringParam: v}
		case float64:
			if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
				p.ParameterChoice = &oipgrpc.InferParameter_Int64Param{Int64Param: int64(v)}
			} else {
				p.ParameterChoice = &oipgrpc.InferParameter_StringParam{StringParam: fmt.Sprint(v)}
			}
		default:
			continue // objects and arrays have no gRPC form
		}
		out[k] = p
	}
	return out
}
