package servicehost

import (
	"context"
	"flag"
	"fmt"
	"net"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
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
	// RemediateMissedPods lets the audit evict missed Pods that a
	// ReplicaSet, StatefulSet or DaemonSet controls.
	RemediateMissedPods bool
	// RemediationRate caps evictions per minute.
	RemediationRate int
}

// NewOptions returns the webhook's options with their defaults.
func NewOptions() *Options {
	return &Options{RemediationRate: 10}
}

// AddFlags implements options.Component.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.ServiceHost, "service-host", o.ServiceHost,
		"Value of KUBERNETES_SERVICE_HOST injected into every container (an IP or DNS name of the API server); empty turns the service-host webhook off.")
	fs.StringVar(&o.ServicePort, "service-port", o.ServicePort,
		"Value of KUBERNETES_SERVICE_PORT injected alongside; empty: the port variable is not injected.")
	fs.BoolVar(&o.RemediateMissedPods, "remediate-missed-pods", o.RemediateMissedPods,
		"Let the leader's audit evict Pods that missed the injection and that a ReplicaSet, StatefulSet or DaemonSet controls, so they come back injected (needs the pods/eviction RBAC of manifests/remediation).")
	fs.IntVar(&o.RemediationRate, "remediation-rate", o.RemediationRate,
		"Most evictions per minute of --remediate-missed-pods.")
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
	if o.RemediationRate < 1 {
		return fmt.Errorf("--remediation-rate=%d must be at least 1 eviction per minute", o.RemediationRate)
	}
	return nil
}

// Webhook builds the service-host webhook for the server to serve. While
// --service-host is empty it is off: it still answers on its path, admitting
// every Pod unchanged, so that a registered configuration never meets a 404
// (which failurePolicy: Fail would turn into refused Pods).
func (o *Options) Webhook(decoder admission.Decoder) server.Webhook {
	if o.ServiceHost == "" {
		return server.Webhook{Name: Name, Path: Path, Off: true, SelfTest: SelfTestRequest(),
			Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
				return admission.Allowed("service-host webhook is off: svcguard runs without --service-host")
			})}
	}
	return server.Webhook{
		Name:     Name,
		Path:     Path,
		SelfTest: SelfTestRequest(),
		Handler: &Handler{
			Injection:  Injection{Host: o.ServiceHost, Port: o.ServicePort},
			Decoder:    decoder,
			OnInjected: func(n int) { injectedContainers.Add(float64(n)) },
		},
	}
}

// Audit builds the leader-only missed-injection audit; nil while the
// webhook is off (nothing is meant to be injected).
func (o *Options) Audit(a server.Auditing) (manager.Runnable, error) {
	if o.ServiceHost == "" {
		return nil, nil
	}
	return NewAudit(a.Client, a.Recorder, AuditOptions{
		Interval:      a.Interval,
		Remediate:     o.RemediateMissedPods,
		RatePerMinute: o.RemediationRate,
		OwnNamespace:  a.OwnNamespace,
	}, log.Log.WithName(Name+"-audit"))
}
