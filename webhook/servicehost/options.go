package servicehost

import (
	"flag"
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/svcguard/svcguard/pkg/options"
)

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
	// InjectionPolicy names the MutatingAdmissionPolicy twin (and its
	// binding) that the leader checks; empty: no twin is expected.
	InjectionPolicy string
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
		"Let the leader's audit evict Pods that missed the injection and that a ReplicaSet, StatefulSet or DaemonSet controls, so they come back injected (needs the pods/eviction RBAC of manifests/components/remediation).")
	fs.IntVar(&o.RemediationRate, "remediation-rate", o.RemediationRate,
		"Most evictions per minute of --remediate-missed-pods.")
	fs.StringVar(&o.InjectionPolicy, "injection-policy", o.InjectionPolicy,
		"Name of the MutatingAdmissionPolicy twin of this webhook and of its binding (manifests/components/policy sets it): the leader checks that both exist, that the binding is not narrowed and that the policy injects the values svcguard injects, and exports svcguard_injection_policy_active; empty, or without --service-host: no twin expected.")
}

// CommandLineOnly implements options.CommandLineOnly: what is injected
// comes from the ConfigMap's own keys, which the Deployment passes on the
// command line and kustomize writes into the policy twin. A value left in config.yaml
// (where it lived before the twin) would silently lose to the command line
// and turn the injection off, so it is refused instead.
func (o *Options) CommandLineOnly() map[string]string {
	const where = "it is a key of its own in svcguard's ConfigMap, written from manifests/base/injection.env, which the Deployment passes as a flag and kustomize writes into the policy twin; move it there"
	return map[string]string{"service-host": where, "service-port": where}
}

// Validate implements options.Component: the host must be something
// client-go's in-cluster config can dial, the port a TCP port.
func (o *Options) Validate() error {
	if o.ServiceHost != "" {
		if strings.HasPrefix(o.ServiceHost, "[") {
			return fmt.Errorf("--service-host=%q: give an IPv6 address without brackets (client-go adds them)", o.ServiceHost)
		}
		// The same rule as the policy twin's variable `valid` (CEL's isIP and a DNS-1123 subdomain), so
		// that a value one injector refuses is refused by both.
		addr, err := netip.ParseAddr(o.ServiceHost)
		switch {
		case err == nil && addr.Is4In6():
			return fmt.Errorf("--service-host=%q is an IPv4-mapped IPv6 address: give the IPv4 address %s", o.ServiceHost, addr.Unmap())
		case err == nil && addr.Zone() != "":
			return fmt.Errorf("--service-host=%q has a zone, which no Pod can use", o.ServiceHost)
		case err == nil && addr.IsUnspecified():
			return fmt.Errorf("--service-host=%q is the unspecified address, which no Pod can dial", o.ServiceHost)
		case err != nil && strings.Trim(o.ServiceHost, "0123456789.") == "":
			return fmt.Errorf("--service-host=%q is not an IP address (a part is missing, out of range or has a leading zero)", o.ServiceHost)
		case err != nil && len(validation.IsDNS1123Subdomain(o.ServiceHost)) > 0:
			return fmt.Errorf("--service-host=%q is neither an IP address nor a DNS name", o.ServiceHost)
		}
	}
	if o.ServicePort != "" {
		if p, err := options.ParsePort(o.ServicePort); err != nil || p == 0 || !allDigits(o.ServicePort, 5) {
			return fmt.Errorf("--service-port=%q is not a port from 1 to 65535", o.ServicePort)
		}
		if o.ServiceHost == "" {
			return fmt.Errorf("--service-port=%q needs --service-host: the port is only injected with a host", o.ServicePort)
		}
	}
	if o.InjectionPolicy != "" {
		if errs := validation.IsDNS1123Subdomain(o.InjectionPolicy); len(errs) > 0 {
			return fmt.Errorf("--injection-policy=%q is not a valid object name: %s", o.InjectionPolicy, errs[0])
		}
	}
	if o.RemediationRate < 1 {
		return fmt.Errorf("--remediation-rate=%d must be at least 1 eviction per minute", o.RemediationRate)
	}
	return nil
}

// allDigits tells whether s is 1 to most decimal digits: a port as the
// policy twin accepts it (no sign, no spaces).
func allDigits(s string, most int) bool {
	if len(s) == 0 || len(s) > most {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
