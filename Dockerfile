# syntax=docker/dockerfile:1
#
# The ebb image: ebb-cluster, which the Helm chart's pods run as
# `ebb-cluster operator` and `ebb-cluster gateway` (cmd/ebb-cluster); ebb,
# the CLI and entrypoint (`ebb operator` and `ebb gateway` exec ebb-cluster);
# ebb-replica, the lean binary replica pods run (cmd/ebb-replica); and
# ebb-onnx, the replica binary of engine onnx (cmd/ebb-onnx), with ONNX
# Runtime.
#
#   docker build -t ebb .                         # distroless, non-root
#   docker build --target python -t ebb:python .  # plus Debian's Python,
#                                                 # scikit-learn and XGBoost
#
# The binaries are /usr/local/bin/ebb, ebb-cluster, ebb-replica and
# ebb-onnx, on PATH: the chart's pods run the command `ebb-cluster` and
# replica pods `ebb-replica` by name (internal/replica/kube), which also works
# in images built FROM this one. ebb-cluster has cgo (the operator loads
# pushed onnx models to check them), and so has ebb-onnx; ebb and ebb-replica
# are built without (see cmd/ebb-replica), so an onnx replica execs the
# ebb-onnx beside it in its place, and a replica reads an s3:// model with
# `ebb fetch-artifact` (the ebb beside it), so that no replica keeps an S3
# client resident: an image for replica pods keeps all four. The default image
# has no shell and no package manager; a deployment whose engine is python
# sets spec.template.image to the python variant (or to an image built FROM
# it with the packages its model needs).

ARG GO_VERSION=1.26

# ---- build: ebb-cluster and ebb-onnx with cgo (the onnx engine), ebb and
# ebb-replica without, and ONNX Runtime's library ----
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src

# ONNX Runtime's shared library (hash-pinned, from npm) into the first place
# ebb looks, /usr/local/lib/ebb/onnxruntime-<version>/libonnxruntime.so.1
# (internal/engine/onnx.DefaultLibraryPaths), and the en_US.UTF-8 locale its
# string operators need. Run as root, the script installs both system-wide.
COPY hack/install-onnxruntime.sh hack/
RUN hack/install-onnxruntime.sh

COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -tags grpcnotrace -ldflags='-s -w' -o /out/ebb ./cmd/ebb
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -tags grpcnotrace -ldflags='-s -w' -o /out/ebb-cluster ./cmd/ebb-cluster
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -tags grpcnotrace -ldflags='-s -w' -o /out/ebb-replica ./cmd/ebb-replica
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -tags grpcnotrace -ldflags='-s -w' -o /out/ebb-onnx ./cmd/ebb-onnx

# ---- python: the same binaries on Debian with Python for engine python ----
FROM debian:bookworm-slim AS python
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-numpy python3-sklearn python3-joblib python3-xgboost \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --home-dir /home/nonroot --create-home --shell /usr/sbin/nologin nonroot
COPY --from=build /usr/local/lib/ebb /usr/local/lib/ebb
COPY --from=build /usr/lib/locale/locale-archive /usr/lib/locale/locale-archive
COPY --from=build /out/ebb /usr/local/bin/ebb
COPY --from=build /out/ebb-cluster /usr/local/bin/ebb-cluster
COPY --from=build /out/ebb-replica /usr/local/bin/ebb-replica
COPY --from=build /out/ebb-onnx /usr/local/bin/ebb-onnx
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/ebb"]

# ---- runtime (default): distroless glibc + libstdc++, user nonroot (65532) ----
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /usr/local/lib/ebb /usr/local/lib/ebb
COPY --from=build /usr/lib/locale/locale-archive /usr/lib/locale/locale-archive
COPY --from=build /out/ebb /usr/local/bin/ebb
COPY --from=build /out/ebb-cluster /usr/local/bin/ebb-cluster
COPY --from=build /out/ebb-replica /usr/local/bin/ebb-replica
COPY --from=build /out/ebb-onnx /usr/local/bin/ebb-onnx
USER nonroot:nonroot
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/ebb"]
