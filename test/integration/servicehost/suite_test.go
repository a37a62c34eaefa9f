// Package servicehost_test is the envtest suite of package servicehost (the
// service-host webhook and its audit against a real kube-apiserver and etcd),
// run by `make test` and `make integration`.
package servicehost_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/server"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/servicehost"
)

const (
	suiteHost = "203.0.113.10"
	suitePort = "6443"
)

var suite = &testenv.Suite{
	Options: testenv.Options{Webhooks: []string{"MutatingWebhookConfiguration"}},
	Register: func(s *server.Server) error {
		opts := &servicehost.Options{ServiceHost: suiteHost, ServicePort: suitePort}
		built, err := servicehost.Build(opts, s.Dependencies())
		if err != nil {
			return err
		}
		s.Register(built.Webhook) // the audit tests run their own audits
		return nil
	},
}

func TestMain(m *testing.M) { suite.Main(m) }

// newPod is the suite's Pod: an init container, a native sidecar and an app
// container, named web-<random> in namespace, with opts.
func newPod(namespace string, opts ...fixtures.PodOption) *corev1.Pod {
	return fixtures.Pod(namespace, "", append([]fixtures.PodOption{fixtures.GenerateName("web-"),
		fixtures.InitContainer("init", "busybox"), fixtures.Sidecar("sidecar", "envoy"), fixtures.Container("app", "nginx")}, opts...)...)
}

// suiteEnv is what the suite's server injects.
var suiteEnv = fixtures.Env(servicehost.HostVar, suiteHost, servicehost.PortVar, suitePort)

func wantInjected(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	for name, got := range fixtures.Envs(pod) {
		assert.Equal(t, suiteEnv, got, "env of container %q as stored by the API server", name)
	}
}
