package nodeport

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/svcguard/svcguard/pkg/fixtures"
)

// fakeView is an in-memory View: the rules are pure, so their tests need no cache.
type fakeView struct {
	unsynced  bool
	pins      map[int32][]PortRef
	holders   map[int32][]PortRef
	hostPorts map[int32][]string
}

func (f fakeView) Synced() bool                                     { return !f.unsynced }
func (f fakeView) AnnotationPins(n int32) []PortRef                 { return f.pins[n] }
func (f fakeView) Holders(n int32) []PortRef                        { return f.holders[n] }
func (f fakeView) HostPortPods(n int32, _ corev1.Protocol) []string { return f.hostPorts[n] }

var (
	gateway = PortRef{Namespace: "istio-ingress", Name: "istio-ingressgateway", Port: "tcp"}
	// pinnedOwner is the flag pin of issue #10: --pinned-node-ports default/pinned:http=30446.
	pinnedOwner = PortRef{Namespace: "default", Name: "pinned", Port: "http"}
)

// testGuard pins the gateway's tcp port to 30445 and default/pinned's http
// port to 30446 by flag, and reserves 30100-30110.
func testGuard() *Guard {
	g := &Guard{Range: Range{30000, 32767}, Reserved: PortSet{{30100, 30110}}, Admins: ParseAdmins([]string{"platform-admin", "group:platform"})}
	g.Pins.Add(gateway, 30445)
	g.Pins.Add(pinnedOwner, 30446)
	return g
}

// gw is the incident's gateway, istio-ingress/istio-ingressgateway.
func gw(opts ...fixtures.ServiceOption) *corev1.Service {
	return fixtures.Service("istio-ingress", "istio-ingressgateway", opts...)
}

// judgeCase is one row of the Judge tables: a Service CREATE (old nil) or
// UPDATE by user, judged by testGuard (with the pin annotation restricted
// or not) against view.
type judgeCase struct {
	name     string
	restrict bool
	old, new *corev1.Service
	user     string
	groups   []string
	view     fakeView
	// wantDenial is a substring of the denial; empty: allowed.
	wantDenial string
	// wantWarning is a substring of one warning; empty: no warning expected.
	wantWarning      string
	wantReassignment bool
}

func runJudgeCases(t *testing.T, tests []judgeCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := testGuard()
			g.RestrictPinAnnotation = tc.restrict
			v := g.Judge(Review{Old: tc.old, New: tc.new, User: tc.user, Groups: tc.groups, View: tc.view})
			assertVerdict(t, v, tc.wantDenial, tc.wantWarning, tc.wantReassignment)
		})
	}
}

func TestJudge(t *testing.T) {
	tests := []judgeCase{
		{
			name: "incident: moving a flag-pinned, correctly allocated nodePort is denied with the full explanation",
			old:  gw(fixtures.Port("tcp", 443, 30445)), new: gw(fixtures.Port("tcp", 443, 30194)),
			wantDenial: `istio-ingress/istio-ingressgateway: port "tcp" nodePort 30445 -> 30194 denied: 30445 is correctly allocated ` +
				`(in range 30000-32767, not reserved, pinned to this port, no hostPort); set annotation svcguard.io/allow-node-port-reassignment=true to force`,
			wantReassignment: true,
		},
		{
			name: "moving an unpinned, correctly allocated nodePort is denied",
			old:  fixtures.Service("a", "web", fixtures.Port("http", 80, 31000)), new: fixtures.Service("a", "web", fixtures.Port("http", 80, 31001)),
			wantDenial:       "31000 is correctly allocated (in range 30000-32767, not reserved, not pinned elsewhere, no hostPort)",
			wantReassignment: true,
		},
		{
			name: "rule 1: a nodePort outside the range may be moved, with a warning",
			old:  fixtures.Service("a", "web", fixtures.Port("http", 80, 29999)), new: fixtures.Service("a", "web", fixtures.Port("http", 80, 31001)),
			wantWarning: "29999 -> 31001 allowed: 29999 was outside range 30000-32767",
		},
		{
			name: "rule 2: a reserved nodePort may be moved, with a warning",
			old:  fixtures.Service("a", "web", fixtures.Port("http", 80, 30105)), new: fixtures.Service("a", "web", fixtures.Port("http", 80, 31001)),
			wantWarning: "30105 -> 31001 allowed: 30105 was reserved",
		},
		{
			name: "rule 3: a nodePort pinned by flag to another Service may be moved off it",
			old:  fixtures.Service("a", "web", fixtures.Port("http", 80, 30445)), new: fixtures.Service("a", "web", fixtures.Port("http", 80, 31001)),
			wantWarning: "30445 was pinned to istio-ingress/istio-ingressgateway:tcp",
		},
		{
			name: "rule 3: a lone annotation pin of another Service never takes a nodePort from the Service that holds it: the move is denied",
			old:  fixtures.Service("a", "web", fixtures.Port("http", 80, 31500)), new: fixtures.Service("a", "web", fixtures.Port("http", 80, 31001)),
			view:       fakeView{pins: map[int32][]PortRef{31500: {{Namespace: "b", Name: "db", Port: "pg"}}}},
			wantDenial: "31500 -> 31001 denied: 31500 is correctly allocated", wantReassignment: true,
		},
		{
			name:        "rule 3: a nodePort pinned to another port of the same Service may be moved off it",
			old:         fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "https=31500"), fixtures.Port("http", 80, 31500), fixtures.Port("https", 443, 31600)),
			new:         fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "https=31500"), fixtures.Port("http", 80, 31001), fixtures.Port("https", 443, 31600)),
			wantWarning: "31500 was pinned to a/web:https",
		},
		{
			name: "rule 4: a nodePort that differs from its own pin may be moved",
			old:  gw(fixtures.Port("tcp", 443, 30500)), new: gw(fixtures.Port("tcp", 443, 30445)),
			wantWarning: "30500 was not this port's pin 30445",
		},
		{
			name:       "rule 4: a pin by annotation protects the pinned nodePort",
			old:        fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31000"), fixtures.Port("http", 80, 31000)),
			new:        fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31000"), fixtures.Port("http", 80, 31001)),
			wantDenial: "31000 is correctly allocated (in range 30000-32767, not reserved, pinned to this port, no hostPort)", wantReassignment: true,
		},
		{
			name: "rule 5: a nodePort used as a Pod's hostPort may be moved off it",
			old:  fixtures.Service("a", "web", fixtures.Port("http", 80, 31000)), new: fixtures.Service("a", "web", fixtures.Port("http", 80, 31001)),
			view:        fakeView{hostPorts: map[int32][]string{31000: {"kube-system/agent-x"}}},
			wantWarning: "31000 was hostPort of Pod kube-system/agent-x",
		},
		{
			name: "caches not synced: judged without hostPorts and annotation pins, and says so",
			old:  fixtures.Service("a", "web", fixtures.Port("http", 80, 31000)), new: fixtures.Service("a", "web", fixtures.Port("http", 80, 31001)),
			view:       fakeView{unsynced: true, hostPorts: map[int32][]string{31000: {"kube-system/agent-x"}}},
			wantDenial: "(in range 30000-32767, not reserved, not pinned elsewhere, hostPorts not checked yet)", wantReassignment: true,
			wantWarning: "caches not synced: judged by range, reserved ports and pins only",
		},
		{
			name: "renaming the only port is matched and its re-allocated nodePort denied",
			old:  gw(fixtures.Port("tcp", 443, 30445)), new: gw(fixtures.Port("https", 443, 31301)),
			wantDenial: `port "https" nodePort 30445 -> 31301 denied`, wantReassignment: true,
		},
		{
			name: "ports are matched by name before (port, protocol)",
			old:  fixtures.Service("a", "web", fixtures.Port("http", 80, 31000), fixtures.Port("https", 443, 31443)),
			new:  fixtures.Service("a", "web", fixtures.Port("https", 80, 31443), fixtures.Port("http", 443, 31000)),
		},
		{
			name:       "unnamed-by-match ports fall back to (port, protocol)",
			old:        fixtures.Service("a", "web", fixtures.Port("a", 80, 31000), fixtures.Port("b", 443, 31443)),
			new:        fixtures.Service("a", "web", fixtures.Port("c", 80, 31002), fixtures.Port("b", 443, 31443)),
			wantDenial: `port "c" nodePort 31000 -> 31002 denied`, wantReassignment: true,
		},
		{
			name:       "create: claiming a nodePort pinned to another Service is denied",
			new:        fixtures.Service("other", "svc", fixtures.Port("http", 80, 30445)),
			wantDenial: `other/svc: port "http" nodePort 30445 denied: 30445 is pinned to istio-ingress/istio-ingressgateway:tcp`,
		},
		{
			name:       "create: claiming a reserved nodePort is denied",
			new:        fixtures.Service("other", "svc", fixtures.Port("http", 80, 30101)),
			wantDenial: "30101 is reserved",
		},
		{
			name: "holes found in review: the allow annotation cannot force taking a flag-pinned nodePort; only a node-port admin can",
			new:  fixtures.Service("tenant", "grab", fixtures.Annotation(AllowAnnotation, "true"), fixtures.Port("http", 80, 30445)),
			wantDenial: `tenant/grab: port "http" nodePort 30445 denied: 30445 is pinned to istio-ingress/istio-ingressgateway:tcp; ` +
				"choose another nodePort (or leave it to the API server), or ask a node-port admin (--node-port-admins)",
		},
		{
			name:       "holes found in review: the allow annotation cannot force taking another Service's annotation-pinned nodePort",
			new:        fixtures.Service("tenant", "grab", fixtures.Annotation(AllowAnnotation, "true"), fixtures.Port("http", 80, 31500)),
			view:       fakeView{pins: map[int32][]PortRef{31500: {{Namespace: "b", Name: "db", Port: "pg"}}}},
			wantDenial: "31500 is pinned to b/db:pg",
		},
		{
			name: "holes found in review: a node-port admin may force taking a flag-pinned nodePort, with a warning",
			new:  fixtures.Service("tenant", "grab", fixtures.Port("http", 80, 30445)), user: "platform-admin",
			wantWarning: `forced by node-port admin user platform-admin: port "http" takes nodePort 30445`,
		},
		{
			name: "holes found in review: a flag-pinned port back from ClusterIP with a random nodePort is denied",
			old:  gw(fixtures.Type(corev1.ServiceTypeClusterIP), fixtures.Port("tcp", 443, 0)), new: gw(fixtures.Port("tcp", 443, 30194)),
			wantDenial: `port "tcp" nodePort 30194 denied: the port is pinned to 30445 by --pinned-node-ports; set annotation svcguard.io/allow-node-port-reassignment=true to force`,
		},
		{
			name:        "holes found in review: the allow annotation may force the Service's own flag-pinned port elsewhere, with a warning",
			old:         gw(fixtures.Type(corev1.ServiceTypeClusterIP), fixtures.Port("tcp", 443, 0)),
			new:         gw(fixtures.Annotation(AllowAnnotation, "true"), fixtures.Port("tcp", 443, 30194)),
			wantWarning: `forced by annotation svcguard.io/allow-node-port-reassignment: port "tcp" takes nodePort 30194`,
		},
		{
			name: "holes found in review: a tenant's hostPort Pod on a flag-pinned nodePort does not free it: the move is denied",
			old:  gw(fixtures.Port("tcp", 443, 30445)), new: gw(fixtures.Port("tcp", 443, 30194)),
			view:             fakeView{hostPorts: map[int32][]string{30445: {"tenant/unschedulable"}}},
			wantDenial:       "30445 is correctly allocated (in range 30000-32767, not reserved, pinned to this port, its flag pin outranks the hostPort of Pod tenant/unschedulable)",
			wantReassignment: true,
		},
		{
			name:       "create: claiming a nodePort pinned by another Service's annotation is denied",
			new:        fixtures.Service("other", "svc", fixtures.Port("http", 80, 31500)),
			view:       fakeView{pins: map[int32][]PortRef{31500: {{Namespace: "b", Name: "db", Port: "pg"}}}},
			wantDenial: "31500 is pinned to b/db:pg",
		},
		{
			name: "create: the pinned owner may claim its own pin",
			new:  gw(fixtures.Port("tcp", 443, 30445)),
		},
		{
			name:       "update: a new port claiming a reserved nodePort is denied",
			old:        fixtures.Service("a", "web", fixtures.Port("http", 80, 31000)),
			new:        fixtures.Service("a", "web", fixtures.Port("http", 80, 31000), fixtures.Port("metrics", 9090, 30102)),
			wantDenial: `port "metrics" nodePort 30102 denied: 30102 is reserved`,
		},
		{
			name: "a reassignment onto a pinned nodePort is denied for the target too",
			old:  fixtures.Service("a", "web", fixtures.Port("http", 80, 30105)), new: fixtures.Service("a", "web", fixtures.Port("http", 80, 30445)),
			wantDenial: "30445 is pinned to istio-ingress/istio-ingressgateway:tcp", wantWarning: "30105 was reserved",
		},
		{
			name: "escape hatch: the allow annotation forces a reassignment, with a warning",
			old:  gw(fixtures.Port("tcp", 443, 30445)), new: gw(fixtures.Annotation(AllowAnnotation, "true"), fixtures.Port("tcp", 443, 30194)),
			wantWarning: `svcguard: forced by annotation svcguard.io/allow-node-port-reassignment: port "tcp" nodePort 30445 -> 30194`,
		},
		{
			name: "escape hatch: a node-port admin user forces a reassignment, with a warning",
			old:  gw(fixtures.Port("tcp", 443, 30445)), new: gw(fixtures.Port("tcp", 443, 30194)), user: "platform-admin",
			wantWarning: "forced by node-port admin user platform-admin",
		},
		{
			name: "escape hatch: a node-port admin group forces a claim, with a warning",
			new:  fixtures.Service("other", "svc", fixtures.Port("http", 80, 30445)), user: "bob", groups: []string{"dev", "platform"},
			wantWarning: "forced by node-port admin group platform",
		},
		{
			name: "the allow annotation with any value but true forces nothing",
			old:  gw(fixtures.Port("tcp", 443, 30445)), new: gw(fixtures.Annotation(AllowAnnotation, "yes"), fixtures.Port("tcp", 443, 30194)),
			wantDenial: "30445 is correctly allocated", wantReassignment: true,
		},
		{
			name: "not a reassignment: changing the type to ClusterIP releases the nodePorts",
			old:  gw(fixtures.Port("tcp", 443, 30445)), new: gw(fixtures.Type(corev1.ServiceTypeClusterIP), fixtures.Port("tcp", 443, 0)),
			wantWarning: "istio-ingress/istio-ingressgateway releases nodePort 30445",
		},
		{
			name: "not a reassignment: changing the type to ExternalName releases the nodePorts",
			old:  gw(fixtures.Port("tcp", 443, 30445), fixtures.Port("http", 80, 30080)), new: gw(fixtures.Type(corev1.ServiceTypeExternalName)),
			wantWarning: "releases nodePort 30445, 30080",
		},
		{
			name:        "not a reassignment: removing a port releases its nodePort",
			old:         fixtures.Service("a", "web", fixtures.Port("http", 80, 31000), fixtures.Port("https", 443, 31443)),
			new:         fixtures.Service("a", "web", fixtures.Port("http", 80, 31000)),
			wantWarning: "a/web releases nodePort 31443",
		},
		{
			name: "not a reassignment: a LoadBalancer that stops allocating nodePorts releases them",
			old:  fixtures.Service("a", "lb", fixtures.Type(corev1.ServiceTypeLoadBalancer), fixtures.Port("http", 80, 31000)),
			new: fixtures.Service("a", "lb", fixtures.Type(corev1.ServiceTypeLoadBalancer), fixtures.Port("http", 80, 0),
				fixtures.ServiceFunc(func(s *corev1.Service) { s.Spec.AllocateLoadBalancerNodePorts = ptr.To(false) })),
			wantWarning: "a/lb releases nodePort 31000",
		},
		{
			name: "an update that keeps every nodePort is allowed silently",
			old:  gw(fixtures.Port("tcp", 443, 30445)), new: gw(fixtures.Annotation("owner", "x"), fixtures.Port("tcp", 443, 30445)),
		},
		{
			name:       "ClusterIP to NodePort: the new nodePorts are judged as claims",
			old:        fixtures.Service("a", "web", fixtures.Type(corev1.ServiceTypeClusterIP), fixtures.Port("http", 80, 0)),
			new:        fixtures.Service("a", "web", fixtures.Port("http", 80, 30445)),
			wantDenial: "30445 is pinned to istio-ingress/istio-ingressgateway:tcp",
		},
	}
	runJudgeCases(t, tests)
}

// assertVerdict checks a verdict: wantDenial is a substring of a denial
// (empty: allowed), wantWarning of a warning (empty: no warning).
func assertVerdict(t *testing.T, v Verdict, wantDenial, wantWarning string, wantReassignment bool) {
	t.Helper()
	if wantDenial == "" {
		assert.True(t, v.Allowed(), "expected allowed, got denials %q", v.Denials)
	} else {
		require.False(t, v.Allowed(), "expected a denial containing %q, got allowed with warnings %q", wantDenial, v.Warnings)
		assert.Contains(t, strings.Join(v.Denials, "\n"), wantDenial, "expected a denial containing the first string, got the second")
		for _, d := range v.Denials {
			assert.NotContains(t, d, "\n", "a denial is one line")
		}
	}
	assert.Equal(t, wantReassignment, v.ReassignmentDenied, "counted as a denied reassignment: expected %v, got %v", wantReassignment, v.ReassignmentDenied)
	if wantWarning == "" {
		assert.Empty(t, v.Warnings, "expected no warning, got %q", v.Warnings)
	} else {
		assert.Contains(t, strings.Join(v.Warnings, "\n"), wantWarning, "expected a warning containing the first string, got the second")
	}
	for _, w := range v.Warnings {
		assert.Less(t, len(w), 120, "warning %q is too long for an HTTP Warning header", w)
	}
}

var (
	tenantSquatter = PortRef{Namespace: "tenant", Name: "squatter", Port: "http"}
	holderWeb      = PortRef{Namespace: "b", Name: "holder", Port: "web"}
	firstPin       = PortRef{Namespace: "b", Name: "first", Port: "http"}
)

// clusterIP is a tenant's ClusterIP Service with one port "http" (no nodePort).
func clusterIP(ns, name string, opts ...fixtures.ServiceOption) *corev1.Service {
	return fixtures.Service(ns, name, append([]fixtures.ServiceOption{fixtures.Type(corev1.ServiceTypeClusterIP), fixtures.Port("http", 80, 0)}, opts...)...)
}

// TestJudgeAnnotationPins proves the authority model at admission: an
// annotation pin is a claim, judged when it is set or changed.
func TestJudgeAnnotationPins(t *testing.T) {
	const howToFix = "; pin a nodePort that is in range, not reserved, not pinned and not held by another Service, or ask a node-port admin (--node-port-admins)"
	const restricted = "annotation svcguard.io/pinned-node-ports denied: on this cluster only node-port admins (--node-port-admins) " +
		"may add, change or remove it (--restrict-pin-annotation); ask one to set the pin, or leave the annotation as it was"
	tests := []judgeCase{
		{
			name:       "issue #10: a tenant's ClusterIP Service pinning a flag-pinned nodePort by annotation is denied, naming the holder",
			new:        clusterIP("tenant", "squatter", fixtures.Annotation(PinAnnotation, "http=30446")),
			wantDenial: "tenant/squatter: annotation svcguard.io/pinned-node-ports pin http=30446 denied: 30446 is pinned to default/pinned:http by --pinned-node-ports" + howToFix,
		},
		{
			name:       "the flag pin's owner that holds its nodePort is named once",
			new:        clusterIP("tenant", "squatter", fixtures.Annotation(PinAnnotation, "http=30446")),
			view:       fakeView{holders: map[int32][]PortRef{30446: {pinnedOwner}}},
			wantDenial: "pin http=30446 denied: 30446 is pinned to default/pinned:http by --pinned-node-ports" + howToFix,
		},
		{
			name:       "the allow annotation does not force a pin claim: anyone who may edit the Service may set it",
			new:        clusterIP("tenant", "squatter", fixtures.Annotation(PinAnnotation, "http=30446"), fixtures.Annotation(AllowAnnotation, "true")),
			wantDenial: "30446 is pinned to default/pinned:http by --pinned-node-ports",
		},
		{
			name:        "a node-port admin forces a pin claim, with a warning",
			new:         clusterIP("tenant", "squatter", fixtures.Annotation(PinAnnotation, "http=30446")),
			user:        "platform-admin",
			wantWarning: "svcguard: forced by node-port admin user platform-admin: pin http=30446",
		},
		{
			name:       "an annotation pin on a port the Service lacks is denied",
			new:        fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "metrics=31001"), fixtures.Port("http", 80, 31000)),
			wantDenial: "a/web: annotation svcguard.io/pinned-node-ports pin metrics=31001 denied: the Service has no port metrics (its ports: http); pin only this Service's ports, by name (by number if unnamed), or remove the pin",
		},
		{
			name: "an unnamed port is pinned by its number",
			new:  fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "80=31000"), fixtures.Port("", 80, 31000)),
		},
		{
			name:       "claim of an out-of-range nodePort is denied",
			new:        clusterIP("a", "web", fixtures.Annotation(PinAnnotation, "http=29000")),
			wantDenial: "a/web: annotation svcguard.io/pinned-node-ports pin http=29000 denied: 29000 is outside range 30000-32767" + howToFix,
		},
		{
			name:       "claim of a reserved nodePort is denied",
			new:        clusterIP("a", "web", fixtures.Annotation(PinAnnotation, "http=30105")),
			wantDenial: "pin http=30105 denied: 30105 is reserved" + howToFix,
		},
		{
			name:       "an annotation cannot re-pin a flag-pinned port elsewhere",
			old:        gw(fixtures.Port("tcp", 443, 30445)),
			new:        gw(fixtures.Annotation(PinAnnotation, "tcp=30500"), fixtures.Port("tcp", 443, 30445)),
			wantDenial: "pin tcp=30500 denied: port tcp is pinned to 30445 by --pinned-node-ports, which an annotation cannot change",
		},
		{
			name: "a flag-pinned port may repeat its flag pin in its annotation",
			old:  gw(fixtures.Port("tcp", 443, 30445)),
			new:  gw(fixtures.Annotation(PinAnnotation, "tcp=30445"), fixtures.Port("tcp", 443, 30445)),
		},
		{
			name:       "claim of a nodePort another Service holds is denied, naming the holder",
			new:        clusterIP("tenant", "grabber", fixtures.Annotation(PinAnnotation, "http=31446")),
			view:       fakeView{holders: map[int32][]PortRef{31446: {holderWeb}}},
			wantDenial: "tenant/grabber: annotation svcguard.io/pinned-node-ports pin http=31446 denied: 31446 is held by b/holder:web" + howToFix,
		},
		{
			name:       "claim of a nodePort another Service pins by annotation is denied, naming that pin",
			new:        clusterIP("tenant", "second", fixtures.Annotation(PinAnnotation, "http=31447")),
			view:       fakeView{pins: map[int32][]PortRef{31447: {firstPin}}},
			wantDenial: "tenant/second: annotation svcguard.io/pinned-node-ports pin http=31447 denied: 31447 is pinned to b/first:http by annotation" + howToFix,
		},
		{
			name: "a pin on a free nodePort is admitted",
			new:  fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31000"), fixtures.Port("http", 80, 31000)),
		},
		{
			name: "the cache's stale copy of the same Service does not count against its own pin",
			old:  fixtures.Service("a", "web", fixtures.Port("http", 80, 31000)),
			new:  fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31000"), fixtures.Port("http", 80, 31000)),
			view: fakeView{holders: map[int32][]PortRef{31000: {{Namespace: "a", Name: "web", Port: "http"}}}},
		},
		{
			name: "unchanged pins on UPDATE are not judged again as claims",
			old:  fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31446"), fixtures.Port("http", 80, 31000)),
			new:  fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31446"), fixtures.Annotation("owner", "x"), fixtures.Port("http", 80, 31000)),
			view: fakeView{holders: map[int32][]PortRef{31446: {holderWeb}}},
		},
		{
			name:       "a changed pin on UPDATE is judged as a claim",
			old:        fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31000"), fixtures.Port("http", 80, 31000)),
			new:        fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31446"), fixtures.Port("http", 80, 31000)),
			view:       fakeView{holders: map[int32][]PortRef{31446: {holderWeb}}},
			wantDenial: "pin http=31446 denied: 31446 is held by b/holder:web",
		},
		{
			name:        "removing a pinned port without its pin is denied",
			old:         fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "https=31443"), fixtures.Port("http", 80, 31000), fixtures.Port("https", 443, 31443)),
			new:         fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "https=31443"), fixtures.Port("http", 80, 31000)),
			wantDenial:  "pin https=31443 denied: the Service has no port https (its ports: http)",
			wantWarning: "a/web releases nodePort 31443",
		},
		{
			name: "a pin that named no port before pins nothing and is left alone",
			old:  fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "metrics=31001"), fixtures.Port("http", 80, 31000)),
			new:  fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "metrics=31001"), fixtures.Annotation("owner", "x"), fixtures.Port("http", 80, 31000)),
		},
		{
			name: "holes found in review: a dormant pin wakes up judged when its port is added, and a held nodePort is denied",
			old:  fixtures.Service("tenant", "t", fixtures.Annotation(PinAnnotation, "metrics=31446"), fixtures.Port("http", 80, 31000)),
			new: fixtures.Service("tenant", "t", fixtures.Annotation(PinAnnotation, "metrics=31446"),
				fixtures.Port("http", 80, 31000), fixtures.Port("metrics", 9090, 31447)),
			view:       fakeView{holders: map[int32][]PortRef{31446: {holderWeb}}},
			wantDenial: "pin metrics=31446 denied: 31446 is held by b/holder:web" + howToFix,
		},
		{
			name: "holes found in review: a ClusterIP Service's pin is dormant, and wakes up judged when the Service starts allocating nodePorts",
			old:  clusterIP("tenant", "t", fixtures.Annotation(PinAnnotation, "http=31446")),
			new: fixtures.Service("tenant", "t", fixtures.Annotation(PinAnnotation, "http=31446"),
				fixtures.Port("http", 80, 31446)),
			view:       fakeView{holders: map[int32][]PortRef{31446: {holderWeb}}},
			wantDenial: "pin http=31446 denied: 31446 is held by b/holder:web" + howToFix,
		},
		{
			name:        "holes found in review: a pin claim waits for synced caches, it is never urgent",
			new:         clusterIP("tenant", "t", fixtures.Annotation(PinAnnotation, "http=31447")),
			view:        fakeView{unsynced: true},
			wantDenial:  "svcguard cannot tell yet who holds or pins 31447 (its caches are not synced); try again in a minute",
			wantWarning: "caches not synced",
		},
		{
			name:             "a pre-existing annotation pin on a flag-pinned nodePort does not let its owner move it",
			old:              fixtures.Service("default", "pinned", fixtures.Port("http", 80, 30446)),
			new:              fixtures.Service("default", "pinned", fixtures.Port("http", 80, 30500)),
			view:             fakeView{pins: map[int32][]PortRef{30446: {tenantSquatter}}},
			wantDenial:       `default/pinned: port "http" nodePort 30446 -> 30500 denied: 30446 is correctly allocated (in range 30000-32767, not reserved, pinned to this port, no hostPort)`,
			wantReassignment: true,
		},
		{
			name: "a malformed pin annotation is denied with the expected syntax",
			new:  fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=abc"), fixtures.Port("http", 80, 31000)),
			wantDenial: `a/web: annotation svcguard.io/pinned-node-ports is malformed: item 1: the nodePort is not a port from 1 to 65535; ` +
				`write it as PORTNAME=NODEPORT[,PORTNAME=NODEPORT...] (PORTNAME: a port's name, or its number if unnamed)`,
		},
		{
			name:       "a pin annotation without '=' is malformed",
			new:        fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http:31000"), fixtures.Port("http", 80, 31000)),
			wantDenial: `item 1 is not PORTNAME=NODEPORT; write it as PORTNAME=NODEPORT[,PORTNAME=NODEPORT...]`,
		},
		{
			name:       "a pin annotation that pins one port twice is malformed",
			new:        fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31000,http=31001"), fixtures.Port("http", 80, 31000)),
			wantDenial: `is malformed: item 2 pins a port that item 1 pins already; write it as PORTNAME=NODEPORT[,PORTNAME=NODEPORT...]`,
		},
		{
			name:       "restricted: a non-admin adding the pin annotation is denied, saying who may",
			restrict:   true,
			new:        fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31000"), fixtures.Port("http", 80, 31000)),
			user:       "dev",
			wantDenial: "a/web: " + restricted,
		},
		{
			name:       "restricted: a non-admin changing the pin annotation is denied",
			restrict:   true,
			old:        fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31000"), fixtures.Port("http", 80, 31000)),
			new:        fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31001"), fixtures.Port("http", 80, 31000)),
			user:       "dev",
			wantDenial: restricted,
		},
		{
			name:       "restricted: a non-admin removing the pin annotation is denied",
			restrict:   true,
			old:        fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31000"), fixtures.Port("http", 80, 31000)),
			new:        fixtures.Service("a", "web", fixtures.Port("http", 80, 31000)),
			user:       "dev",
			wantDenial: restricted,
		},
		{
			name:       "restricted: the allow annotation does not lift the restriction",
			restrict:   true,
			new:        fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31000"), fixtures.Annotation(AllowAnnotation, "true"), fixtures.Port("http", 80, 31000)),
			user:       "dev",
			wantDenial: restricted,
		},
		{
			name:     "restricted: a non-admin's change that keeps the pin annotation is allowed",
			restrict: true,
			old:      fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31000"), fixtures.Port("http", 80, 31000)),
			new:      fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31000"), fixtures.Annotation("owner", "x"), fixtures.Port("http", 80, 31000)),
			user:     "dev",
		},
		{
			name:     "restricted: respelling the annotation to the same pins is no change",
			restrict: true,
			old:      fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31000,https=31443"), fixtures.Port("http", 80, 31000), fixtures.Port("https", 443, 31443)),
			new:      fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, " https = 31443, http=31000"), fixtures.Port("http", 80, 31000), fixtures.Port("https", 443, 31443)),
			user:     "dev",
		},
		{
			name:     "restricted: a node-port admin group may add the pin annotation",
			restrict: true,
			new:      fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "http=31000"), fixtures.Port("http", 80, 31000)),
			user:     "bob", groups: []string{"platform"},
		},
		{
			name:        "restricted: an admin's pin is still a claim, forced with a warning",
			restrict:    true,
			new:         clusterIP("tenant", "squatter", fixtures.Annotation(PinAnnotation, "http=30446")),
			user:        "platform-admin",
			wantWarning: "forced by node-port admin user platform-admin: pin http=30446",
		},
	}
	runJudgeCases(t, tests)
}

// TestAssessPinAuthority proves how conflicting pins settle (resolvePins):
// a flag pin outranks every annotation pin, and of conflicting annotation
// pins only the holder's counts; a pin that loses counts for nothing.
func TestAssessPinAuthority(t *testing.T) {
	tests := []struct {
		name string
		svc  *corev1.Service
		view fakeView
		// wantReasons are the broken rules of the Service's first port; nil: correct.
		wantReasons []string
		// wantHeld is a rule that holds, as Assessment.Held says it.
		wantHeld string
	}{
		{
			name:     "a flag pin outranks another Service's annotation pin on the same nodePort",
			svc:      fixtures.Service("default", "pinned", fixtures.Port("http", 80, 30446)),
			view:     fakeView{pins: map[int32][]PortRef{30446: {tenantSquatter}}},
			wantHeld: "pinned to this port",
		},
		{
			name: "several pre-existing annotation pins on a flag-pinned nodePort still do not weaken it",
			svc:  fixtures.Service("default", "pinned", fixtures.Port("http", 80, 30446)),
			view: fakeView{pins: map[int32][]PortRef{30446: {tenantSquatter, firstPin}},
				holders: map[int32][]PortRef{30446: {pinnedOwner}}},
			wantHeld: "pinned to this port",
		},
		{
			name:     "a flag pin outranks the port's own annotation pin",
			svc:      gw(fixtures.Annotation(PinAnnotation, "tcp=30500"), fixtures.Port("tcp", 443, 30445)),
			wantHeld: "pinned to this port",
		},
		{
			name:     "an annotation pin on a port the Service lacks pins nothing",
			svc:      fixtures.Service("a", "web", fixtures.Annotation(PinAnnotation, "metrics=31000"), fixtures.Port("http", 80, 31000)),
			wantHeld: "not pinned elsewhere",
		},
		{
			name:     "of two annotation pins on one nodePort, the one whose port holds it counts",
			svc:      fixtures.Service("b", "holder", fixtures.Annotation(PinAnnotation, "web=31500"), fixtures.Port("web", 80, 31500)),
			view:     fakeView{pins: map[int32][]PortRef{31500: {{Namespace: "c", Name: "late", Port: "http"}}}},
			wantHeld: "pinned to this port",
		},
		{
			name:     "the losing annotation pin pins nothing, not even its own port",
			svc:      fixtures.Service("c", "late", fixtures.Annotation(PinAnnotation, "http=31500"), fixtures.Port("http", 80, 31600)),
			view:     fakeView{pins: map[int32][]PortRef{31500: {holderWeb}}, holders: map[int32][]PortRef{31500: {holderWeb}}},
			wantHeld: "not pinned elsewhere",
		},
		{
			name:     "two annotation pins on a nodePort neither holds: neither counts against its holder",
			svc:      fixtures.Service("c", "squatter", fixtures.Port("http", 80, 31700)),
			view:     fakeView{pins: map[int32][]PortRef{31700: {{Namespace: "d", Name: "x", Port: "http"}, {Namespace: "e", Name: "y", Port: "http"}}}},
			wantHeld: "not pinned elsewhere",
		},
		{
			name: "a lone annotation pin does not count against the Service that holds its nodePort: the holder stays correct",
			svc:  fixtures.Service("c", "holder", fixtures.Port("http", 80, 31500)),
			view: fakeView{pins: map[int32][]PortRef{31500: {{Namespace: "b", Name: "db", Port: "pg"}}}},
		},
		{
			name:        "an uncontested annotation pin still counts for its own port (rule 4)",
			svc:         fixtures.Service("b", "db", fixtures.Annotation(PinAnnotation, "pg=31500"), fixtures.Port("pg", 5432, 31501)),
			wantReasons: []string{"pin-mismatch"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := testGuard().Assess(tc.svc, tc.svc.Spec.Ports[0], tc.svc.Spec.Ports[0].NodePort, tc.view)
			assert.Equal(t, tc.wantReasons, a.Reasons, "broken rules: expected %v, got %v (%v)", tc.wantReasons, a.Reasons, a.Broken)
			if tc.wantHeld != "" {
				assert.Contains(t, a.Held, tc.wantHeld, "expected %q among the rules that held, got %v", tc.wantHeld, a.Held)
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
		{"restricted pin annotation without admins", Options{NodePortRange: "30000-32767", RestrictPinAnnotation: true}, "--restrict-pin-annotation needs --node-port-admins"},
		{"restricted pin annotation with admins", Options{NodePortRange: "30000-32767", RestrictPinAnnotation: true, NodePortAdmins: []string{"group:platform"}}, ""},
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
	g, err := o.Guard()
	require.NoError(t, err)
	assert.Equal(t, map[PortRef]int32{gateway: 30445}, g.DynamicBandPins(), "30445 is above the static band 30000-30085; 30050 is inside it")
}
