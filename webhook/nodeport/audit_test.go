package nodeport

import (
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"

	"github.com/svcguard/svcguard/pkg/fixtures"
)

func TestAuditFindingsUseTheGuardsRules(t *testing.T) {
	v := newIndexerView(t)
	for _, s := range []*corev1.Service{
		fixtures.Service("a", "ok", fixtures.Port("http", 80, 31000)),
		fixtures.Service("a", "reserved", fixtures.Port("http", 80, 30105)),
		fixtures.Service("a", "outside", fixtures.Port("http", 80, 29999)),
		fixtures.Service("b", "db", fixtures.Annotation(PinAnnotation, "pg=31500"), fixtures.Port("pg", 5432, 31501)),
		fixtures.Service("c", "squatter", fixtures.Port("http", 80, 30445)),
	} {
		v.addService(t, s)
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

// TestAuditReportsPinConflicts: the audit reports every annotation pin that
// loses a conflict, and only those, on the Service that carries it.
func TestAuditReportsPinConflicts(t *testing.T) {
	v := newIndexerView(t)
	for _, s := range []*corev1.Service{
		fixtures.Service("default", "pinned", fixtures.Port("http", 80, 30446)),
		fixtures.Service("tenant", "squatter", fixtures.Annotation(PinAnnotation, "http=30446"), fixtures.Port("http", 80, 31001)),
		fixtures.Service("b", "holder", fixtures.Annotation(PinAnnotation, "web=31500"), fixtures.Port("web", 80, 31500)),
		fixtures.Service("c", "late", fixtures.Annotation(PinAnnotation, "http=31500"), fixtures.Port("http", 80, 31600)),
		fixtures.Service("d", "x", fixtures.Annotation(PinAnnotation, "http=31700"), fixtures.Port("http", 80, 31701)),
		fixtures.Service("e", "y", fixtures.Annotation(PinAnnotation, "http=31700"), fixtures.Port("http", 80, 31702)),
		// A Service without nodePorts pins nothing, so it conflicts with nothing.
		clusterIP("h", "dormant", fixtures.Annotation(PinAnnotation, "http=31700")),
		fixtures.Service("f", "squat", fixtures.Port("http", 80, 31700)),
		fixtures.Service("g", "dangling", fixtures.Annotation(PinAnnotation, "metrics=31800"), fixtures.Port("http", 80, 31900)),
	} {
		v.addService(t, s)
	}
	a := NewAudit(testGuard(), v.caches(), nil, nil, time.Minute, logr.Discard())
	got := map[string]string{}
	for _, f := range a.Findings() {
		got[f.key()] = strings.Join(f.Reasons, ",") + ": " + f.problem()
	}
	want := map[string]string{
		`tenant/squatter:"http" pin 30446`: `pin-conflict: port "http" annotation pin 30446 (svcguard.io/pinned-node-ports) pins nothing: ` +
			`30446 is pinned to default/pinned:http by --pinned-node-ports, which outranks the annotation`,
		`c/late:"http" pin 31500`: `pin-conflict: port "http" annotation pin 31500 (svcguard.io/pinned-node-ports) pins nothing: ` +
			`31500 is also pinned to b/holder:web, which holds it`,
		`d/x:"http" pin 31700`: `pin-conflict: port "http" annotation pin 31700 (svcguard.io/pinned-node-ports) pins nothing: ` +
			`31700 is also pinned to e/y:http, and no pinned port holds it`,
		`e/y:"http" pin 31700`: `pin-conflict: port "http" annotation pin 31700 (svcguard.io/pinned-node-ports) pins nothing: ` +
			`31700 is also pinned to d/x:http, and no pinned port holds it`,
	}
	assert.Equal(t, want, got, "findings: expected the losing pins only (not default/pinned, b/holder, f/squat, g/dangling, h/dormant)")
}
