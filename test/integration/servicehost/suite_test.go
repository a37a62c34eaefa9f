// Package servicehost_test is the envtest suite of package servicehost (the
// service-host webhook and its audit against a real kube-apiserver and etcd),
// run by `make test` and `make integration`.
package servicehost_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/svcguard/svcguard/pkg/server"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/servicehost"
)

const (
	suiteHost = "203.0.113.10"
	suitePort = "6443"
)

var suite = &testenv.Suite{
	Options: testenv.Options{WebhookManifests: []string{"manifests/webhook/mutating.yaml"}},
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

func newPod(namespace string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, GenerateName: "web-", Labels: labels},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{
				{Name: "init", Image: "busybox"},
				{Name: "sidecar", Image: "envoy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)},
			},
			Containers: []corev1.Container{{Name: "app", Image: "nginx"}},
		},
	}
}

func wantInjected(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	for name, got := range allEnvs(pod) {
		assert.Equal(t, env(servicehost.HostVar, suiteHost, servicehost.PortVar, suitePort), got, "env of container %q as stored by the API server", name)
	}
}

func env(pairs ...string) []corev1.EnvVar {
	var out []corev1.EnvVar
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, corev1.EnvVar{Name: pairs[i], Value: pairs[i+1]})
	}
	return out
}

// allEnvs returns the env of every container of p, keyed by container name.
func allEnvs(p *corev1.Pod) map[string][]corev1.EnvVar {
	out := map[string][]corev1.EnvVar{}
	for _, c := range p.Spec.InitContainers {
		out[c.Name] = c.Env
	}
	for _, c := range p.Spec.Containers {
		out[c.Name] = c.Env
	}
	for _, c := range p.Spec.EphemeralContainers {
		out[c.Name] = c.Env
	}
	return out
}
