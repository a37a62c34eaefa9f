// Package servicepath is the service-path guard: the validating webhook that
// keeps Services off the API server's path, and warns about Services that
// would silently route to nothing, with its leader-only audit.
//
// Two failure modes of one family, both from production networking:
//   - a Service that claims an address of the API server (spec.externalIPs,
//     spec.loadBalancerIP, or status.loadBalancer.ingress[].ip) makes node
//     proxies capture the traffic to it, and the cluster loses its control
//     plane path. Claiming any address by externalIPs is CVE-2020-8554; the
//     guard denies protected addresses, and with --allowed-external-ip-cidrs
//     every externalIP outside those ranges;
//   - a Service whose targetPort is a name, selecting Pods of which only some
//     define that port name: their EndpointSlices get no ports, and proxies
//     that dial them reach port 0. The guard warns (never denies) and the
//     audit reports existing Services in that state.
//
// It is a package apart from the node-port guard because it judges other
// Services (every type, ClusterIP included), another subresource
// (services/status) and other caches, under its own configuration entry.
package servicepath

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	netutils "k8s.io/utils/net"

	"github.com/svcguard/svcguard/pkg/warning"
)

// View is what the guard knows of the cluster, from its caches. The rules
// only read it, so tests give them a plain in-memory View.
type View interface {
	// APIServerAddresses returns the API server's addresses, each with where
	// it was found ("the kubernetes Service's ClusterIP"); synced is false
	// while a source is not known yet.
	APIServerAddresses() (addresses map[netip.Addr]string, synced bool)
	// SelectedPods calls f with every running Pod of namespace whose labels
	// selector matches; synced is false (and f never called) until the Pod
	// cache holds the whole cluster.
	SelectedPods(namespace string, selector labels.Selector, f func(Pod)) (synced bool)
}

// Pod is what the rules read of a Pod: its name and the named ports that
// EndpointSlices can resolve a targetPort name to.
type Pod struct {
	Name string
	// Ports are the named ports of its containers and native sidecars
	// (restartable init containers), where the EndpointSlice controller
	// looks a targetPort name up.
	Ports PortNames
}

// NamedPort is a container port's name and protocol (TCP when unset).
type NamedPort struct {
	Name     string
	Protocol corev1.Protocol
}

// Has tells whether the Pod has a port named name with protocol, as the
// EndpointSlice controller matches a targetPort name (name and protocol).
func (p Pod) Has(port NamedPort) bool {
	return p.Ports.Has(port)
}

// PortNames are named ports packed into one string, as the Pod cache keeps
// them: "NAME\n" for TCP, "NAME/PROTOCOL\n" otherwise (port names hold
// neither "/" nor a line break).
type PortNames string

// PortNamesOf packs ports.
func PortNamesOf(ports ...NamedPort) PortNames {
	var b strings.Builder
	for _, p := range ports {
		b.WriteString(p.Name)
		if proto := Protocol(p.Protocol); proto != corev1.ProtocolTCP {
			b.WriteString("/" + string(proto))
		}
		b.WriteByte('\n')
	}
	return PortNames(b.String())
}

// Has tells whether port is among the names, without allocating.
func (n PortNames) Has(port NamedPort) bool {
	rest := string(n)
	for rest != "" {
		entry, after, _ := strings.Cut(rest, "\n")
		name, protocol, withProtocol := strings.Cut(entry, "/")
		if !withProtocol {
			protocol = string(corev1.ProtocolTCP)
		}
		if name == port.Name && protocol == string(Protocol(port.Protocol)) {
			return true
		}
		rest = after
	}
	return false
}

// Guard holds the settings the rules judge by.
type Guard struct {
	// Protected are ranges no Service may claim an address in
	// (--protected-cidrs: node and control-plane ranges).
	Protected []netip.Prefix
	// AllowedExternalIPs, when set, are the only ranges spec.externalIPs may
	// come from (--allowed-external-ip-cidrs).
	AllowedExternalIPs []netip.Prefix
}

// Review is one Service change to judge.
type Review struct {
	// Old is the stored Service; nil on CREATE.
	Old *corev1.Service
	// New is the Service as it would be stored.
	New *corev1.Service
	// Status is set for an UPDATE of the services/status subresource, which
	// changes only the status; otherwise only the spec counts (the API
	// server keeps the stored status on every other write).
	Status bool
	// View is the cluster as cached.
	View View
}

// Verdict is the guard's answer: denied when Denials is not empty.
type Verdict struct {
	// Denials are one-line reasons, each self-explanatory.
	Denials []string
	// Warnings go back to the client as HTTP Warning headers (each under 120 characters).
	Warnings []string
	// Degraded tells that an address was judged before the caches knew
	// every API server address, or a targetPort name was not checked
	// because the Pod cache was not synced.
	Degraded bool
}

// Allowed tells whether the change may go ahead.
func (v Verdict) Allowed() bool {
	return len(v.Denials) == 0
}

// Claim is an address a Service asks node proxies or load balancers to
// route to it.
type Claim struct {
	// Field is where the address is, as a field path ("spec.externalIPs[1]").
	Field string
	// Value is the address as written.
	Value string
	// Family is the kind of field ("externalIPs", "loadBalancerIP",
	// "ingress"): an address a Service already claimed counts as kept only
	// in the same family, so that moving it into another field is judged
	// as new.
	Family string
}

// The families of claims.
const (
	familyExternalIP     = "externalIPs"
	familyLoadBalancerIP = "loadBalancerIP"
	familyIngress        = "ingress"
)

// Claims returns the addresses that svc claims: in its spec, or with status
// set, in its status (the load balancer's ingress IPs). An ingress IP with
// ipMode Proxy is no claim: node proxies send its traffic on to the load
// balancer instead of capturing it (KEP-1860).
func Claims(svc *corev1.Service, status bool) []Claim {
	if svc == nil {
		return nil
	}
	var out []Claim
	if status {
		for i, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" && (in.IPMode == nil || *in.IPMode != corev1.LoadBalancerIPModeProxy) {
				out = append(out, Claim{Field: fmt.Sprintf("status.loadBalancer.ingress[%d].ip", i), Value: in.IP, Family: familyIngress})
			}
		}
		return out
	}
	for i, ip := range svc.Spec.ExternalIPs {
		out = append(out, Claim{Field: fmt.Sprintf("spec.externalIPs[%d]", i), Value: ip, Family: familyExternalIP})
	}
	if svc.Spec.LoadBalancerIP != "" {
		out = append(out, Claim{Field: "spec.loadBalancerIP", Value: svc.Spec.LoadBalancerIP, Family: familyLoadBalancerIP})
	}
	return out
}

// ParseAddress parses an address as node proxies do: leniently, so that
// "010.000.000.001" means 10.0.0.1 as kube-proxy reads it (the API server
// still stores such legacy forms), and an IPv4-mapped IPv6 address means its
// IPv4 address. ok is false for anything else.
func ParseAddress(s string) (netip.Addr, bool) {
	ip := netutils.ParseIPSloppy(s)
	if ip == nil {
		return netip.Addr{}, false
	}
	addr, ok := netip.AddrFromSlice(ip)
	return addr.Unmap(), ok
}

// Judge decides a Service change. An address claim that the change adds is
// denied when it is an API server address, lies in a protected range, or
// (externalIPs only) lies outside the allowed ranges; a claim the Service
// already had in the same kind of field is allowed with a warning, so that
// a Service from before svcguard can still be changed (and fixed). A
// targetPort name that some selected Pods lack is a warning, looked at only
// when no claim is denied.
func (g *Guard) Judge(r Review) Verdict {
	var v Verdict
	name := r.New.Namespace + "/" + r.New.Name
	type claimed struct {
		family string
		addr   netip.Addr
	}
	before := map[claimed]bool{}
	for _, c := range Claims(r.Old, r.Status) {
		if a, ok := ParseAddress(c.Value); ok {
			before[claimed{c.Family, a}] = true
		}
	}
	claims := Claims(r.New, r.Status)
	var apiServer map[netip.Addr]string
	if len(claims) > 0 {
		var synced bool
		apiServer, synced = r.View.APIServerAddresses()
		v.Degraded = !synced
	}
	for _, c := range claims {
		addr, ok := ParseAddress(c.Value)
		if !ok {
			continue // the API server's validation refuses it before any webhook sees it
		}
		p := g.Problem(c, addr, apiServer)
		switch {
		case p.Short == "":
		case before[claimed{c.Family, addr}]:
			v.Warnings = append(v.Warnings, warning.Format("remove %s %s: %s", c.Field, c.Value, p.Short))
		default:
			v.Denials = append(v.Denials, fmt.Sprintf("%s: %s %s denied: %s", name, c.Field, c.Value, p.Long))
		}
	}
	if !r.Status && len(v.Denials) == 0 {
		degraded := g.judgeTargetPorts(r.New, r.View, &v)
		v.Degraded = v.Degraded || degraded
	}
	return v
}

// Problem says why a claim is not allowed: Short for a warning, Long for a
// denial or an Event. Both are empty when it is allowed.
type Problem struct {
	Short, Long string
}

// Problem judges a claim of addr against the API server's addresses (by
// where each was found) and the settings.
func (g *Guard) Problem(c Claim, addr netip.Addr, apiServer map[netip.Addr]string) Problem {
	if source, ok := apiServer[addr]; ok {
		return Problem{
			Short: "an API server address (" + source + ")",
			Long:  fmt.Sprintf("it is an address of the API server (%s); node proxies would capture the cluster's traffic to the API server", source),
		}
	}
	for _, p := range g.Protected {
		if p.Contains(addr) {
			return Problem{
				Short: "in --protected-cidrs " + p.String(),
				Long:  fmt.Sprintf("it lies in --protected-cidrs %s (node and control-plane addresses); node proxies would capture traffic meant for them", p),
			}
		}
	}
	if c.Family == familyExternalIP && len(g.AllowedExternalIPs) > 0 &&
		!slices.ContainsFunc(g.AllowedExternalIPs, func(p netip.Prefix) bool { return p.Contains(addr) }) {
		return Problem{
			Short: "outside --allowed-external-ip-cidrs",
			Long: fmt.Sprintf("externalIPs must lie in --allowed-external-ip-cidrs %s (any other address could be hijacked, CVE-2020-8554); ask a cluster admin",
				joinPrefixes(g.AllowedExternalIPs)),
		}
	}
	return Problem{}
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// judgeTargetPorts warns about each targetPort name that some Pods selected
// by svc lack; degraded is true when the Pod cache could not tell.
func (g *Guard) judgeTargetPorts(svc *corev1.Service, view View, v *Verdict) (degraded bool) {
	for _, m := range MissingNamedPorts(svc, view) {
		if !m.Synced {
			return true
		}
		v.Warnings = append(v.Warnings, m.Warning())
	}
	return false
}

// Missing is one targetPort name that some of a Service's selected Pods lack.
type Missing struct {
	// Port is the targetPort name and the Service port's protocol.
	Port NamedPort
	// Lacking and Selected count the selected Pods without the port, and all.
	Lacking, Selected int
	// Example is the first lacking Pod by name.
	Example string
	// Synced is false when the Pod cache could not tell (the other fields are then zero).
	Synced bool
}

// Warning is the one-line warning, under 120 characters: the Pod name is cut
// to fit.
func (m Missing) Warning() string {
	text := fmt.Sprintf("targetPort %q is missing on %d of %d selected Pods (e.g. %%s): their EndpointSlices get no ports",
		m.Port.Name, m.Lacking, m.Selected)
	room := warning.Max - len(warning.Prefix) - len(text) + 2 // + the "%s" the example replaces
	example := m.Example
	if len(example) > room {
		example = example[:max(room-3, 0)] + "..." // Pod names are ASCII (DNS subdomains)
	}
	return warning.Format(text, example)
}

// MaxTargetPortNames bounds the targetPort names of one Service that the
// guard and the audit look up: the API server sets no limit on a Service's
// ports, and each name costs a pass over the selected Pods.
const MaxTargetPortNames = 16

// NamedTargetPorts returns the distinct targetPort names of svc with their
// port's protocol, the first MaxTargetPortNames of them.
func NamedTargetPorts(svc *corev1.Service) []NamedPort {
	var out []NamedPort
	for _, p := range svc.Spec.Ports {
		if p.TargetPort.Type != intstr.String || p.TargetPort.StrVal == "" {
			continue
		}
		np := NamedPort{Name: p.TargetPort.StrVal, Protocol: Protocol(p.Protocol)}
		if !slices.Contains(out, np) { // at most MaxTargetPortNames long
			if out = append(out, np); len(out) == MaxTargetPortNames {
				break
			}
		}
	}
	return out
}

// Protocol returns p, TCP when unset, as the API server defaults it.
func Protocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// MissingNamedPorts returns, for each targetPort name of svc that some
// selected Pods lack, how many lack it. A Service without a selector (its
// endpoints are managed by hand) or of type ExternalName selects nothing.
// When the Pod cache is not synced, it returns one entry with Synced false.
func MissingNamedPorts(svc *corev1.Service, view View) []Missing {
	ports := NamedTargetPorts(svc)
	if len(ports) == 0 || len(svc.Spec.Selector) == 0 || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	out := make([]Missing, len(ports))
	for i, p := range ports {
		out[i] = Missing{Port: p, Synced: true}
	}
	selector := labels.SelectorFromSet(svc.Spec.Selector)
	synced := view.SelectedPods(svc.Namespace, selector, func(pod Pod) {
		for i := range out {
			out[i].Selected++
			if !pod.Has(out[i].Port) {
				out[i].Lacking++
				if out[i].Example == "" || pod.Name < out[i].Example {
					out[i].Example = pod.Name
				}
			}
		}
	})
	if !synced {
		return []Missing{{}}
	}
	found := out[:0]
	for _, m := range out {
		if m.Lacking > 0 {
			found = append(found, m)
		}
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].Port.Name < found[j].Port.Name })
	return found
}
