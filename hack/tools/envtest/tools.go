//go:build tools

// Package envtest only records the commands this module builds, so that
// `go mod tidy` keeps their dependencies.
package envtest

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
