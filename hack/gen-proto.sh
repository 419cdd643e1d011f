#!/usr/bin/env bash
# Regenerates the Go code of the OIP v2 gRPC API (internal/oipgrpc) from
# internal/oipgrpc/grpc_predict_v2.proto. The generated files are committed;
# CI does not run this. Run it from anywhere after editing the .proto:
#
#   hack/gen-proto.sh
#
# It installs what it needs: protoc from Debian's protobuf-compiler (when
# missing), protoc-gen-go at the google.golang.org/protobuf version in
# go.mod, and protoc-gen-go-grpc at PROTOC_GEN_GO_GRPC_VERSION.
set -euo pipefail

PROTOC_GEN_GO_GRPC_VERSION=${PROTOC_GEN_GO_GRPC_VERSION:-v1.6.2}

cd "$(dirname "$0")/.."

if ! command -v protoc >/dev/null; then
	echo "gen-proto: installing protoc (Debian protobuf-compiler)" >&2
	apt-get update -qq
	apt-get install -y -qq protobuf-compiler >/dev/null
fi

protobuf_version=$(go list -m -f '{{.Version}}' google.golang.org/protobuf)
gobin=$(go env GOPATH)/bin
GOFLAGS= go install "google.golang.org/protobuf/cmd/protoc-gen-go@${protobuf_version}"
GOFLAGS= go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"

PATH="$gobin:$PATH" protoc \
	--proto_path=internal/oipgrpc \
	--go_out=internal/oipgrpc --go_opt=paths=source_relative \
	--go-grpc_out=internal/oipgrpc --go-grpc_opt=paths=source_relative \
	grpc_predict_v2.proto

echo "gen-proto: wrote internal/oipgrpc/grpc_predict_v2.pb.go and grpc_predict_v2_grpc.pb.go" >&2
