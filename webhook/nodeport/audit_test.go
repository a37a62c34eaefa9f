package nodeport

import (
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
)

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

// TestAuditReportsPinConflicts: the audit reports every annotation pin that
// loses a conflict, and only those, on the Service that carries it.
func TestAuditReportsPinConflicts(t *testing.T) {
	v, tr := newIndexerView()
	for _, s := range []*corev1.Service{
		service("default", "pinned", port("http", 80, 30446)),
		clusterIP("tenant", "squatter", annotate(PinAnnotation, "http=30446")),
		service("b", "holder", annotate(PinAnnotation, "web=31500"), port("web", 80, 31500)),
		service("c", "late", annotate(PinAnnotation, "http=31500"), port("http", 80, 31600)),
		clusterIP("d", "x", annotate(PinAnnotation, "http=31700")),
		clusterIP("e", "y", annotate(PinAnnotation, "http=31700")),
		service("f", "squat", port("http", 80, 31700)),
		service("g", "dangling", annotate(PinAnnotation, "metrics=31800"), port("http", 80, 31900)),
	} {
		add(t, v.services, tr.service, s)
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
	assert.Equal(t, want, got, "findings: expected the losing pins only (not default/pinned, b/holder, f/squat, g/dangling)")
}
