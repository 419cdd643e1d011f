.PHONY: build test e2e bench faults

# bin/ebb, and beside it bin/ebb-cluster, the cluster home's operator and
# gateway (`ebb operator` and `ebb gateway` exec it; apart from ebb so that
# ebb up links no Kubernetes client), bin/ebb-replica: the lean binary
# `ebb up` starts its replicas with (and replica pods run), and bin/ebb-onnx,
# the replica binary of engine onnx. ebb and ebb-replica are built without
# cgo, static, with no libc mapped, to keep an idle ebb up and replica small
# (see cmd/ebb-replica); ONNX Runtime is a C library, so ebb-onnx (which an
# onnx replica of ebb-replica execs, and which ebb up's registry asks to
# check a pushed onnx model) and ebb-cluster (the operator checks pushed
# models itself) have cgo. Without ebb-replica, ebb runs replicas as
# `ebb replica`, which keeps all of ebb resident. All are built without
# gRPC's tracing (-tags grpcnotrace): its html/template would make the
# linker keep every exported method of every type, a fifth to a quarter of
# each binary (internal/ebbtest TestLeanBinaries).
build:
	CGO_ENABLED=0 go build -tags grpcnotrace -o bin/ ./cmd/ebb
	CGO_ENABLED=1 go build -tags grpcnotrace -o bin/ ./cmd/ebb-cluster
	CGO_ENABLED=0 go build -tags grpcnotrace -o bin/ ./cmd/ebb-replica
	CGO_ENABLED=1 go build -tags grpcnotrace -o bin/ ./cmd/ebb-onnx

# Unit tests of every package.
test:
	go test ./...

# The end-to-end scenario against both homes: ebb up, and the Helm chart's
# operator and gateways as pods on the test cluster (PostgreSQL, S3), plus
# the leader killed under load. go test ./... runs them too.
e2e:
	go test ./test/e2e -run 'TestHome|TestLeaderKilled' -count=1 -v

# Benchmarks against peers (nginx, HAProxy, Flask, FastAPI); writes
# bench/RESULTS.md and bench/results.json. QUICK=1 for a short run.
bench:
	go run ./bench/cmd/ebbbench $(if $(QUICK),-quick) $(BENCHFLAGS)

# The fault suite: replicas and ebb killed under load, hostile clients,
# oversized bodies and shapes, replica abuse, a stalled store, S3 down during
# a cold start, the test cluster's apiserver restarted under load; writes
# bench/FAULTS.md and bench/faults.json. QUICK=1 for a short run.
faults:
	go run ./bench/cmd/ebbfaults $(if $(QUICK),-quick) $(FAULTSFLAGS)
