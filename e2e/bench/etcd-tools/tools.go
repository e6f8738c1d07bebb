//go:build tools

// Package tools pins the etcd programs that e2e/bench runs against Dolphin.
//
// Nothing imports it: build-etcd-bench.sh runs `go build` on each path below, and go.mod
// decides the versions. The server, etcdctl and the benchmark program are one release.
// The benchmark lives in etcd's root module, go.etcd.io/etcd/v3; the module proxy does not
// serve the separate go.etcd.io/etcd/tools/v3 module, so it is not used.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
	_ "go.etcd.io/etcd/v3/tools/benchmark"
)
