#!/usr/bin/env bash
# Builds the versitygw S3 server (a real S3-compatible server, used by the
# artifact store's s3:// tests) with `go install` into a cache directory,
# reusing a build that is already there, and prints the binary's path.
#
#   EBB_VERSITYGW=$(hack/install-versitygw.sh)
#
# Environment:
#   VERSITYGW_VERSION  module version to build (default v1.8.0)
#   EBB_TOOLS_DIR      cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/ebb/tools)
# Everything but the path goes to stderr.
set -euo pipefail

module=github.com/versity/versitygw
version=${VERSITYGW_VERSION:-v1.8.0}
tools=${EBB_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ebb/tools}
bindir="$tools/versitygw-$version"
bin="$bindir/versitygw"

if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi

export PATH=/usr/local/go/bin:$PATH
# Ask the module proxy first so a wrong version fails with a clear message
# rather than deep inside go install.
if ! go list -m "$module@$version" >/dev/null 2>&1; then
  echo "install-versitygw: $module@$version is not known to the Go module proxy;" >&2
  echo "  known versions: $(go list -m -versions "$module" 2>/dev/null | cut -d' ' -f2- || echo '(lookup failed)')" >&2
  echo "  set VERSITYGW_VERSION to one of them." >&2
  exit 1
fi

mkdir -p "$bindir"
tmp=$(mktemp -d "$tools/.versitygw-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "install-versitygw: building $module/cmd/versitygw@$version (once; cached in $bindir)" >&2
GOBIN="$tmp" GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install "$module/cmd/versitygw@$version" >&2
# Rename into place so a build cut short never leaves a half-written binary
# that the check above would reuse.
mv -f "$tmp/versitygw" "$bin"
echo "$bin"
