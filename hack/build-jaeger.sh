#!/usr/bin/env bash
# build-jaeger.sh builds, from source through the Go module proxy, the Jaeger
# v2 binary (hack/tools/jaeger pins the version) that internal/telemetry's
# OTLP test sends real spans to, and prints the binary's path. A build that
# is already in the cache is reused.
#
#   EBB_JAEGER=$(hack/build-jaeger.sh)
#
# Environment:
#   EBB_TOOLS_BIN  cache directory (default ${XDG_CACHE_HOME:-$HOME/.cache}/ebb-tools/bin)
# Cold, on 2 cores, this takes several minutes; warm, nothing.
# Everything but the path goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH=/usr/local/go/bin:$PATH

mod=$here/tools/jaeger
version=$(cd "$mod" && go list -m -f '{{.Version}}' github.com/jaegertracing/jaeger)
bin=${EBB_TOOLS_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/ebb-tools/bin}
stamp=$bin/.jaeger.$version

if [[ -x $bin/jaeger && -f $stamp ]]; then
  echo "$bin/jaeger"
  exit 0
fi

mkdir -p "$bin"
tmp=$(mktemp -d "$bin/.jaeger-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build-jaeger: building jaeger $version (once; cached in $bin)" >&2
start=$SECONDS
(cd "$mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags='-s -w' \
  -o "$tmp/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger) >&2
# Rename into place so a build cut short never leaves a half-written binary
# that the check above would reuse.
mv -f "$tmp/jaeger" "$bin/jaeger"
rm -f "$bin"/.jaeger.*
touch "$stamp"
echo "build-jaeger: built in $((SECONDS - start))s" >&2
echo "$bin/jaeger"
