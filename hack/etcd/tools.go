//go:build tools

// Package etcd only records the etcd server command hack/build-kube.sh builds.
package etcd

import _ "go.etcd.io/etcd/server/v3"
