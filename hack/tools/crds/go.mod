// The CRDs that the deploy suite installs before it applies the manifests, read from the Go modules of
// the projects that own them (`go mod download -json MODULE` here gives their directory). Nothing here is
// imported or built: do not `go mod tidy` this module, which would drop the requirements.
// prometheus-operator ships its CRDs in the root module, whose newest tag the proxy serves is v0.85.0
// (the API types svcguard's tests use are github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring).
module github.com/svcguard/svcguard/hack/tools/crds

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0 // indirect
