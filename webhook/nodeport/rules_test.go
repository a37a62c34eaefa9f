package nodeport

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// fakeView is an in-memory View: the rules are pure, so their tests need no cache.
type fakeView struct {
	unsynced  bool
	pins      map[int32][]PortRef
	hostPorts map[int32][]string
}

func (f fakeView) Synced() bool                                     { return !f.unsynced }
func (f fakeView) AnnotationPins(n int32) []PortRef                 { return f.pins[n] }
func (f fakeView) HostPortPods(n int32, _ corev1.Protocol) []string { return f.hostPorts[n] }

var gateway = PortRef{Namespace: "istio-ingress", Name: "istio-ingressgateway", Port: "tcp"}

// testGuard pins the gateway's tcp port to 30445 by flag and reserves 30100-30110.
func testGuard() *Guard {
	g := &Guard{Range: Range{30000, 32767}, Reserved: PortSet{{30100, 30110}}, Admins: ParseAdmins([]string{"platform-admin", "group:platform"})}
	g.Pins.Add(gateway, 30445)
	return g
}

type svcOpt func(*corev1.Service)

func service(ns, name string, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort}}
	for _, o := range opts {
		o(s)
	}
	return s
}

func port(name string, number, nodePort int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: name, Port: number, Protocol: corev1.ProtocolTCP, NodePort: nodePort})
	}
}

func annotate(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func typ(t corev1.ServiceType) svcOpt { return func(s *corev1.Service) { s.Spec.Type = t } }

func gw(opts ...svcOpt) *corev1.Service {
	return service("istio-ingress", "istio-ingressgateway", opts...)
}

func TestJudge(t *testing.T) {
	tests := []struct {
		name     string
		old, new *corev1.Service
		user     string
		groups   []string
		view     fakeView
		// wantDenial is a substring of the denial; empty: allowed.
		wantDenial string
		// wantWarning is a substring of one warning; empty: no warning expected.
		wantWarning      string
		wantReassignment bool
	}{
		{
			name: "incident: moving a flag-pinned, correctly allocated nodePort is denied with the full explanation",
			old:  gw(port("tcp", 443, 30445)), new: gw(port("tcp", 443, 30194)),
			wantDenial: `istio-ingress/istio-ingressgateway: port "tcp" nodePort 30445 -> 30194 denied: 30445 is correctly allocated ` +
				`(in range 30000-32767, not reserved, pinned to this port, no hostPort); set annotation svcguard.io/allow-node-port-reassignment=true to force`,
			wantReassignment: true,
		},
		{
			name: "moving an unpinned, correctly allocated nodePort is denied",
			old:  service("a", "web", port("http", 80, 31000)), new: service("a", "web", port("http", 80, 31001)),
			wantDenial:       "31000 is correctly allocated (in range 30000-32767, not reserved, not pinned elsewhere, no hostPort)",
			wantReassignment: true,
		},
		{
			name: "rule 1: a nodePort outside the range may be moved, with a warning",
			old:  service("a", "web", port("http", 80, 29999)), new: service("a", "web", port("http", 80, 31001)),
			wantWarning: "29999 -> 31001 allowed: 29999 was outside range 30000-32767",
		},
		{
			name: "rule 2: a reserved nodePort may be moved, with a warning",
			old:  service("a", "web", port("http", 80, 30105)), new: service("a", "web", port("http", 80, 31001)),
			wantWarning: "30105 -> 31001 allowed: 30105 was reserved",
		},
		{
			name: "rule 3: a nodePort pinned by flag to another Service may be moved off it",
			old:  service("a", "web", port("http", 80, 30445)), new: service("a", "web", port("http", 80, 31001)),
			wantWarning: "30445 was pinned to istio-ingress/istio-ingressgateway:tcp",
		},
		{
			name: "rule 3: a nodePort pinned by another Service's annotation may be moved off it",
			old:  service("a", "web", port("http", 80, 31500)), new: service("a", "web", port("http", 80, 31001)),
			view:        fakeView{pins: map[int32][]PortRef{31500: {{Namespace: "b", Name: "db", Port: "pg"}}}},
			wantWarning: "31500 was pinned to b/db:pg",
		},
		{
			name:        "rule 3: a nodePort pinned to another port of the same Service may be moved off it",
			old:         service("a", "web", annotate(PinAnnotation, "https=31500"), port("http", 80, 31500), port("https", 443, 31600)),
			new:         service("a", "web", annotate(PinAnnotation, "https=31500"), port("http", 80, 31001), port("https", 443, 31600)),
			wantWarning: "31500 was pinned to a/web:https",
		},
		{
			name: "rule 4: a nodePort that differs from its own pin may be moved",
			old:  gw(port("tcp", 443, 30500)), new: gw(port("tcp", 443, 30445)),
			wantWarning: "30500 was not this port's pin 30445",
		},
		{
			name:       "rule 4: a pin by annotation protects the pinned nodePort",
			old:        service("a", "web", annotate(PinAnnotation, "http=31000"), port("http", 80, 31000)),
			new:        service("a", "web", annotate(PinAnnotation, "http=31000"), port("http", 80, 31001)),
			wantDenial: "31000 is correctly allocated (in range 30000-32767, not reserved, pinned to this port, no hostPort)", wantReassignment: true,
		},
		{
			name: "rule 5: a nodePort used as a Pod's hostPort may be moved off it",
			old:  service("a", "web", port("http", 80, 31000)), new: service("a", "web", port("http", 80, 31001)),
			view:        fakeView{hostPorts: map[int32][]string{31000: {"kube-system/agent-x"}}},
			wantWarning: "31000 was hostPort of Pod kube-system/agent-x",
		},
		{
			name: "caches not synced: judged without hostPorts and annotation pins, and says so",
			old:  service("a", "web", port("http", 80, 31000)), new: service("a", "web", port("http", 80, 31001)),
			view:       fakeView{unsynced: true, hostPorts: map[int32][]string{31000: {"kube-system/agent-x"}}},
			wantDenial: "(in range 30000-32767, not reserved, not pinned elsewhere, hostPorts not checked yet)", wantReassignment: true,
			wantWarning: "caches not synced: judged by range, reserved ports and pins only",
		},
		{
			name: "renaming the only port is matched and its re-allocated nodePort denied",
			old:  gw(port("tcp", 443, 30445)), new: gw(port("https", 443, 31301)),
			wantDenial: `port "https" nodePort 30445 -> 31301 denied`, wantReassignment: true,
		},
		{
			name: "ports are matched by name before (port, protocol)",
			old:  service("a", "web", port("http", 80, 31000), port("https", 443, 31443)),
			new:  service("a", "web", port("https", 80, 31443), port("http", 443, 31000)),
		},
		{
			name:       "unnamed-by-match ports fall back to (port, protocol)",
			old:        service("a", "web", port("a", 80, 31000), port("b", 443, 31443)),
			new:        service("a", "web", port("c", 80, 31002), port("b", 443, 31443)),
			wantDenial: `port "c" nodePort 31000 -> 31002 denied`, wantReassignment: true,
		},
		{
			name:       "create: claiming a nodePort pinned to another Service is denied",
			new:        service("other", "svc", port("http", 80, 30445)),
			wantDenial: `other/svc: port "http" nodePort 30445 denied: 30445 is pinned to istio-ingress/istio-ingressgateway:tcp`,
		},
		{
			name:       "create: claiming a reserved nodePort is denied",
			new:        service("other", "svc", port("http", 80, 30101)),
			wantDenial: "30101 is reserved",
		},
		{
			name:       "create: claiming a nodePort pinned by another Service's annotation is denied",
			new:        service("other", "svc", port("http", 80, 31500)),
			view:       fakeView{pins: map[int32][]PortRef{31500: {{Namespace: "b", Name: "db", Port: "pg"}}}},
			wantDenial: "31500 is pinned to b/db:pg",
		},
		{
			name: "create: the pinned owner may claim its own pin",
			new:  gw(port("tcp", 443, 30445)),
		},
		{
			name:       "update: a new port claiming a reserved nodePort is denied",
			old:        service("a", "web", port("http", 80, 31000)),
			new:        service("a", "web", port("http", 80, 31000), port("metrics", 9090, 30102)),
			wantDenial: `port "metrics" nodePort 30102 denied: 30102 is reserved`,
		},
		{
			name: "a reassignment onto a pinned nodePort is denied for the target too",
			old:  service("a", "web", port("http", 80, 30105)), new: service("a", "web", port("http", 80, 30445)),
			wantDenial: "30445 is pinned to istio-ingress/istio-ingressgateway:tcp", wantWarning: "30105 was reserved",
		},
		{
			name: "escape hatch: the allow annotation forces a reassignment, with a warning",
			old:  gw(port("tcp", 443, 30445)), new: gw(annotate(AllowAnnotation, "true"), port("tcp", 443, 30194)),
			wantWarning: `svcguard: forced by annotation svcguard.io/allow-node-port-reassignment: port "tcp" nodePort 30445 -> 30194`,
		},
		{
			name: "escape hatch: a node-port admin user forces a reassignment, with a warning",
			old:  gw(port("tcp", 443, 30445)), new: gw(port("tcp", 443, 30194)), user: "platform-admin",
			wantWarning: "forced by node-port admin user platform-admin",
		},
		{
			name: "escape hatch: a node-port admin group forces a claim, with a warning",
			new:  service("other", "svc", port("http", 80, 30445)), user: "bob", groups: []string{"dev", "platform"},
			wantWarning: "forced by node-port admin group platform",
		},
		{
			name: "the allow annotation with any value but true forces nothing",
			old:  gw(port("tcp", 443, 30445)), new: gw(annotate(AllowAnnotation, "yes"), port("tcp", 443, 30194)),
			wantDenial: "30445 is correctly allocated", wantReassignment: true,
		},
		{
			name: "not a reassignment: changing the type to ClusterIP releases the nodePorts",
			old:  gw(port("tcp", 443, 30445)), new: gw(typ(corev1.ServiceTypeClusterIP), port("tcp", 443, 0)),
			wantWarning: "istio-ingress/istio-ingressgateway releases nodePort 30445",
		},
		{
			name: "not a reassignment: changing the type to ExternalName releases the nodePorts",
			old:  gw(port("tcp", 443, 30445), port("http", 80, 30080)), new: gw(typ(corev1.ServiceTypeExternalName)),
			wantWarning: "releases nodePort 30445, 30080",
		},
		{
			name:        "not a reassignment: removing a port releases its nodePort",
			old:         service("a", "web", port("http", 80, 31000), port("https", 443, 31443)),
			new:         service("a", "web", port("http", 80, 31000)),
			wantWarning: "a/web releases nodePort 31443",
		},
		{
			name: "not a reassignment: a LoadBalancer that stops allocating nodePorts releases them",
			old:  service("a", "lb", typ(corev1.ServiceTypeLoadBalancer), port("http", 80, 31000)),
			new: service("a", "lb", typ(corev1.ServiceTypeLoadBalancer), port("http", 80, 0),
				func(s *corev1.Service) { s.Spec.AllocateLoadBalancerNodePorts = ptr.To(false) }),
			wantWarning: "a/lb releases nodePort 31000",
		},
		{
			name: "an update that keeps every nodePort is allowed silently",
			old:  gw(port("tcp", 443, 30445)), new: gw(annotate("owner", "x"), port("tcp", 443, 30445)),
		},
		{
			name:       "ClusterIP to NodePort: the new nodePorts are judged as claims",
			old:        service("a", "web", typ(corev1.ServiceTypeClusterIP), port("http", 80, 0)),
			new:        service("a", "web", port("http", 80, 30445)),
			wantDenial: "30445 is pinned to istio-ingress/istio-ingressgateway:tcp",
		},
		{
			name:       "a malformed pin annotation is denied with how to fix it",
			new:        service("a", "web", annotate(PinAnnotation, "http=abc"), port("http", 80, 31000)),
			wantDenial: `a/web: annotation svcguard.io/pinned-node-ports="http=abc": "http=abc": "abc" is not a port from 1 to 65535; fix the annotation`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := testGuard().Judge(Review{Old: tc.old, New: tc.new, User: tc.user, Groups: tc.groups, View: tc.view})
			if tc.wantDenial == "" {
				assert.True(t, v.Allowed(), "expected allowed, got denials %q", v.Denials)
			} else {
				require.False(t, v.Allowed(), "expected a denial containing %q, got allowed with warnings %q", tc.wantDenial, v.Warnings)
				assert.Contains(t, strings.Join(v.Denials, "\n"), tc.wantDenial)
				for _, d := range v.Denials {
					assert.NotContains(t, d, "\n", "a denial is one line")
				}
			}
			assert.Equal(t, tc.wantReassignment, v.ReassignmentDenied, "counted as a denied reassignment")
			if tc.wantWarning == "" {
				assert.Empty(t, v.Warnings, "expected no warning")
			} else {
				assert.Contains(t, strings.Join(v.Warnings, "\n"), tc.wantWarning)
			}
			for _, w := range v.Warnings {
				assert.Less(t, len(w), 120, "warning %q is too long for an HTTP Warning header", w)
			}
		})
	}
}

func TestStaticBandFollowsKEP3668(t *testing.T) {
	tests := []struct {
		r    Range
		want int32
	}{
		{Range{30000, 32767}, 30085}, // 2768 ports: 2768/32 = 86
		{Range{30000, 30099}, 30015}, // small range: at least 16
		{Range{20000, 39999}, 20127}, // large range: at most 128
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, tc.r.StaticBandLast(), "static band of %s", tc.r)
	}
}

func TestParsing(t *testing.T) {
	ref, n, err := ParsePinFlag("istio-ingress/istio-ingressgateway:tcp=30445")
	require.NoError(t, err)
	assert.Equal(t, gateway, ref)
	assert.EqualValues(t, 30445, n)
	for _, bad := range []string{"istio-ingressgateway:tcp=30445", "ns/name=30445", "ns/name:tcp=x", "ns/name:tcp=70000"} {
		_, _, err := ParsePinFlag(bad)
		assert.Error(t, err, "pin %q must be refused", bad)
	}
	pins, err := ParsePinAnnotation("tcp=30445, http=30080")
	require.NoError(t, err)
	assert.Equal(t, map[string]int32{"tcp": 30445, "http": 30080}, pins)
	_, err = ParseRange("32767-30000")
	assert.ErrorContains(t, err, "ends before it starts")
}

func TestOptionsRefuseInconsistentPins(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"pin outside the range", Options{NodePortRange: "30000-32767", PinnedNodePorts: []string{"a/b:c=8080"}}, "outside --node-port-range"},
		{"pin that is reserved", Options{NodePortRange: "30000-32767", ReservedNodePorts: []string{"30000-30010"}, PinnedNodePorts: []string{"a/b:c=30005"}}, "also in --reserved-node-ports"},
		{"port pinned twice", Options{NodePortRange: "30000-32767", PinnedNodePorts: []string{"a/b:c=30005", "a/b:c=30006"}}, "pinned twice"},
		{"single-port range is valid", Options{NodePortRange: "30000"}, ""},
		{"range that ends before it starts", Options{NodePortRange: "32767-30000"}, "ends before it starts"},
		{"bad reserved", Options{NodePortRange: "30000-32767", ReservedNodePorts: []string{"x"}}, "--reserved-node-ports"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func TestDynamicBandPinsAreReported(t *testing.T) {
	o := Options{NodePortRange: "30000-32767", PinnedNodePorts: []string{"istio-ingress/istio-ingressgateway:tcp=30445", "a/b:c=30050"}}
	require.NoError(t, o.Validate())
	assert.Equal(t, map[PortRef]int32{gateway: 30445}, o.DynamicBandPins(), "30445 is above the static band 30000-30085; 30050 is inside it")
}
