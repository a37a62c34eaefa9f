// Package servicepath_test is the envtest suite of package servicepath (the
// service-path guard and its audit against a real kube-apiserver and etcd,
// with the shipped ValidatingWebhookConfiguration, matchConditions
// included), run by `make test` and `make integration`.
package servicepath_test

import (
	"testing"

	"github.com/svcguard/svcguard/pkg/server"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/servicepath"
)

// serviceHost is the suite's --service-host: an address no other source
// names, so a test can tell it is protected on its own.
const serviceHost = "192.0.2.10"

// protectedCIDR is the suite's --protected-cidrs.
const protectedCIDR = "198.51.100.0/24"

var suite = &testenv.Suite{
	Options: testenv.Options{Webhooks: []string{"ValidatingWebhookConfiguration"}},
	Register: func(s *server.Server) error {
		opts := servicepath.NewOptions()
		opts.ProtectedCIDRs = []string{protectedCIDR}
		if err := opts.Validate(); err != nil {
			return err
		}
		built, err := servicepath.Build(opts, serviceHost, s.Dependencies())
		if err != nil {
			return err
		}
		s.Register(built.Webhook) // the audit test runs its own audit
		return nil
	},
}

func TestMain(m *testing.M) { suite.Main(m) }
