#!/usr/bin/env bash
# Vendors the web dashboard's npm packages (internal/ui) from the npm
# registry: installs exactly what internal/ui/npm/package-lock.json pins
# (npm ci checks each tarball against the lock's sha512 integrity) into a
# temporary directory, copies the dist files the dashboard embeds into
# internal/ui/assets/vendor, and records their sha256 in
# internal/ui/npm/vendored.sha256, which internal/ui's tests compare with
# the embedded files. `go build` needs none of this: the copies are
# committed.
#
#   hack/ui-vendor.sh            vendor again (after changing package.json:
#                                run `npm install --package-lock-only` in
#                                internal/ui/npm first to update the lock)
#   hack/ui-vendor.sh --check    download again and fail if the committed
#                                files differ from what the registry serves
#
# Needs npm (Debian's package is enough) and the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  *) echo "usage: hack/ui-vendor.sh [--check]" >&2; exit 2 ;;
esac
command -v npm >/dev/null || { echo "ui-vendor: npm is not installed (apt-get install -y npm)" >&2; exit 1; }

npmdir=internal/ui/npm
vendor=internal/ui/assets/vendor
sums=$npmdir/vendored.sha256

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$npmdir/package.json" "$npmdir/package-lock.json" "$tmp/"
# npm ci installs the lock as it is, verifying every tarball's integrity,
# and runs no package scripts.
(cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)

# What the dashboard embeds: source in the package, name in assets/vendor.
files=(
  "uplot/dist/uPlot.iife.min.js:uPlot.iife.min.js"
  "uplot/dist/uPlot.min.css:uPlot.min.css"
  "uplot/LICENSE:uPlot.LICENSE"
)
out=$tmp/out
mkdir -p "$out"
for f in "${files[@]}"; do
  cp "$tmp/node_modules/${f%%:*}" "$out/${f##*:}"
done
version=$(node -p 'require(process.argv[1]).version' "$tmp/node_modules/uplot/package.json" 2>/dev/null ||
  sed -n 's/^  "version": "\(.*\)",$/\1/p' "$tmp/node_modules/uplot/package.json")
{
  echo "# uplot@$version, installed by hack/ui-vendor.sh from package-lock.json; sha256 of each file in internal/ui/assets/vendor"
  (cd "$out" && sha256sum -- *)
} > "$tmp/vendored.sha256"

if $check; then
  status=0
  for f in "${files[@]}"; do
    name=${f##*:}
    cmp -s "$out/$name" "$vendor/$name" || { echo "ui-vendor --check: $vendor/$name differs from the registry's (run hack/ui-vendor.sh)" >&2; status=1; }
  done
  cmp -s "$tmp/vendored.sha256" "$sums" || { echo "ui-vendor --check: $sums is stale (run hack/ui-vendor.sh)" >&2; status=1; }
  [[ $status == 0 ]] && echo "ui-vendor --check: internal/ui/assets/vendor matches uplot@$version from the registry" >&2
  exit $status
fi

mkdir -p "$vendor"
for f in "${files[@]}"; do
  cp "$out/${f##*:}" "$vendor/${f##*:}"
done
cp "$tmp/vendored.sha256" "$sums"
echo "ui-vendor: vendored uplot@$version into $vendor" >&2
