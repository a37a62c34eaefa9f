package nodeport_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/podwatch"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/nodeport"
)

func findingsFor(a *nodeport.Audit, service string) []nodeport.Finding {
	var out []nodeport.Finding
	for _, f := range a.Findings() {
		if f.Service == service {
			out = append(out, f)
		}
	}
	return out
}

// startAudit runs an audit of guard on caches of its own until ctx ends, as
// user, with exactly the RBAC the manifests ship. Only changes trigger its
// passes: the interval is an hour.
func startAudit(t *testing.T, ctx context.Context, guard *nodeport.Guard, user string) *nodeport.Audit {
	t.Helper()
	svcguard := suite.Env.ShippedRBACConfig(t, user, testenv.DefaultOverlay, "svcguard")
	cs, err := kubernetes.NewForConfig(svcguard)
	require.NoError(t, err)
	pods := podwatch.New(cs)
	caches, err := nodeport.NewCaches(cs, pods, guard.Range)
	require.NoError(t, err)
	go func() { _ = pods.Start(ctx) }()
	go func() { _ = caches.Start(ctx) }()
	audit := nodeport.NewAudit(guard, caches, cs, testenv.Recorder(t, ctx, svcguard), time.Hour, logr.Discard())
	go func() { _ = audit.Start(ctx) }()
	return audit
}

// waitOneEvent waits until the Service namespace/name has exactly one Event
// with reason, and returns it; why (formatted with reason) says which.
func waitOneEvent(t *testing.T, namespace, name, reason, why string) eventsv1.Event {
	t.Helper()
	var event eventsv1.Event
	require.Eventually(t, func() bool {
		found := suite.Env.Events(t, namespace, name, reason)
		if len(found) > 0 {
			event = found[0]
		}
		return len(found) == 1
	}, 20*time.Second, 100*time.Millisecond, why, reason)
	return event
}

// TestEnvtestAuditReportsANodePortPinnedToAnotherService: a Service took a
// nodePort before the guard knew it is pinned to another Service; the
// audit, judging by the guard's own rules, reports it with an Event and the
// gauge, and forgets it once the Service is gone.
func TestEnvtestAuditReportsANodePortPinnedToAnotherService(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := suite.Env.Namespace(t, nil)
	legacy := fixtures.Service(ns, "legacy", fixtures.Port("https", 443, 30600))
	require.NoError(t, suite.Env.Client.Create(ctx, legacy), "the guard serving the suite knows no pin on 30600")

	guard := suiteGuard(t)
	guard.Pins.Add(nodeport.PortRef{Namespace: ns, Name: "gateway", Port: "https"}, 30600) // the pin arrives later
	audit := startAudit(t, ctx, guard, "svcguard-node-port-audit")

	event := waitOneEvent(t, ns, "legacy", nodeport.IncorrectReason, "the audit writes one %s Event on the Service")
	assert.Equal(t, corev1.EventTypeWarning, event.Type)
	assert.Contains(t, event.Note, `port "https" nodePort 30600 is not correctly allocated: pinned to `+ns+"/gateway:https")
	require.Len(t, findingsFor(audit, ns+"/legacy"), 1)
	assert.Equal(t, []string{"pinned-elsewhere"}, findingsFor(audit, ns+"/legacy")[0].Reasons)
	pinnedElsewhere := func() float64 { return nodePortsIncorrect(t, "pinned-elsewhere") }
	require.GreaterOrEqual(t, pinnedElsewhere(), 1.0, "svcguard_node_ports_incorrect{reason=pinned-elsewhere} counts it")
	before := pinnedElsewhere()

	require.NoError(t, suite.Env.Client.Delete(ctx, legacy))
	require.Eventually(t, func() bool { return pinnedElsewhere() == before-1 }, 20*time.Second, 100*time.Millisecond,
		"a change triggers a pass: the deleted Service is no longer counted")
	assert.Empty(t, findingsFor(audit, ns+"/legacy"))
}

// TestEnvtestAuditReportsAPreExistingPinConflict: a tenant's annotation pin
// on 30601 was set before 30601 was flag-pinned to the gateway (the flag pin
// arrives later, as in an upgrade). The audit reports the tenant's pin as a
// pin-conflict, with an Event on the tenant's Service, and the pin never
// makes the gateway's nodePort incorrect.
func TestEnvtestAuditReportsAPreExistingPinConflict(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := suite.Env.Namespace(t, nil)
	tenant := fixtures.Service(ns, "tenant", fixtures.Port("http", 80, 0), fixtures.Annotation(nodeport.PinAnnotation, "http=30601"))
	require.NoError(t, suite.Env.Client.Create(ctx, tenant), "30601 is free and pinned by no flag the suite's guard knows: a fine claim")
	// The suite's guard sees 30601 pinned by the tenant's annotation: a
	// node-port admin makes the gateway take it by force, as a Service
	// created while svcguard was down would.
	gateway := fixtures.Service(ns, "gateway", fixtures.Port("https", 443, 30601))
	require.NoError(t, asNodePortAdmin(t).Create(ctx, gateway))

	guard := suiteGuard(t)
	guard.Pins.Add(nodeport.PortRef{Namespace: ns, Name: "gateway", Port: "https"}, 30601) // the flag pin arrives later
	audit := startAudit(t, ctx, guard, "svcguard-node-port-audit-pins")

	event := waitOneEvent(t, ns, "tenant", nodeport.PinConflictReason, "the audit writes one %s Event on the Service carrying the losing pin")
	assert.Equal(t, corev1.EventTypeWarning, event.Type)
	assert.Contains(t, event.Note, `port "http" annotation pin 30601 (svcguard.io/pinned-node-ports) pins nothing: `+
		`30601 is pinned to `+ns+`/gateway:https by --pinned-node-ports, which outranks the annotation`)

	got := findingsFor(audit, ns+"/tenant")
	require.Len(t, got, 1, "one finding for the tenant: its pin")
	assert.Equal(t, []string{nodeport.PinConflict}, got[0].Reasons)
	assert.EqualValues(t, 30601, got[0].Pin)
	assert.Empty(t, findingsFor(audit, ns+"/gateway"), "the tenant's pin does not make the gateway's flag-pinned nodePort incorrect")
	assert.Empty(t, suite.Env.Events(t, ns, "gateway", nodeport.IncorrectReason), "no Event on the gateway")
	assert.GreaterOrEqual(t, nodePortsIncorrect(t, nodeport.PinConflict), 1.0,
		"svcguard_node_ports_incorrect{reason=pin-conflict} counts it")
}
