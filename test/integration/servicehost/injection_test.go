package servicehost_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/webhook/servicehost"
)

func TestEnvtestPodIsStoredWithTheVariables(t *testing.T) {
	te := suite.Env
	pod := newPod(te.Namespace(t, nil))
	require.NoError(t, te.Client.Create(context.Background(), pod))

	var stored corev1.Pod
	require.NoError(t, te.Client.Get(context.Background(), client.ObjectKeyFromObject(pod), &stored))
	require.Len(t, fixtures.Envs(&stored), 3)
	wantInjected(t, &stored)
}

func TestEnvtestOptedOutNamespaceIsNotInjected(t *testing.T) {
	te := suite.Env
	pod := newPod(te.Namespace(t, map[string]string{servicehost.OptOutLabel: servicehost.OptOutValue}))
	require.NoError(t, te.Client.Create(context.Background(), pod))
	for name, e := range fixtures.Envs(pod) {
		assert.Empty(t, e, "container %q of a Pod in an opted-out namespace must not be injected", name)
	}
}

func TestEnvtestOptedOutPodIsNotInjected(t *testing.T) {
	te := suite.Env
	pod := newPod(te.Namespace(t, nil), fixtures.Label(servicehost.OptOutLabel, servicehost.OptOutValue))
	require.NoError(t, te.Client.Create(context.Background(), pod))
	for name, e := range fixtures.Envs(pod) {
		assert.Empty(t, e, "container %q of an opted-out Pod must not be injected", name)
	}
}

// The pair rule: a container that sets either variable itself gets neither
// from svcguard, so it never dials its own host on svcguard's port (or
// svcguard's host on its own port). The Pod's other containers still get both.
func TestEnvtestContainerSettingOnlyTheHostGetsNoPort(t *testing.T) {
	wantPairRule(t, corev1.EnvVar{Name: servicehost.HostVar, Value: "127.0.0.1"},
		"a container that sets only KUBERNETES_SERVICE_HOST must be stored with its own env only, without svcguard's KUBERNETES_SERVICE_PORT")
}

func TestEnvtestContainerSettingOnlyThePortGetsNoHost(t *testing.T) {
	wantPairRule(t, corev1.EnvVar{Name: servicehost.PortVar, Value: "8443"},
		"a container that sets only KUBERNETES_SERVICE_PORT must be stored with its own env only, without svcguard's KUBERNETES_SERVICE_HOST")
}

// wantPairRule creates the suite's Pod with own as its app container's only
// variable and checks how the API server stores it: the app container with
// its own env only (why says so), the others injected.
func wantPairRule(t *testing.T, own corev1.EnvVar, why string) {
	t.Helper()
	te := suite.Env
	pod := newPod(te.Namespace(t, nil))
	pod.Spec.Containers[0].Env = []corev1.EnvVar{own}
	require.NoError(t, te.Client.Create(context.Background(), pod))

	var stored corev1.Pod
	require.NoError(t, te.Client.Get(context.Background(), client.ObjectKeyFromObject(pod), &stored))
	assert.Equal(t, []corev1.EnvVar{own}, stored.Spec.Containers[0].Env, why)
	for _, c := range stored.Spec.InitContainers {
		assert.Equal(t, suiteEnv, c.Env, "env of the other container %q", c.Name)
	}
}

// createForDebug creates the suite's Pod in a new namespace and returns it
// with a client of that namespace's Pods, for kubectl debug's updates.
func createForDebug(t *testing.T) (*corev1.Pod, typedcorev1.PodInterface) {
	t.Helper()
	pod := newPod(suite.Env.Namespace(t, nil))
	require.NoError(t, suite.Env.Client.Create(context.Background(), pod))
	clientset, err := kubernetes.NewForConfig(suite.Env.Config)
	require.NoError(t, err)
	return pod, clientset.CoreV1().Pods(pod.Namespace)
}

// debug adds the debug container name to pod as `kubectl debug` does, by an
// update of pods/ephemeralcontainers that must be admitted (why says so),
// and returns the Pod as the API server stored it.
func debug(t *testing.T, pods typedcorev1.PodInterface, pod *corev1.Pod, name, why string) *corev1.Pod {
	t.Helper()
	pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, fixtures.DebugContainer(name, "app"))
	updated, err := pods.UpdateEphemeralContainers(context.Background(), pod.Name, pod, metav1.UpdateOptions{})
	require.NoError(t, err, why)
	return updated
}

func TestEnvtestEphemeralContainerAddedThroughSubresourceIsInjected(t *testing.T) {
	pod, pods := createForDebug(t)
	updated := debug(t, pods, pod, "debugger", "kubectl debug's update of pods/ephemeralcontainers must be admitted")
	require.Len(t, updated.Spec.EphemeralContainers, 1)
	assert.Equal(t, suiteEnv, updated.Spec.EphemeralContainers[0].Env)
	wantInjected(t, updated)
}

func TestEnvtestDryRunReturnsTheInjectionAndStoresNothing(t *testing.T) {
	te := suite.Env
	pod := newPod(te.Namespace(t, nil))
	pod.GenerateName, pod.Name = "", "dry"
	require.NoError(t, te.Client.Create(context.Background(), pod, client.DryRunAll))
	wantInjected(t, pod)
	err := te.Client.Get(context.Background(), client.ObjectKeyFromObject(pod), &corev1.Pod{})
	assert.True(t, apierrors.IsNotFound(err), "a dry run must store nothing, got %v", err)
}

// Issue #10, item 2: a debug container added while the webhook was
// unreachable (the API server fails open) must not break every later
// `kubectl debug` of the Pod. The API server refuses a pods/ephemeralcontainers
// update whose patch changes an existing ephemeral container ("existing
// ephemeral containers "dbg0" may not be changed"), so the webhook injects
// only the ones the request adds.
func TestEnvtestDebugContainerAfterOneTheWebhookMissedIsInjectedAndTheMissedOneLeftAlone(t *testing.T) {
	pod, pods := createForDebug(t)
	withWebhookUnreachable(t, func() {
		pod = debug(t, pods, pod, "dbg0", "the API server fails open while the webhook is unreachable")
	})
	require.Len(t, pod.Spec.EphemeralContainers, 1)
	require.Empty(t, pod.Spec.EphemeralContainers[0].Env, "the outage let dbg0 in without the variables")

	// The webhook answers again (withWebhookUnreachable waited for it).
	updated := debug(t, pods, pod, "dbg1", "a debug container added after one the webhook missed must be admitted")
	require.Len(t, updated.Spec.EphemeralContainers, 2)
	assert.Equal(t, "dbg0", updated.Spec.EphemeralContainers[0].Name)
	assert.Empty(t, updated.Spec.EphemeralContainers[0].Env, "the existing debug container dbg0 must be left unchanged")
	assert.Equal(t, "dbg1", updated.Spec.EphemeralContainers[1].Name)
	assert.Equal(t, suiteEnv, updated.Spec.EphemeralContainers[1].Env,
		"the new debug container dbg1 must get the variables")
}
