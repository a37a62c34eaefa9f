package monitoring_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/metrics"
	"github.com/svcguard/svcguard/pkg/testenv"
)

// The webhooks svcguard's rules and dashboard name are exported under the
// names of the shipped configurations; these stand-ins, pointing at a port
// where nothing listens, make the API server fail open and fail closed.
const (
	failOpenWebhook   = "fail-open.monitoring.svcguard.test"
	failClosedWebhook = "fail-closed.monitoring.svcguard.test"
)

// targetLabels are the labels Prometheus (with prometheus-operator's
// ServiceMonitor discovery) adds to every series it scrapes.
var targetLabels = []string{"job", "instance", "namespace", "service", "endpoint", "pod", "container"}

// family is what a query may select of one exported metric family.
type family struct {
	kind   dto.MetricType
	labels map[string]bool
}

// catalogue holds every metric family known to be exported, by name.
type catalogue map[string]*family

func (c catalogue) add(name string, kind dto.MetricType, labels ...string) {
	f := c[name]
	if f == nil {
		f = &family{kind: kind, labels: map[string]bool{}}
		c[name] = f
	}
	for _, l := range append(labels, targetLabels...) {
		f.labels[l] = true
	}
}

func (c catalogue) addFamilies(families []*dto.MetricFamily) {
	for _, mf := range families {
		var labels []string
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName())
			}
		}
		c.add(mf.GetName(), mf.GetType(), labels...)
	}
}

// resolve finds the family a selected series name belongs to: the name
// itself, or for a histogram's _bucket, _sum and _count series (a summary's
// _sum and _count) its base name. The series' labels come with it: le on a
// bucket, quantile on a summary.
func (c catalogue) resolve(name string) (*family, bool) {
	if f, ok := c[name]; ok {
		return f, true
	}
	for suffix, kinds := range map[string][]dto.MetricType{
		"_bucket": {dto.MetricType_HISTOGRAM},
		"_sum":    {dto.MetricType_HISTOGRAM, dto.MetricType_SUMMARY},
		"_count":  {dto.MetricType_HISTOGRAM, dto.MetricType_SUMMARY},
	} {
		base, ok := strings.CutSuffix(name, suffix)
		if f := c[base]; ok && f != nil && slices.Contains(kinds, f.kind) {
			series := &family{kind: f.kind, labels: map[string]bool{}}
			for l := range f.labels {
				series.labels[l] = true
			}
			series.labels["le"] = suffix == "_bucket"
			series.labels["quantile"] = f.kind == dto.MetricType_SUMMARY
			return series, true
		}
	}
	return nil, false
}

// query is one shipped PromQL expression and where it is shipped.
type query struct{ where, expr string }

// TestShippedQueriesNameExportedMetrics reads the alert expressions and the
// dashboard queries as manifests/overlays/monitoring installs them, and
// checks every metric they select, and every label they match on, against
// what svcguard registers and the in-process server exports, and what a
// real API server exports after it called both webhooks, counted a
// rejection, failed open and failed closed.
func TestShippedQueriesNameExportedMetrics(t *testing.T) {
	known := catalogue{}
	addSvcguardCollectors(t, known)
	causeAdmissionMetrics(t)
	inProcess, err := crmetrics.Registry.Gather()
	require.NoError(t, err, "gathering the in-process server's metrics")
	known.addFamilies(inProcess)
	known.addFamilies(apiServerMetrics(t))
	// up is Prometheus's own series for every scrape target.
	known.add("up", dto.MetricType_GAUGE)

	queries := append(shippedRules(t), shippedDashboardQueries(t)...)
	for _, q := range queries {
		sels, err := selectors(q.expr)
		if err != nil {
			t.Errorf("%s: cannot tokenize %q: %v", q.where, q.expr, err)
			continue
		}
		if len(sels) == 0 {
			t.Errorf("%s: %q selects no metric at all", q.where, q.expr)
		}
		reported := map[string]bool{} // an expression may select one metric several times: one report each
		for _, s := range sels {
			f, ok := known.resolve(s.Metric)
			if !ok {
				if !reported[s.Metric] {
					t.Errorf("%s: %q names metric %s, which neither svcguard nor the API server exports", q.where, q.expr, s.Metric)
				}
				reported[s.Metric] = true
				continue
			}
			for _, l := range s.Labels {
				if !f.labels[l] && !reported[s.Metric+"{"+l] {
					t.Errorf("%s: %q matches label %s of %s, which that metric does not carry", q.where, q.expr, l, s.Metric)
					reported[s.Metric+"{"+l] = true
				}
			}
		}
	}
	t.Logf("checked %d shipped queries against %d exported metric families", len(queries), len(known))
}

// addSvcguardCollectors adds every collector pkg/metrics.Register registers,
// on a fresh registry, by its descriptors: a labelled metric that has no
// series yet (the audits' gauges before a pass) is still exported by name.
func addSvcguardCollectors(t *testing.T, known catalogue) {
	t.Helper()
	rec := &recorder{Registerer: prometheus.NewPedanticRegistry()}
	require.NoError(t, metrics.Register(rec))
	require.NotEmpty(t, rec.collectors)
	// client_golang keeps a descriptor's name and labels unexported; its String form is the one way to read them.
	descRE := regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}\}$`)
	for _, c := range rec.collectors {
		kind := collectorKind(c)
		descs := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(descs); close(descs) }()
		for d := range descs {
			m := descRE.FindStringSubmatch(d.String())
			require.NotNil(t, m, "cannot read the name of %s", d)
			var labels []string
			for _, l := range strings.Split(m[2], ",") {
				labels = append(labels, strings.SplitN(l, "=", 2)[0])
			}
			for _, l := range strings.Split(m[3], ",") {
				labels = append(labels, strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"))
			}
			known.add(m[1], kind, labels...)
		}
	}
}

// collectorKind tells histograms and summaries (whose series have suffixes)
// from the rest: a vector by its type, a single metric by what it writes
// (prometheus.Histogram and prometheus.Summary are the same interface).
func collectorKind(c prometheus.Collector) dto.MetricType {
	switch c.(type) {
	case *prometheus.HistogramVec:
		return dto.MetricType_HISTOGRAM
	case *prometheus.SummaryVec:
		return dto.MetricType_SUMMARY
	}
	kind := dto.MetricType_UNTYPED
	series := make(chan prometheus.Metric, 16)
	go func() { c.Collect(series); close(series) }()
	for m := range series {
		var written dto.Metric
		if m.Write(&written) != nil {
			continue
		}
		switch {
		case written.Histogram != nil:
			kind = dto.MetricType_HISTOGRAM
		case written.Summary != nil:
			kind = dto.MetricType_SUMMARY
		}
	}
	return kind
}

// recorder registers on a real registry (which rejects what a real one
// would) and keeps the collectors.
type recorder struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	r.collectors = append(r.collectors, c)
	return nil
}

// causeAdmissionMetrics makes the API server call both of svcguard's
// webhooks (a patched Pod, an allowed Service, a denied Service), and fail
// open and fail closed on two webhooks that nothing answers, so that every
// apiserver_admission_webhook_* family has a series.
func causeAdmissionMetrics(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	env := suite.Env
	ns := env.Namespace(t, nil)

	pod := fixtures.Pod(ns, "web", fixtures.Container("app", "nginx"))
	require.NoError(t, env.Client.Create(ctx, pod), "the service-host webhook admits the Pod")
	require.NotEmpty(t, fixtures.Envs(pod)["app"], "the service-host webhook patched the Pod")
	require.NoError(t, env.Client.Create(ctx, fixtures.Service(ns, "allowed", fixtures.Port("http", 80, 0))))
	err := env.Client.Create(ctx, fixtures.Service(ns, "reserved", fixtures.Port("http", 80, reservedNodePort)))
	require.True(t, apierrors.IsForbidden(err), "the node-port guard denies a reserved nodePort, got %v", err)

	closed, err := testenv.FreeAddress()
	require.NoError(t, err)
	unreachable := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "monitoring-unreachable"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{
			unreachableWebhook(failOpenWebhook, closed, ns, "configmaps", admissionregistrationv1.Ignore),
			unreachableWebhook(failClosedWebhook, closed, ns, "secrets", admissionregistrationv1.Fail),
		},
	}
	require.NoError(t, env.Client.Create(ctx, unreachable))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), unreachable) })

	// The API server picks up a new configuration within a moment: retry until each webhook was called.
	require.Eventually(t, func() bool {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "fail-open-"}}
		if err := env.Client.Create(ctx, cm); err != nil {
			return false
		}
		return hasSeries(apiServerMetrics(t), "apiserver_admission_webhook_fail_open_count", "name", failOpenWebhook)
	}, 30*time.Second, 200*time.Millisecond, "the API server never failed open on %s", failOpenWebhook)
	require.Eventually(t, func() bool {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "fail-closed-"}}
		err := env.Client.Create(ctx, secret)
		return err != nil && strings.Contains(err.Error(), "failed calling webhook")
	}, 30*time.Second, 200*time.Millisecond, "the API server never failed closed on %s", failClosedWebhook)

	// The policy twin, evaluated once: apiserver_mutating_admission_policy_check_total gets its series.
	twin := testenv.PolicyTwin(t, "203.0.113.99", "6443")
	require.NoError(t, testenv.Apply(ctx, env.Config, twin, false))
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: testenv.PolicyTwinName}})
	})
	require.Eventually(t, func() bool {
		probe := fixtures.Pod(ns, "probe", fixtures.Container("app", "nginx"))
		if err := env.Client.Create(ctx, probe, client.DryRunAll); err != nil {
			return false
		}
		return hasSeries(apiServerMetrics(t), "apiserver_mutating_admission_policy_check_total", "policy", testenv.PolicyTwinName)
	}, 30*time.Second, 200*time.Millisecond, "the API server never evaluated the policy twin")

	families := apiServerMetrics(t)
	for _, name := range []string{"service-host.svcguard.io", "node-port-guard.svcguard.io"} {
		assert.True(t, hasSeries(families, "apiserver_admission_webhook_request_total", "name", name), "the API server counted no call to %s", name)
		assert.True(t, hasSeries(families, "apiserver_admission_webhook_admission_duration_seconds", "name", name), "the API server timed no call to %s", name)
	}
	assert.True(t, hasSeries(families, "apiserver_admission_webhook_rejection_count", "name", "node-port-guard.svcguard.io"), "the API server counted no denial")
	assert.True(t, hasSeries(families, "apiserver_admission_webhook_rejection_count", "name", failClosedWebhook), "the API server counted no failed call under Fail")
}

// unreachableWebhook calls https://addr/ (where nothing listens) for CREATE
// of resource in namespace ns only.
func unreachableWebhook(name, addr, ns, resource string, policy admissionregistrationv1.FailurePolicyType) admissionregistrationv1.ValidatingWebhook {
	u := (&url.URL{Scheme: "https", Host: addr, Path: "/"}).String()
	none := admissionregistrationv1.SideEffectClassNone
	timeout := int32(2)
	return admissionregistrationv1.ValidatingWebhook{
		Name:                    name,
		ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &u},
		AdmissionReviewVersions: []string{"v1"},
		SideEffects:             &none,
		FailurePolicy:           &policy,
		TimeoutSeconds:          &timeout,
		Rules: []admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{resource}},
		}},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}},
	}
}

// apiServerMetrics scrapes the API server's /metrics as a cluster admin.
func apiServerMetrics(t *testing.T) []*dto.MetricFamily {
	t.Helper()
	cs, err := kubernetes.NewForConfig(suite.Env.Config)
	require.NoError(t, err)
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	require.NoError(t, err, "GET /metrics from the API server")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	byName, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	require.NoError(t, err, "parsing the API server's /metrics")
	out := make([]*dto.MetricFamily, 0, len(byName))
	for _, mf := range byName {
		out = append(out, mf)
	}
	return out
}

// hasSeries reports whether family has a series whose label is value (the
// API server labels its webhook metrics by "name", its policy metrics by
// "policy").
func hasSeries(families []*dto.MetricFamily, family, label, value string) bool {
	for _, mf := range families {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return true
				}
			}
		}
	}
	return false
}

// prometheusRule is the part of a PrometheusRule this suite reads.
type prometheusRule struct {
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Labels      map[string]string `json:"labels"`
				Record      string            `json:"record"`
				Expr        string            `json:"expr"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// shippedPrometheusRule is the PrometheusRule svcguard as the monitoring
// overlay installs it.
func shippedPrometheusRule(t *testing.T) prometheusRule {
	t.Helper()
	for _, u := range testenv.Rendered(t, monitoringOverlay) {
		if u.GetKind() == "PrometheusRule" && u.GetName() == "svcguard" {
			var rule prometheusRule
			require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &rule))
			require.NotEmpty(t, rule.Spec.Groups, "the PrometheusRule has no groups")
			return rule
		}
	}
	t.Fatalf("manifests/overlays/%s installs no PrometheusRule svcguard", monitoringOverlay)
	return prometheusRule{}
}

func shippedRules(t *testing.T) []query {
	t.Helper()
	var out []query
	for _, g := range shippedPrometheusRule(t).Spec.Groups {
		for _, r := range g.Rules {
			out = append(out, query{where: fmt.Sprintf("PrometheusRule group %s rule %s%s", g.Name, r.Alert, r.Record), expr: r.Expr})
		}
	}
	return out
}

// dashboardPanel is the part of a Grafana panel this suite reads; rows
// hold their panels when collapsed.
type dashboardPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

// shippedDashboardQueries are the queries of the dashboard in the
// ConfigMap svcguard-dashboard as the monitoring overlay installs it.
func shippedDashboardQueries(t *testing.T) []query {
	t.Helper()
	var dashboard struct {
		Panels []dashboardPanel `json:"panels"`
	}
	var cm corev1.ConfigMap
	testenv.Shipped(t, monitoringOverlay, "ConfigMap", "svcguard-dashboard", &cm)
	require.Equal(t, "1", cm.Labels["grafana_dashboard"], "Grafana's sidecar loads only ConfigMaps labelled grafana_dashboard=1")
	require.NoError(t, json.Unmarshal([]byte(cm.Data["svcguard.json"]), &dashboard), "the dashboard is not JSON")
	var out []query
	var walk func([]dashboardPanel)
	walk = func(panels []dashboardPanel) {
		for _, p := range panels {
			for _, target := range p.Targets {
				out = append(out, query{where: fmt.Sprintf("dashboard panel %q", p.Title), expr: target.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(dashboard.Panels)
	require.NotEmpty(t, out, "the dashboard has no queries")
	return out
}

// TestRunbooks checks that every shipped alert names a severity and links a
// section of docs/runbooks.md that exists.
func TestRunbooks(t *testing.T) {
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "runbooks.md"))
	require.NoError(t, err)
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if heading, ok := strings.CutPrefix(line, "## "); ok {
			anchors[strings.ToLower(strings.TrimSpace(heading))] = true
		}
	}
	const prefix = "https://github.com/svcguard/svcguard/blob/main/docs/runbooks.md#"
	for _, g := range shippedPrometheusRule(t).Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], prefix)
			if !assert.True(t, ok, "alert %s: runbook_url %q must start with %s", r.Alert, r.Annotations["runbook_url"], prefix) {
				continue
			}
			assert.Equal(t, strings.ToLower(r.Alert), anchor, "alert %s links another alert's runbook", r.Alert)
			assert.True(t, anchors[anchor], "alert %s: docs/runbooks.md has no section \"## %s\"", r.Alert, r.Alert)
			assert.Contains(t, []string{"critical", "warning", "info"}, r.Labels["severity"], "alert %s: severity", r.Alert)
			assert.NotEmpty(t, r.Annotations["summary"], "alert %s has no summary", r.Alert)
			assert.NotEmpty(t, r.Annotations["description"], "alert %s has no description", r.Alert)
		}
	}
}
