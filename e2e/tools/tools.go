//go:build tools

// Package tools pins the programs that the end-to-end control plane runs (see ../controlplane).
//
// Nothing imports it: build.sh runs `go build` on each path below, and go.mod decides the
// versions. etcd is held at the release that k8s.io/kubernetes itself requires, so adding it
// changes none of the dependencies Kubernetes was released with.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
