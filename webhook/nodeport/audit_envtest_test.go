package nodeport

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/svcguard/svcguard/pkg/testenv"
)

func findingsFor(a *Audit, service string) []Finding {
	var out []Finding
	for _, f := range a.Findings() {
		if f.Service == service {
			out = append(out, f)
		}
	}
	return out
}

// TestEnvtestAuditReportsANodePortPinnedToAnotherService: a Service took a
// nodePort before the guard knew it is pinned to another Service; the
// audit, judging by the guard's own rules, reports it with an Event and the
// gauge, and forgets it once the Service is gone.
func TestEnvtestAuditReportsANodePortPinnedToAnotherService(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := suite.Env.Namespace(t, nil)
	legacy := nodePortService(ns, "legacy", "https", 30600)
	require.NoError(t, suite.Env.Client.Create(ctx, legacy), "the guard serving the suite knows no pin on 30600")

	guard := testGuard()
	guard.Pins.Add(PortRef{Namespace: ns, Name: "gateway", Port: "https"}, 30600) // the pin arrives later
	// The audit runs with exactly the RBAC the manifests ship.
	svcguard := suite.Env.ShippedRBACConfig(t, "svcguard-node-port-audit", "rbac.yaml")
	cs, err := kubernetes.NewForConfig(svcguard)
	require.NoError(t, err)
	caches, err := NewCaches(cs, guard.Range)
	require.NoError(t, err)
	go func() { _ = caches.Start(ctx) }()
	recorder, err := testenv.Recorder(ctx, svcguard)
	require.NoError(t, err)
	audit := NewAudit(guard, caches, cs, recorder, time.Hour, logr.Discard()) // only changes trigger passes here
	go func() { _ = audit.Start(ctx) }()

	var event eventsv1.Event
	require.Eventually(t, func() bool {
		found := suite.Env.Events(t, ns, "legacy", IncorrectReason)
		if len(found) > 0 {
			event = found[0]
		}
		return len(found) == 1
	}, 20*time.Second, 100*time.Millisecond, "the audit writes one %s Event on the Service", IncorrectReason)
	assert.Equal(t, corev1.EventTypeWarning, event.Type)
	assert.Contains(t, event.Note, `port "https" nodePort 30600 is not correctly allocated: pinned to `+ns+"/gateway:https")
	require.Len(t, findingsFor(audit, ns+"/legacy"), 1)
	assert.Equal(t, []string{"pinned-elsewhere"}, findingsFor(audit, ns+"/legacy")[0].Reasons)
	pinnedElsewhere := func() float64 { return testutil.ToFloat64(nodePortsIncorrect.WithLabelValues("pinned-elsewhere")) }
	require.GreaterOrEqual(t, pinnedElsewhere(), 1.0, "svcguard_node_ports_incorrect{reason=pinned-elsewhere} counts it")
	before := pinnedElsewhere()

	require.NoError(t, suite.Env.Client.Delete(ctx, legacy))
	require.Eventually(t, func() bool { return pinnedElsewhere() == before-1 }, 20*time.Second, 100*time.Millisecond,
		"a change triggers a pass: the deleted Service is no longer counted")
	assert.Empty(t, findingsFor(audit, ns+"/legacy"))
}

func TestAuditFindingsUseTheGuardsRules(t *testing.T) {
	v, tr := newIndexerView()
	for _, s := range []*corev1.Service{
		service("a", "ok", port("http", 80, 31000)),
		service("a", "reserved", port("http", 80, 30105)),
		service("a", "outside", port("http", 80, 29999)),
		service("b", "db", annotate(PinAnnotation, "pg=31500"), port("pg", 5432, 31501)),
		service("c", "squatter", port("http", 80, 30445)),
	} {
		add(t, v.services, tr.service, s)
	}
	a := NewAudit(testGuard(), v.caches(), nil, nil, time.Minute, logr.Discard())
	got := map[string][]string{}
	for _, f := range a.Findings() {
		got[f.Service+":"+f.Port] = f.Reasons
	}
	assert.Equal(t, map[string][]string{
		`a/reserved:"http"`: {"reserved"},
		`a/outside:"http"`:  {"out-of-range"},
		`b/db:"pg"`:         {"pin-mismatch"},
		`c/squatter:"http"`: {"pinned-elsewhere"},
	}, got)
}
