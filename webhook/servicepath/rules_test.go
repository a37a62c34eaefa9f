package servicepath

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/warning"
)

// view is the cluster as a test sets it: the API server's addresses by
// source, and Pods by namespace with their labels.
type view struct {
	apiServer map[netip.Addr]string
	unsynced  bool
	pods      map[string][]viewPod
}

type viewPod struct {
	Pod
	labels map[string]string
}

func (v *view) APIServerAddresses() (map[netip.Addr]string, bool) {
	return v.apiServer, !v.unsynced
}

func (v *view) SelectedPods(namespace string, selector labels.Selector, f func(Pod)) bool {
	if v.unsynced {
		return false
	}
	for _, p := range v.pods[namespace] {
		if selector.Matches(labels.Set(p.labels)) {
			f(p.Pod)
		}
	}
	return true
}

// The addresses of the test cluster's API server, by source.
const (
	clusterIP  = "10.96.0.1"
	endpointIP = "172.18.0.2"
	hostIP     = "192.0.2.10"
)

func testView() *view {
	return &view{apiServer: map[netip.Addr]string{
		netip.MustParseAddr(clusterIP):  "ClusterIP of default/kubernetes",
		netip.MustParseAddr(endpointIP): "endpoint of default/kubernetes",
		netip.MustParseAddr(hostIP):     "--service-host",
	}}
}

func externalIPs(ips ...string) fixtures.ServiceFunc {
	return func(s *corev1.Service) { s.Spec.ExternalIPs = ips }
}

func loadBalancerIP(ip string) fixtures.ServiceFunc {
	return func(s *corev1.Service) { s.Spec.Type, s.Spec.LoadBalancerIP = corev1.ServiceTypeLoadBalancer, ip }
}

func ingressIPs(ips ...string) fixtures.ServiceFunc {
	return func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
	}
}

func svc(opts ...fixtures.ServiceOption) *corev1.Service {
	return fixtures.Service("shop", "web", append([]fixtures.ServiceOption{fixtures.Type(corev1.ServiceTypeClusterIP)}, opts...)...)
}

func TestJudgeAddressClaims(t *testing.T) {
	guard := &Guard{
		Protected:          []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("2001:db8::/64")},
		AllowedExternalIPs: nil,
	}
	limited := &Guard{AllowedExternalIPs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}
	tests := []struct {
		name   string
		guard  *Guard
		old    *corev1.Service
		new    *corev1.Service
		status bool
		denial string // "" for allowed
		warn   string
	}{
		{name: "an externalIP equal to the kubernetes Service's ClusterIP is denied", new: svc(externalIPs("198.51.100.1", clusterIP)),
			denial: "shop/web: spec.externalIPs[1] 10.96.0.1 denied: it is an address of the API server (ClusterIP of default/kubernetes)"},
		{name: "a loadBalancerIP equal to an API server endpoint is denied", new: svc(loadBalancerIP(endpointIP)),
			denial: "spec.loadBalancerIP 172.18.0.2 denied: it is an address of the API server (endpoint of default/kubernetes)"},
		{name: "an externalIP equal to --service-host is denied", new: svc(externalIPs(hostIP)),
			denial: "it is an address of the API server (--service-host)"},
		{name: "an ingress IP set through services/status equal to an API server endpoint is denied", status: true,
			old: svc(ingressIPs()), new: svc(ingressIPs(endpointIP)),
			denial: "shop/web: status.loadBalancer.ingress[0].ip 172.18.0.2 denied: it is an address of the API server"},
		{name: "an address in --protected-cidrs is denied", new: svc(externalIPs("10.0.0.7")),
			denial: "spec.externalIPs[0] 10.0.0.7 denied: it lies in --protected-cidrs 10.0.0.0/24 (node and control-plane addresses)"},
		{name: "an IPv6 address in --protected-cidrs is denied", new: svc(loadBalancerIP("2001:db8::5")),
			denial: "spec.loadBalancerIP 2001:db8::5 denied: it lies in --protected-cidrs 2001:db8::/64"},
		{name: "a legacy leading-zero form of a protected address is denied as node proxies read it", new: svc(externalIPs("010.096.000.001")),
			denial: "010.096.000.001 denied: it is an address of the API server"},
		{name: "an IPv4-mapped IPv6 form of a protected address is denied", new: svc(externalIPs("::ffff:10.96.0.1")),
			denial: "::ffff:10.96.0.1 denied: it is an address of the API server"},
		{name: "an unprotected externalIP is allowed", new: svc(externalIPs("198.51.100.1"))},
		{name: "the spec's addresses are not judged on a status update", status: true,
			old: svc(externalIPs(clusterIP)), new: svc(externalIPs(clusterIP))},
		{name: "the status's addresses are not judged on a spec update (the API server keeps the stored status)",
			old: svc(ingressIPs(endpointIP)), new: svc(ingressIPs(endpointIP))},
		{name: "a protected address the Service already claimed is kept with a warning that says to remove it, so the Service can still change",
			old: svc(externalIPs(clusterIP)), new: svc(externalIPs(clusterIP), fixtures.Label("team", "a")),
			warn: "svcguard: remove spec.externalIPs[0] 10.96.0.1: an API server address (ClusterIP of default/kubernetes)"},
		{name: "an address moved from loadBalancerIP to externalIPs is judged as a new externalIP",
			guard: limited, old: svc(loadBalancerIP("8.8.8.8")), new: svc(loadBalancerIP(""), externalIPs("8.8.8.8")),
			denial: "spec.externalIPs[0] 8.8.8.8 denied: externalIPs must lie in --allowed-external-ip-cidrs"},
		{name: "a protected address moved from loadBalancerIP to externalIPs is denied",
			old: svc(loadBalancerIP(clusterIP)), new: svc(loadBalancerIP(""), externalIPs(clusterIP)),
			denial: "spec.externalIPs[0] 10.96.0.1 denied"},
		{name: "an ingress IP with ipMode Proxy is no claim: proxies send its traffic to the load balancer", status: true,
			old: svc(ingressIPs()), new: svc(ingressIPs(endpointIP), fixtures.ServiceFunc(func(s *corev1.Service) {
				s.Status.LoadBalancer.Ingress[0].IPMode = ptr.To(corev1.LoadBalancerIPModeProxy)
			}))},
		{name: "removing a protected address is allowed", old: svc(externalIPs(clusterIP)), new: svc()},
		{name: "with --allowed-external-ip-cidrs an externalIP outside them is denied", guard: limited, new: svc(externalIPs("198.51.100.1")),
			denial: "spec.externalIPs[0] 198.51.100.1 denied: externalIPs must lie in --allowed-external-ip-cidrs 203.0.113.0/24 (any other address could be hijacked, CVE-2020-8554)"},
		{name: "with --allowed-external-ip-cidrs an externalIP inside them is allowed", guard: limited, new: svc(externalIPs("203.0.113.9"))},
		{name: "--allowed-external-ip-cidrs does not limit loadBalancerIP", guard: limited, new: svc(loadBalancerIP("198.51.100.1"))},
		{name: "an API server address is denied even inside --allowed-external-ip-cidrs",
			guard: &Guard{AllowedExternalIPs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}}, new: svc(externalIPs(clusterIP)),
			denial: "it is an address of the API server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.guard
			if g == nil {
				g = guard
			}
			v := g.Judge(Review{Old: tt.old, New: tt.new, Status: tt.status, View: testView()})
			if tt.denial == "" {
				assert.True(t, v.Allowed(), "expected allowed, got denials %q", v.Denials)
			} else {
				require.Len(t, v.Denials, 1, "expected one denial containing %q", tt.denial)
				assert.Contains(t, v.Denials[0], tt.denial)
			}
			if tt.warn == "" {
				assert.Empty(t, v.Warnings)
			} else {
				require.Len(t, v.Warnings, 1)
				assert.Contains(t, v.Warnings[0], tt.warn)
				assert.LessOrEqual(t, len(v.Warnings[0]), warning.Max, "warning %q", v.Warnings[0])
			}
			assert.False(t, v.Degraded)
		})
	}
}

func TestJudgeBeforeTheCachesSyncedStillDeniesWhatItKnowsAndSaysItIsDegraded(t *testing.T) {
	v := testView()
	v.unsynced = true
	guard := &Guard{Protected: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}
	got := guard.Judge(Review{New: svc(externalIPs("10.0.0.1")), View: v})
	assert.False(t, got.Allowed(), "a protected range needs no cache")
	assert.True(t, got.Degraded)

	got = guard.Judge(Review{New: svc(), View: v})
	assert.True(t, got.Allowed())
	assert.False(t, got.Degraded, "a Service that claims nothing and names no targetPort needs no cache")
}

// namedPort is a Service port whose targetPort is the name target.
func namedPort(name, target string, protocol corev1.Protocol) fixtures.ServiceFunc {
	return func(s *corev1.Service) {
		p := corev1.ServicePort{Name: name, Port: 80, Protocol: protocol}
		p.TargetPort.Type, p.TargetPort.StrVal = 1, target
		s.Spec.Ports = append(s.Spec.Ports, p)
	}
}

func selector(app string) fixtures.ServiceFunc {
	return func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": app} }
}

func pod(name, app string, ports ...NamedPort) viewPod {
	return viewPod{Pod: Pod{Name: name, Ports: PortNamesOf(ports...)}, labels: map[string]string{"app": app}}
}

var httpTCP = NamedPort{Name: "http", Protocol: corev1.ProtocolTCP}

func TestJudgeWarnsAboutTargetPortNamesSomeSelectedPodsLack(t *testing.T) {
	shop := []viewPod{
		pod("web-v1-a", "web", httpTCP), pod("web-v1-b", "web", httpTCP),
		pod("web-v2-c", "web"), pod("web-v2-b", "web", NamedPort{Name: "http", Protocol: corev1.ProtocolUDP}),
		pod("db-0", "db"),
	}
	tests := []struct {
		name string
		svc  *corev1.Service
		pods []viewPod
		want []string
	}{
		{name: "two of four selected Pods lack it (one has the name with another protocol)",
			svc: svc(selector("web"), namedPort("web", "http", "")), pods: shop,
			want: []string{`svcguard: targetPort "http" is missing on 2 of 4 selected Pods (e.g. web-v2-b): their EndpointSlices get no ports`}},
		{name: "every selected Pod has it", svc: svc(selector("web"), namedPort("web", "http", corev1.ProtocolTCP)),
			pods: []viewPod{pod("web-v1-a", "web", httpTCP)}},
		{name: "a UDP targetPort matches only UDP ports", svc: svc(selector("web"), namedPort("dns", "http", corev1.ProtocolUDP)), pods: shop,
			want: []string{`svcguard: targetPort "http" is missing on 3 of 4 selected Pods (e.g. web-v1-a): their EndpointSlices get no ports`}},
		{name: "two ports with the same name and protocol warn once", svc: svc(selector("web"), namedPort("a", "http", ""), namedPort("b", "http", "TCP")),
			pods: shop, want: []string{`svcguard: targetPort "http" is missing on 2 of 4 selected Pods (e.g. web-v2-b): their EndpointSlices get no ports`}},
		{name: "no Pod selected: nothing to say", svc: svc(selector("api"), namedPort("web", "http", "")), pods: shop},
		{name: "a Service without a selector manages its endpoints by hand", svc: svc(namedPort("web", "http", "")), pods: shop},
		{name: "a numeric targetPort is not looked up", svc: svc(selector("web"), fixtures.Port("web", 80, 0)), pods: shop},
		{name: "a long Pod name is cut so the warning stays under 120 characters",
			svc:  svc(selector("web"), namedPort("web", "metrics-port", "")),
			pods: []viewPod{pod(strings.Repeat("p", 200), "web")},
			want: []string{`svcguard: targetPort "metrics-port" is missing on 1 of 1 selected Pods (e.g. ppp...): their EndpointSlices get no ports`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := testView()
			v.pods = map[string][]viewPod{"shop": tt.pods, "other": {pod("web-x", "web")}}
			got := (&Guard{}).Judge(Review{New: tt.svc, View: v})
			assert.True(t, got.Allowed(), "a targetPort name never denies")
			assert.Equal(t, tt.want, got.Warnings)
			for _, w := range got.Warnings {
				assert.LessOrEqual(t, len(w), warning.Max, "warning %q", w)
			}
		})
	}
}

func TestJudgeLooksUpAtMostMaxTargetPortNamesAndNoneWhenAClaimIsDenied(t *testing.T) {
	v := testView()
	v.pods = map[string][]viewPod{"shop": {pod("web-a", "web")}}
	many := svc(selector("web"))
	for i := range 5000 {
		namedPort(fmt.Sprintf("p%d", i), fmt.Sprintf("name-%d", i), "")(many)
	}
	got := (&Guard{}).Judge(Review{New: many, View: v})
	assert.Len(t, got.Warnings, MaxTargetPortNames, "a Service with thousands of targetPort names costs MaxTargetPortNames passes")

	externalIPs(clusterIP)(many)
	got = (&Guard{}).Judge(Review{New: many, View: v})
	assert.False(t, got.Allowed())
	assert.Empty(t, got.Warnings, "a denied Service is not looked at further")
}

func TestJudgeTargetPortsOnStatusUpdatesIsSkipped(t *testing.T) {
	v := testView()
	v.pods = map[string][]viewPod{"shop": {pod("web-a", "web")}}
	s := svc(selector("web"), namedPort("web", "http", ""))
	got := (&Guard{}).Judge(Review{Old: s, New: s, Status: true, View: v})
	assert.Empty(t, got.Warnings, "a status update cannot change ports or selectors")
}

func TestJudgeTargetPortsBeforeThePodCacheSyncedIsDegradedWithoutWarning(t *testing.T) {
	v := testView()
	v.unsynced = true
	got := (&Guard{}).Judge(Review{New: svc(selector("web"), namedPort("web", "http", "")), View: v})
	assert.True(t, got.Allowed())
	assert.Empty(t, got.Warnings)
	assert.True(t, got.Degraded)
}

func TestPortNamesMatchNameAndProtocol(t *testing.T) {
	names := PortNamesOf(NamedPort{Name: "http"}, NamedPort{Name: "dns", Protocol: corev1.ProtocolUDP}, NamedPort{Name: "sctp", Protocol: corev1.ProtocolSCTP})
	assert.Equal(t, PortNames("http\ndns/UDP\nsctp/SCTP\n"), names)
	for _, p := range []NamedPort{{Name: "http"}, {Name: "http", Protocol: corev1.ProtocolTCP}, {Name: "dns", Protocol: corev1.ProtocolUDP}, {Name: "sctp", Protocol: corev1.ProtocolSCTP}} {
		assert.True(t, names.Has(p), "%v", p)
	}
	for _, p := range []NamedPort{{Name: "http", Protocol: corev1.ProtocolUDP}, {Name: "dns"}, {Name: "htt"}, {Name: ""}} {
		assert.False(t, names.Has(p), "%v", p)
	}
	assert.False(t, PortNames("").Has(NamedPort{Name: ""}))
}

func TestPackedLabelsAreTheLabels(t *testing.T) {
	l := packLabels(map[string]string{"app": "web", "empty": "", "pod-template-hash": "7f9c"})
	for k, v := range map[string]string{"app": "web", "empty": "", "pod-template-hash": "7f9c"} {
		got, ok := l.Lookup(k)
		assert.True(t, ok, k)
		assert.Equal(t, v, got, k)
	}
	assert.False(t, l.Has("ap"))
	assert.False(t, l.Has("web"), "a value is no key")
	assert.True(t, labels.SelectorFromSet(map[string]string{"app": "web", "empty": ""}).Matches(&l))
	assert.False(t, labels.SelectorFromSet(map[string]string{"app": "db"}).Matches(&l))
	assert.Empty(t, packLabels(nil))
}

func TestParseAddressReadsAddressesAsNodeProxiesDo(t *testing.T) {
	for in, want := range map[string]string{
		"10.96.0.1": "10.96.0.1", "010.096.000.001": "10.96.0.1", "::ffff:10.96.0.1": "10.96.0.1", "2001:db8::1": "2001:db8::1",
	} {
		got, ok := ParseAddress(in)
		require.True(t, ok, in)
		assert.Equal(t, want, got.String(), in)
	}
	for _, in := range []string{"", "example.com", "10.96.0.1/32", "1.2.3.4.5"} {
		_, ok := ParseAddress(in)
		assert.False(t, ok, "%q is no address", in)
	}
}

func TestOptionsGuardNamesTheFlagAndValueThatCannotWork(t *testing.T) {
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{ProtectedCIDRs: []string{"10.0.0.0"}}, `--protected-cidrs="10.0.0.0" is not a CIDR`},
		{Options{AllowedExternalIPCIDRs: []string{"nope"}}, `--allowed-external-ip-cidrs="nope" is not a CIDR`},
		{Options{ProtectedCIDRs: []string{"0.0.0.0/0"}}, `--protected-cidrs=0.0.0.0/0 protects every address`},
		{Options{ProtectedCIDRs: []string{"::ffff:0.0.0.0/96"}}, `--protected-cidrs=0.0.0.0/0 protects every address`},
	} {
		assert.ErrorContains(t, tt.opts.Validate(), tt.want)
	}
	g, err := (&Options{ProtectedCIDRs: []string{"10.0.0.7/24", "::ffff:10.1.0.0/112"}, AllowedExternalIPCIDRs: []string{"203.0.113.0/24"}}).Guard()
	require.NoError(t, err)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("10.1.0.0/16")}, g.Protected,
		"a CIDR with host bits is read as its network, an IPv4-mapped one as its IPv4 range")
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, g.AllowedExternalIPs)
}
