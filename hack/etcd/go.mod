// Module etcd pins the etcd server that ebb's operator tests run against,
// built from source by hack/build-kube.sh.
module github.com/ebb-ml/ebb/hack/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 v3.5.35
