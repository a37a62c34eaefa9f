package servicehost_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/podwatch"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/servicehost"
)

// withWebhookUnreachable points the registered configuration at a dead
// address (failurePolicy Ignore, as shipped) while create runs: the API
// server admits Pods without the variables, as during an outage. It waits
// until the API server acts on each change (it reads webhook configurations
// through an informer), so create runs during the outage and the caller's
// next request reaches the webhook again.
func withWebhookUnreachable(t *testing.T, create func()) {
	t.Helper()
	var saved *string
	edit := func(change func(*admissionregistrationv1.MutatingWebhook)) {
		var cfg admissionregistrationv1.MutatingWebhookConfiguration
		suite.Env.Edit(t, client.ObjectKey{Name: "svcguard"}, &cfg, func() { change(&cfg.Webhooks[0]) })
	}
	edit(func(w *admissionregistrationv1.MutatingWebhook) {
		saved = w.ClientConfig.URL
		w.ClientConfig.URL = ptr.To("https://127.0.0.1:1/webhooks/service-host")
	})
	defer func() {
		edit(func(w *admissionregistrationv1.MutatingWebhook) { w.ClientConfig.URL = saved })
		waitWebhookCalled(t, true)
	}()
	waitWebhookCalled(t, false)
	create()
}

// waitWebhookCalled waits until the API server calls the service-host
// webhook (want) or no longer reaches it (!want), as a dry-run Pod CREATE
// shows: it comes back injected only when the webhook answered. A dry run
// stores nothing and is not counted as an injection.
func waitWebhookCalled(t *testing.T, want bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		probe := fixtures.Pod(metav1.NamespaceDefault, "webhook-probe", fixtures.Container("probe", "busybox"))
		require.NoError(t, suite.Env.Client.Create(context.Background(), probe, client.DryRunAll))
		called := len(probe.Spec.Containers[0].Env) > 0
		if called == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("expected the API server to call the service-host webhook: %v, got: %v after 20s", want, called)
		}
	}
}

func createPod(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	require.NoError(t, suite.Env.Client.Create(context.Background(), pod))
	return pod
}

// eventsFor lists the Events svcguard wrote about the Pod.
func eventsFor(t *testing.T, pod *corev1.Pod, reason string) []eventsv1.Event {
	return suite.Env.Events(t, pod.Namespace, pod.Name, reason)
}

func TestEnvtestAuditReportsMissedPodsAndEvictsOnlyWhatAControllerRecreates(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := suite.Env.Namespace(t, nil)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       fixtures.Pod(ns, "", fixtures.Container("app", "nginx")).Spec,
			},
		},
	}
	require.NoError(t, suite.Env.Client.Create(ctx, rs))

	var bare, ofReplicaSet, optedOut *corev1.Pod
	withWebhookUnreachable(t, func() {
		bare = createPod(t, newPod(ns))
		ofReplicaSet = createPod(t, newPod(ns, fixtures.Label("app", "web"),
			fixtures.OwnedBy(metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)})))
		optedOut = createPod(t, newPod(ns, fixtures.Label(servicehost.OptOutLabel, servicehost.OptOutValue)))
	})
	require.Empty(t, fixtures.Envs(bare)["app"], "the outage let the Pod in without the variables")
	injected := createPod(t, newPod(ns))
	wantInjected(t, injected)

	// The audit runs with exactly the RBAC the remediation overlay ships.
	svcguard := suite.Env.ShippedRBACConfig(t, "svcguard-audit", "remediation", "svcguard", "svcguard-remediation")
	cs, err := kubernetes.NewForConfig(svcguard)
	require.NoError(t, err)
	recorder := testenv.Recorder(t, ctx, svcguard)
	pods := podwatch.New(cs)
	audit, err := servicehost.NewAudit(cs, pods, recorder, servicehost.AuditOptions{
		Interval: 200 * time.Millisecond, Remediate: true, RatePerMinute: 60, OwnNamespace: "svcguard",
		ReportsPerPass: 1, // two missed Pods: the second is reported on a later pass, never lost
	}, logr.Discard())
	require.NoError(t, err)
	go func() { _ = pods.Start(ctx) }()
	go func() { _ = audit.Start(ctx) }()

	require.Eventually(t, func() bool { return len(eventsFor(t, bare, servicehost.MissedReason)) == 1 }, 20*time.Second, 100*time.Millisecond,
		"the bare Pod gets one %s Event", servicehost.MissedReason)
	note := eventsFor(t, bare, servicehost.MissedReason)[0].Note
	assert.Contains(t, note, "KUBERNETES_SERVICE_HOST is not set in any container")
	assert.Contains(t, note, "delete it so that it is re-created injected", "a bare Pod is not evicted: the Event says what to do")
	assert.Equal(t, corev1.EventTypeWarning, eventsFor(t, bare, servicehost.MissedReason)[0].Type)

	require.Eventually(t, func() bool {
		err := suite.Env.Client.Get(ctx, client.ObjectKeyFromObject(ofReplicaSet), &corev1.Pod{})
		return apierrors.IsNotFound(err)
	}, 20*time.Second, 100*time.Millisecond, "the ReplicaSet's missed Pod is evicted")
	assert.Len(t, eventsFor(t, ofReplicaSet, servicehost.MissedReason), 1, "reported before it was evicted")
	assert.Len(t, eventsFor(t, ofReplicaSet, servicehost.RemediatedReason), 1, "and the eviction is an Event too")

	podsMissing := func() float64 { return testenv.GaugeValue(t, "svcguard_pods_missing_service_host") }
	require.Eventually(t, func() bool { return podsMissing() == 1 }, 20*time.Second, 100*time.Millisecond,
		"svcguard_pods_missing_service_host counts the bare Pod only, once the other is gone (got %v)", podsMissing())
	time.Sleep(time.Second) // a few more passes
	for _, p := range []*corev1.Pod{bare, optedOut, injected} {
		assert.NoError(t, suite.Env.Client.Get(ctx, client.ObjectKeyFromObject(p), &corev1.Pod{}), "Pod %s must be left alone", p.Name)
	}
	assert.Len(t, eventsFor(t, bare, servicehost.MissedReason), 1, "each missed Pod is reported once, not once per pass")
	assert.Empty(t, eventsFor(t, optedOut, servicehost.MissedReason), "an opted-out Pod is never reported")
	assert.Empty(t, eventsFor(t, injected, servicehost.MissedReason), "an injected Pod is never reported")
}
