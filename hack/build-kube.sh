#!/usr/bin/env bash
# build-kube.sh builds, from source through the Go module proxy, the real
# Kubernetes control plane that ebb's operator tests run against:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (hack/kube), etcd
# (hack/etcd), kwok (fake nodes), helm and controller-gen. Binaries go to a cache directory
# that is reused when present; the script prints that directory.
#
#   hack/build-kube.sh            # build what is missing
#   EBB_KUBE_CACHE=/some/dir hack/build-kube.sh
#
# Cold, on 2 cores, this takes about 15 minutes; warm, a second.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH=/usr/local/go/bin:$PATH

KUBE_VERSION=v1.34.4
ETCD_VERSION=v3.5.35
KWOK_VERSION=v0.7.0
HELM_VERSION=v3.19.0
CONTROLLER_GEN_VERSION=v0.19.0
cache=${EBB_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ebb-kube}
bin=$cache/bin
mkdir -p "$bin"

build() { # name version dir pkg
  local name=$1 version=$2 dir=$3 pkg=$4
  local stamp=$bin/.$name.$version
  if [[ -x $bin/$name && -f $stamp ]]; then return; fi
  echo "building $name $version ..." >&2
  (cd "$dir" && GOFLAGS=-mod=mod go build -trimpath -ldflags='-s -w' -o "$bin/$name" "$pkg")
  touch "$stamp"
}

install_tool() { # name version pkg
  local name=$1 version=$2 pkg=$3
  local stamp=$bin/.$name.$version
  if [[ -x $bin/$name && -f $stamp ]]; then return; fi
  echo "building $name $version ..." >&2
  GOBIN=$bin go install -trimpath -ldflags='-s -w' "$pkg@$version"
  touch "$stamp"
}

build etcd "$ETCD_VERSION" "$here/etcd" go.etcd.io/etcd/server/v3
build kube-apiserver "$KUBE_VERSION" "$here/kube" k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager "$KUBE_VERSION" "$here/kube" k8s.io/kubernetes/cmd/kube-controller-manager
build kube-scheduler "$KUBE_VERSION" "$here/kube" k8s.io/kubernetes/cmd/kube-scheduler
build kubectl "$KUBE_VERSION" "$here/kube" k8s.io/kubernetes/cmd/kubectl
install_tool kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
install_tool helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
install_tool controller-gen "$CONTROLLER_GEN_VERSION" sigs.k8s.io/controller-tools/cmd/controller-gen
echo "$bin"
