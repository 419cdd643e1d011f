package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/routing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Shadow mirrors of gRPC ModelInfer calls: as REST requests (shadow.go),
// with the same draw, slots, bounds, comparison and tally, over gRPC to the
// replicas' gRPC servers. A mirror keeps the call's request and the
// primary's answer rather than copies: nothing changes a message once it
// is received or answered (the server marshals the answer while the
// mirror reads it, which protobuf allows), and each counts, by its
// encoded size, against maxMirrorBytes.

// startMirror mirrors req, of size bytes encoded, which s.rt, the
// deployment's primary route, answered with resp, unless the shadow's
// mirrors are at MaxConcurrency or a message is too large: those are
// dropped, and counted. The client does not wait for it.
func (g *GRPC) startMirror(req *oipgrpc.ModelInferRequest, size int64, resp *oipgrpc.ModelInferResponse, s served) {
	sh := s.rt.Shadow
	fits := size <= maxMirrorBytes && proto.Size(resp) <= maxMirrorBytes
	base, ok := g.shadows.admitMirror(sh, fits)
	if !ok {
		return
	}
	m := &mirror{
		sh: sh, primary: s.rt, answered: s.try.ep, name: s.rt.Deployment, latency: s.latency,
		wire: &grpcMirror{g: g, req: req, resp: resp},
	}
	go g.shadows.runMirror(base, m)
}

// grpcMirror is a gRPC mirror's wire: the call's request and the primary's
// answer, read only.
type grpcMirror struct {
	g    *GRPC
	req  *oipgrpc.ModelInferRequest
	resp *oipgrpc.ModelInferResponse
}

func (w *grpcMirror) primaryOutputs() ([]oip.Tensor, error) { return oipgrpc.OutputTensors(w.resp) }

// send calls ModelInfer on ep, a replica of rt, over the gateway's
// connection to it. The shadow is asked for no version (it serves its
// own); a replica of the primary is asked as the primary was.
func (w *grpcMirror) send(ctx context.Context, rt *routing.Route, ep *balance.Endpoint, shadow bool) mirrorReply {
	req := w.req
	if shadow && req.GetModelVersion() != "" {
		req = withoutVersion(req)
	}
	var resp *oipgrpc.ModelInferResponse
	err := w.g.send(ctx, rt, ep, func(ctx context.Context, _ *routing.Route, _ *balance.Endpoint, c oipgrpc.GRPCInferenceServiceClient) error {
		var err error
		resp, err = c.ModelInfer(ctx, req)
		return err
	})
	switch {
	case err == nil:
	case ctx.Err() != nil:
		cause := context.Cause(ctx)
		if errors.Is(cause, context.DeadlineExceeded) {
			cause = fmt.Errorf("no answer within %v", w.g.shadows.mirrorTimeout())
		}
		return mirrorReply{err: fmt.Errorf("replica %s: %w", ep.ID, cause)}
	case retryable(err):
		return mirrorReply{err: fmt.Errorf("replica %s: %w", ep.ID, err)}
	default:
		st := status.Convert(err)
		return mirrorReply{failed: fmt.Errorf("replica %s answered %s: %s", ep.ID, st.Code(), clip(st.Message()))}
	}
	out, err := oipgrpc.OutputTensors(resp)
	if err != nil {
		return mirrorReply{failed: fmt.Errorf("replica %s: not an infer response: %s", ep.ID, status.Convert(err).Message())}
	}
	return mirrorReply{outputs: out}
}

// withoutVersion returns req asking for no model version, sharing its
// tensors (read only).
func withoutVersion(req *oipgrpc.ModelInferRequest) *oipgrpc.ModelInferRequest {
	return &oipgrpc.ModelInferRequest{
		ModelName:        req.GetModelName(),
		Id:               req.GetId(),
		Parameters:       req.GetParameters(),
		Inputs:           req.GetInputs(),
		Outputs:          req.GetOutputs(),
		RawInputContents: req.GetRawInputContents(),
	}
}

// samples returns the request and both answers in the OIP v2 REST JSON
// form, as REST mirrors keep them.
func (w *grpcMirror) samples(primary []oip.Tensor, r mirrorReply) (input, primaryOut, shadowOut []byte) {
	in, err := oipgrpc.InputTensors(w.req)
	if err == nil {
		input, _, err = oip.RequestBody(oip.InferRequest{ID: w.req.GetId()}, in, false)
	}
	if err != nil {
		input = []byte("(the request does not encode: " + err.Error() + ")")
	}
	return input, responseJSON(w.resp.GetModelName(), primary), responseJSON(w.resp.GetModelName(), r.outputs)
}

// responseJSON returns outputs as the JSON body of an infer response of
// model.
func responseJSON(model string, outputs []oip.Tensor) []byte {
	b, _, err := oip.AppendResponse(nil, &oip.InferResponse{ModelName: model, Outputs: outputs}, nil)
	if err != nil {
		return []byte("(the answer does not encode: " + err.Error() + ")")
	}
	return b
}
