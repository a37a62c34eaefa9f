package servicepath

import (
	"flag"
	"fmt"
	"net/netip"

	"github.com/svcguard/svcguard/pkg/options"
)

// Options are the service-path guard's flags.
type Options struct {
	// ProtectedCIDRs are node and control-plane ranges no Service may claim.
	ProtectedCIDRs options.List
	// AllowedExternalIPCIDRs, when set, are the only ranges externalIPs may
	// come from.
	AllowedExternalIPCIDRs options.List
}

// NewOptions returns the guard's options with their defaults: only the API
// server's own addresses are protected, and externalIPs are not limited.
func NewOptions() *Options {
	return &Options{}
}

// AddFlags implements options.Component.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.Var(&o.ProtectedCIDRs, "protected-cidrs",
		"Ranges (10.0.0.0/24,2001:db8::/64) of node and control-plane addresses: the service-path guard denies a Service that adds one as an "+
			"externalIP, loadBalancerIP or load balancer ingress IP, as it always does for the API server's own addresses. Repeatable.")
	fs.Var(&o.AllowedExternalIPCIDRs, "allowed-external-ip-cidrs",
		"When set, the only ranges a Service's spec.externalIPs may come from: the service-path guard denies any other it adds "+
			"(the mitigation of CVE-2020-8554). Empty: any address that is not protected. Repeatable.")
}

// Validate implements options.Component: the settings must make a Guard.
func (o *Options) Validate() error {
	_, err := o.Guard()
	return err
}

// Guard parses the settings; the error names the flag and the value.
func (o *Options) Guard() (Guard, error) {
	var g Guard
	var err error
	if g.Protected, err = parseCIDRs("protected-cidrs", o.ProtectedCIDRs); err != nil {
		return Guard{}, err
	}
	for _, p := range g.Protected {
		if p.Bits() == 0 {
			return Guard{}, fmt.Errorf("--protected-cidrs=%s protects every address: the guard would deny every externalIP and "+
				"load balancer IP; list the node and control-plane ranges only", p)
		}
	}
	if g.AllowedExternalIPs, err = parseCIDRs("allowed-external-ip-cidrs", o.AllowedExternalIPCIDRs); err != nil {
		return Guard{}, err
	}
	return g, nil
}

func parseCIDRs(flagName string, values []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(values))
	for _, v := range values {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, fmt.Errorf("--%s=%q is not a CIDR (such as 10.0.0.0/24 or 2001:db8::/64): %w", flagName, v, err)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			// Addresses are judged unmapped (::ffff:10.0.0.1 is 10.0.0.1), so is the range.
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
