// Package nodeport_test is the envtest suite of package nodeport (the
// node-port guard and its audit against a real kube-apiserver and etcd), run
// by `make test` and `make integration`.
package nodeport_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/svcguard/svcguard/pkg/server"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/nodeport"
)

var suite = &testenv.Suite{
	Options: testenv.Options{Webhooks: []string{"ValidatingWebhookConfiguration"}},
	Register: func(s *server.Server) error {
		opts := guardOptions()
		if err := opts.Validate(); err != nil {
			return err
		}
		built, err := nodeport.Build(opts, s.Dependencies())
		if err != nil {
			return err
		}
		s.Register(built.Webhook) // the audit tests run their own audits
		return nil
	},
}

func TestMain(m *testing.M) { suite.Main(m) }

// guardOptions are the settings of the suite's guard: the gateway's tcp port
// pinned to 30445 and default/pinned's http port to 30446, by flag.
// nodePortAdmin is the user the suite's guard lets force any change.
const nodePortAdmin = "platform-admin"

// asNodePortAdmin is a client that acts as nodePortAdmin (the suite's admin
// impersonates it).
func asNodePortAdmin(t *testing.T) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(suite.Env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: nodePortAdmin, Groups: []string{"system:masters"}}
	c, err := client.New(cfg, client.Options{})
	require.NoError(t, err)
	return c
}

func guardOptions() *nodeport.Options {
	opts := nodeport.NewOptions()
	opts.PinnedNodePorts = []string{"istio-ingress/istio-ingressgateway:tcp=30445", "default/pinned:http=30446"}
	opts.NodePortAdmins = []string{nodePortAdmin}
	return opts
}

// suiteGuard returns a new copy of the guard that the suite's server runs,
// built from the same settings, for a test's own audit.
func suiteGuard(t *testing.T) *nodeport.Guard {
	t.Helper()
	guard, err := guardOptions().Guard()
	require.NoError(t, err)
	return &guard
}

// nodePortsIncorrect reads svcguard_node_ports_incorrect{reason}, the gauge
// the audit sets, from the registry that /metrics serves.
func nodePortsIncorrect(t *testing.T, reason string) float64 {
	t.Helper()
	return testenv.GaugeValue(t, "svcguard_node_ports_incorrect", "reason", reason)
}
