// Package monitoring_test is the envtest suite of manifests/components/monitoring
// (real kube-apiserver and etcd, an in-process svcguard server with both real
// webhooks), run by `make test` and `make integration`: every query of the
// shipped dashboard and every expression of the shipped alerts must name
// metrics that svcguard or the API server really exports.
package monitoring_test

import (
	"strconv"
	"testing"

	"github.com/svcguard/svcguard/pkg/server"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/nodeport"
	"github.com/svcguard/svcguard/webhook/servicehost"
)

// reservedNodePort is reserved in the suite's guard, so that claiming it is
// denied: a rejection the API server counts.
const reservedNodePort = 30999

// monitoringOverlay is the install that adds components/monitoring.
const monitoringOverlay = "monitoring"

var suite = &testenv.Suite{
	// Both shipped webhook configurations, so the API server calls both webhooks by their real names.
	Register: func(s *server.Server) error {
		host, err := servicehost.Build(&servicehost.Options{ServiceHost: "203.0.113.10", ServicePort: "6443"}, s.Dependencies())
		if err != nil {
			return err
		}
		s.Register(host.Webhook)
		opts := nodeport.NewOptions()
		opts.ReservedNodePorts = []string{strconv.Itoa(reservedNodePort)}
		if err := opts.Validate(); err != nil {
			return err
		}
		guard, err := nodeport.Build(opts, s.Dependencies())
		if err != nil {
			return err
		}
		s.Register(guard.Webhook)
		return nil
	},
}

func TestMain(m *testing.M) { suite.Main(m) }
