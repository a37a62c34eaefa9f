package servicehost

import (
	"context"
	"flag"
	"fmt"
	"net"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/metrics"
	"github.com/svcguard/svcguard/pkg/options"
	"github.com/svcguard/svcguard/pkg/server"
)

// Name labels this webhook's metrics and logs.
const Name = "service-host"

// Path is where the MutatingWebhookConfiguration points.
const Path = "/webhooks/service-host"

// injectedContainers counts containers that got the variables.
var injectedContainers = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "svcguard_injected_containers_total",
	Help: "Containers (of every kind) into which the service-host webhook injected KUBERNETES_SERVICE_HOST, dry runs excluded.",
})

func init() {
	metrics.MustRegister(injectedContainers)
}

// Options are the service-host webhook's flags.
type Options struct {
	// ServiceHost is the value of KUBERNETES_SERVICE_HOST; empty turns the webhook off.
	ServiceHost string
	// ServicePort is the value of KUBERNETES_SERVICE_PORT; empty: not injected.
	ServicePort string
}

// AddFlags implements options.Component.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.ServiceHost, "service-host", o.ServiceHost,
		"Value of KUBERNETES_SERVICE_HOST injected into every container (an IP or DNS name of the API server); empty turns the service-host webhook off.")
	fs.StringVar(&o.ServicePort, "service-port", o.ServicePort,
		"Value of KUBERNETES_SERVICE_PORT injected alongside; empty: the port variable is not injected.")
}

// Validate implements options.Component: the host must be something
// client-go's in-cluster config can dial, the port a TCP port.
func (o *Options) Validate() error {
	if o.ServiceHost != "" {
		if strings.HasPrefix(o.ServiceHost, "[") {
			return fmt.Errorf("--service-host=%q: give an IPv6 address without brackets (client-go adds them)", o.ServiceHost)
		}
		if net.ParseIP(o.ServiceHost) == nil && len(validation.IsDNS1123Subdomain(o.ServiceHost)) > 0 {
			return fmt.Errorf("--service-host=%q is neither an IP address nor a DNS name", o.ServiceHost)
		}
	}
	if o.ServicePort != "" {
		if p, err := options.ParsePort(o.ServicePort); err != nil || p == 0 {
			return fmt.Errorf("--service-port=%q is not a port from 1 to 65535", o.ServicePort)
		}
		if o.ServiceHost == "" {
			return fmt.Errorf("--service-port=%q needs --service-host: the port is only injected with a host", o.ServicePort)
		}
	}
	return nil
}

// Webhook builds the service-host webhook for the server to serve. While
// --service-host is empty it is off: it still answers on its path, admitting
// every Pod unchanged, so that a registered configuration never meets a 404
// (which failurePolicy: Fail would turn into refused Pods).
func (o *Options) Webhook(decoder admission.Decoder) server.Webhook {
	if o.ServiceHost == "" {
		return server.Webhook{Name: Name, Path: Path, Off: true,
			Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
				return admission.Allowed("service-host webhook is off: svcguard runs without --service-host")
			})}
	}
	return server.Webhook{
		Name: Name,
		Path: Path,
		Handler: &Handler{
			Injection:  Injection{Host: o.ServiceHost, Port: o.ServicePort},
			Decoder:    decoder,
			OnInjected: func(n int) { injectedContainers.Add(float64(n)) },
		},
	}
}
