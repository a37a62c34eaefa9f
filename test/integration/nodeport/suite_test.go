// Package nodeport_test is the envtest suite of package nodeport (the
// node-port guard and its audit against a real kube-apiserver and etcd), run
// by `make test` and `make integration`.
package nodeport_test

import (
	"testing"

	"github.com/svcguard/svcguard/pkg/server"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/nodeport"
)

var suite = &testenv.Suite{
	Options: testenv.Options{WebhookManifests: []string{"manifests/webhook/validating.yaml"}},
	Register: func(s *server.Server) error {
		opts := nodeport.NewOptions()
		opts.PinnedNodePorts = []string{"istio-ingress/istio-ingressgateway:tcp=30445", "default/pinned:http=30446"}
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

// testGuard is the guard of the package's unit tests: it pins the gateway's
// tcp port to 30445 and default/pinned's http port to 30446 by flag (as the
// suite's server does), reserves 30100-30110 and has node-port admins.
func testGuard() *nodeport.Guard {
	g := &nodeport.Guard{
		Range:    nodeport.Range{First: 30000, Last: 32767},
		Reserved: nodeport.PortSet{{First: 30100, Last: 30110}},
		Admins:   nodeport.ParseAdmins([]string{"platform-admin", "group:platform"}),
	}
	g.Pins.Add(nodeport.PortRef{Namespace: "istio-ingress", Name: "istio-ingressgateway", Port: "tcp"}, 30445)
	g.Pins.Add(nodeport.PortRef{Namespace: "default", Name: "pinned", Port: "http"}, 30446)
	return g
}

// nodePortsIncorrect reads svcguard_node_ports_incorrect{reason}, the gauge
// the audit sets, from the registry that /metrics serves.
func nodePortsIncorrect(t *testing.T, reason string) float64 {
	t.Helper()
	return testenv.GaugeValue(t, "svcguard_node_ports_incorrect", "reason", reason)
}
