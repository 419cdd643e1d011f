#!/usr/bin/env bash
# Installs the ONNX Runtime shared library that ebb's onnx engine loads, the
# en_US.UTF-8 locale that ONNX Runtime's string operators need, and (as root,
# when missing) gcc, which cgo needs to build the engine.
#
# Usage: hack/install-onnxruntime.sh [DIR]
#
# The library comes from the npm package onnxruntime-node@1.24.1, which carries
# a prebuilt libonnxruntime.so.1 (a plain `npm install` fails: its postinstall
# step downloads more). The only network access is to the npm registry (plus
# Debian's mirror when the locales package is missing). The file's sha256 is
# checked against the value pinned below.
#
# It installs DIR/libonnxruntime.so.1, where DIR defaults to the first of the
# places ebb looks by itself (see internal/engine/onnx):
#   /usr/local/lib/ebb/onnxruntime-1.24.1            when run as root
#   ${XDG_CACHE_HOME:-~/.cache}/ebb/onnxruntime-1.24.1  otherwise
# Elsewhere, tell ebb with --onnxruntime-lib or EBB_ONNXRUNTIME_LIB.
#
# Idempotent: a library already in place with the pinned hash is kept.
set -euo pipefail

readonly ORT_VERSION=1.24.1
readonly NPM_PACKAGE="onnxruntime-node@${ORT_VERSION}"
readonly TARBALL_URL="https://registry.npmjs.org/onnxruntime-node/-/onnxruntime-node-${ORT_VERSION}.tgz"

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64)
    arch=x64
    sha256=53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4 ;;
  Linux/aarch64 | Linux/arm64)
    arch=arm64
    sha256=7954e8bdedb497f830c6a679e818d98399b7f4d81ade1126c3e0be74d28111ab ;;
  *)
    echo "install-onnxruntime: $(uname -s)/$(uname -m) is not supported: this script installs ONNX Runtime for Linux x86_64 or arm64 only" >&2
    exit 1 ;;
esac
readonly member="package/bin/napi-v6/linux/${arch}/libonnxruntime.so.1"

log() { echo "install-onnxruntime: $*" >&2; }

# ensure_locale makes en_US.UTF-8 available (Debian: package locales).
ensure_locale() {
  if locale -a 2>/dev/null | grep -qiE '^en_US\.utf-?8$'; then
    return 0
  fi
  if [[ $(id -u) -ne 0 ]]; then
    log "WARNING: locale en_US.UTF-8 is missing and this is not root; ONNX Runtime's string operators need it. Install it with:"
    log "  sudo apt-get install -y locales && sudo sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen && sudo locale-gen"
    return 0
  fi
  if ! command -v locale-gen >/dev/null 2>&1; then
    log "installing the Debian package locales"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends locales >/dev/null 2>&1 ||
      { apt-get update >/dev/null && apt-get install -y --no-install-recommends locales >/dev/null; }
  fi
  log "generating locale en_US.UTF-8"
  touch /etc/locale.gen
  if grep -qE '^# *en_US\.UTF-8 UTF-8' /etc/locale.gen; then
    sed -i 's/^# *en_US\.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen
  elif ! grep -qE '^en_US\.UTF-8 UTF-8' /etc/locale.gen; then
    echo 'en_US.UTF-8 UTF-8' >>/etc/locale.gen
  fi
  locale-gen >/dev/null
  locale -a | grep -qiE '^en_US\.utf-?8$' || { log "locale-gen did not produce en_US.UTF-8"; exit 1; }
}

# ensure_cc makes sure cgo has a C compiler: without one, Go builds ebb with
# CGO_ENABLED=0 and the onnx engine reports that it is unavailable.
ensure_cc() {
  if command -v "${CC:-gcc}" >/dev/null 2>&1 || command -v cc >/dev/null 2>&1; then
    return 0
  fi
  if [[ $(id -u) -ne 0 ]]; then
    log "WARNING: no C compiler found; ebb's onnx engine needs cgo. Install one with: sudo apt-get install -y gcc"
    return 0
  fi
  log "installing gcc (cgo builds the onnx engine)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends gcc libc6-dev >/dev/null 2>&1 ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends gcc libc6-dev >/dev/null; }
}

# fetch_tarball writes the npm package's tarball into directory $1 and prints
# its path.
fetch_tarball() {
  local dir=$1
  if command -v npm >/dev/null 2>&1; then
    log "fetching ${NPM_PACKAGE} with npm pack (about 85 MB)"
    (cd "$dir" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
  elif command -v curl >/dev/null 2>&1; then
    log "npm not found; fetching ${TARBALL_URL} with curl (about 85 MB)"
    curl -fsSL -o "$dir/onnxruntime-node-${ORT_VERSION}.tgz" "$TARBALL_URL"
  elif command -v wget >/dev/null 2>&1; then
    log "npm not found; fetching ${TARBALL_URL} with wget (about 85 MB)"
    wget -q -O "$dir/onnxruntime-node-${ORT_VERSION}.tgz" "$TARBALL_URL"
  else
    log "need npm, curl or wget to fetch ${NPM_PACKAGE}: apt-get install -y npm (or curl)"
    exit 1
  fi
  local tgz="$dir/onnxruntime-node-${ORT_VERSION}.tgz"
  [[ -f $tgz ]] || { log "the download did not produce $tgz"; exit 1; }
  echo "$tgz"
}

tmp=""

hash_ok() { [[ -f $1 ]] && [[ $(sha256sum "$1" | cut -d' ' -f1) == "$sha256" ]]; }

main() {
  local dir=${1:-}
  if [[ -z $dir ]]; then
    if [[ $(id -u) -eq 0 ]]; then
      dir=/usr/local/lib/ebb/onnxruntime-${ORT_VERSION}
    else
      dir=${XDG_CACHE_HOME:-$HOME/.cache}/ebb/onnxruntime-${ORT_VERSION}
    fi
  fi
  local lib="$dir/libonnxruntime.so.1"

  ensure_locale
  ensure_cc

  if hash_ok "$lib"; then
    log "ONNX Runtime ${ORT_VERSION} already installed at $lib"
    echo "$lib"
    return 0
  fi

  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  local tgz
  tgz=$(fetch_tarball "$tmp")
  tar -xzf "$tgz" -C "$tmp" "$member" || { log "$member is not in $(basename "$tgz")"; exit 1; }
  local got
  got=$(sha256sum "$tmp/$member" | cut -d' ' -f1)
  if [[ $got != "$sha256" ]]; then
    log "sha256 mismatch for $member: got $got, want $sha256; not installing"
    exit 1
  fi
  mkdir -p "$dir"
  install -m 0644 "$tmp/$member" "$lib.tmp"
  mv -f "$lib.tmp" "$lib"
  log "installed ONNX Runtime ${ORT_VERSION} at $lib"
  echo "$lib"
}

main "$@"
