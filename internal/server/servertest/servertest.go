// Package servertest talks to an OIP v2 replica server over every protocol
// it speaks, for tests: REST with JSON or binary tensor data each way, and
// gRPC with typed or raw contents. A table of Protocols lets a test run the
// same case through each.
package servertest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
)

// Server is what Start serves: the replica server's REST and gRPC on one
// port (server.Server), and REST alone on more listeners.
type Server interface {
	ServeWithGRPC(ctx context.Context, ln net.Listener, more ...net.Listener) error
}

// Client reaches one served replica.
type Client struct {
	// Base is the REST base URL, http://127.0.0.1:port.
	Base string
	// GRPC is a gRPC client of the same port.
	GRPC oipgrpc.GRPCInferenceServiceClient
}

// Start serves s on a loopback port until the test ends, when it stops s
// and checks that it drained cleanly.
func Start(t testing.TB, s Server) *Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.ServeWithGRPC(ctx, ln) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ServeWithGRPC: %v", err)
		}
	})
	return &Client{Base: "http://" + ln.Addr().String(), GRPC: oipgrpc.NewGRPCInferenceServiceClient(cc)}
}

// Response is a REST infer response with typed outputs.
type Response struct {
	oip.InferResponse
	// Binary is true when the body carried binary tensor data.
	Binary bool
}

// PostREST posts an infer request for inputs to model: JSON, or binary
// tensor data when binary is true; req gives the rest (outputs,
// parameters). A status other than 200 is an error carrying the body.
func (c *Client) PostREST(model string, req oip.InferRequest, inputs []oip.Tensor, binary bool) (Response, error) {
	body, jsonLen, err := oip.RequestBody(req, inputs, binary)
	if err != nil {
		return Response{}, err
	}
	hreq, err := http.NewRequest("POST", c.Base+"/v2/models/"+model+"/infer", bytes.NewReader(body))
	if err != nil {
		return Response{}, err
	}
	if binary {
		hreq.Header.Set(oip.HeaderInferenceHeaderLength, strconv.Itoa(jsonLen))
		hreq.Header.Set("Content-Type", "application/octet-stream")
	} else {
		hreq.Header.Set("Content-Type", "application/json")
	}
	hresp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return Response{}, err
	}
	defer hresp.Body.Close()
	rb, err := io.ReadAll(hresp.Body)
	if err != nil {
		return Response{}, err
	}
	if hresp.StatusCode != http.StatusOK {
		return Response{}, fmt.Errorf("status %d: %s", hresp.StatusCode, rb)
	}
	n := len(rb)
	if h := hresp.Header.Get(oip.HeaderInferenceHeaderLength); h != "" {
		if n, err = strconv.Atoi(h); err != nil {
			return Response{}, fmt.Errorf("%s: %w", oip.HeaderInferenceHeaderLength, err)
		}
		if ct := hresp.Header.Get("Content-Type"); ct != "application/octet-stream" {
			return Response{}, fmt.Errorf("binary response with Content-Type %q", ct)
		}
	}
	resp, err := oip.ParseResponse(rb, n)
	return Response{resp, n < len(rb)}, err
}

// InferGRPC sends inputs to model over gRPC, typed or raw, and returns the
// outputs.
func (c *Client) InferGRPC(model string, inputs []oip.Tensor, outputs []string, raw bool) ([]oip.Tensor, error) {
	req := &oipgrpc.ModelInferRequest{ModelName: model}
	if err := oipgrpc.SetInputs(req, inputs, raw); err != nil {
		return nil, err
	}
	for _, o := range outputs {
		req.Outputs = append(req.Outputs, &oipgrpc.ModelInferRequest_InferRequestedOutputTensor{Name: o})
	}
	resp, err := c.GRPC.ModelInfer(context.Background(), req)
	if err != nil {
		return nil, err
	}
	return oipgrpc.OutputTensors(resp)
}

// Protocol is one way to run an infer request.
type Protocol struct {
	Name string
	// Infer sends inputs to model, asking for outputs (all when empty),
	// and returns the outputs.
	Infer func(c *Client, model string, inputs []oip.Tensor, outputs []string) ([]oip.Tensor, error)
}

func rest(binaryIn, binaryOut bool) func(*Client, string, []oip.Tensor, []string) ([]oip.Tensor, error) {
	return func(c *Client, model string, inputs []oip.Tensor, outputs []string) ([]oip.Tensor, error) {
		req := oip.InferRequest{}
		if binaryOut {
			req.Parameters = map[string]any{oip.ParamBinaryDataOutput: true}
		}
		for _, o := range outputs {
			req.Outputs = append(req.Outputs, oip.RequestOutput{Name: o})
		}
		resp, err := c.PostREST(model, req, inputs, binaryIn)
		if err != nil {
			return nil, err
		}
		if resp.Binary != (binaryOut && len(resp.Outputs) > 0) {
			return nil, fmt.Errorf("response binary = %v, asked %v", resp.Binary, binaryOut)
		}
		return resp.Outputs, nil
	}
}

func grpcProtocol(raw bool) func(*Client, string, []oip.Tensor, []string) ([]oip.Tensor, error) {
	return func(c *Client, model string, inputs []oip.Tensor, outputs []string) ([]oip.Tensor, error) {
		return c.InferGRPC(model, inputs, outputs, raw)
	}
}

// Protocols are the ways a replica server takes an infer request. "gRPC
// typed" sends FP16 and BF16 raw all the same (they have no typed field).
var Protocols = []Protocol{
	{"REST JSON", rest(false, false)},
	{"REST binary in", rest(true, false)},
	{"REST binary out", rest(false, true)},
	{"REST binary both", rest(true, true)},
	{"gRPC typed", grpcProtocol(false)},
	{"gRPC raw", grpcProtocol(true)},
}
