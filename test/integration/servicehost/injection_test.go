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
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/svcguard/svcguard/webhook/servicehost"
)

func TestEnvtestPodIsStoredWithTheVariables(t *testing.T) {
	te := suite.Env
	pod := newPod(te.Namespace(t, nil), nil)
	require.NoError(t, te.Client.Create(context.Background(), pod))

	var stored corev1.Pod
	require.NoError(t, te.Client.Get(context.Background(), client.ObjectKeyFromObject(pod), &stored))
	require.Len(t, allEnvs(&stored), 3)
	wantInjected(t, &stored)
}

func TestEnvtestOptedOutNamespaceIsNotInjected(t *testing.T) {
	te := suite.Env
	pod := newPod(te.Namespace(t, map[string]string{servicehost.OptOutLabel: servicehost.OptOutValue}), nil)
	require.NoError(t, te.Client.Create(context.Background(), pod))
	for name, e := range allEnvs(pod) {
		assert.Empty(t, e, "container %q of a Pod in an opted-out namespace must not be injected", name)
	}
}

func TestEnvtestOptedOutPodIsNotInjected(t *testing.T) {
	te := suite.Env
	pod := newPod(te.Namespace(t, nil), map[string]string{servicehost.OptOutLabel: servicehost.OptOutValue})
	require.NoError(t, te.Client.Create(context.Background(), pod))
	for name, e := range allEnvs(pod) {
		assert.Empty(t, e, "container %q of an opted-out Pod must not be injected", name)
	}
}

// The pair rule: a container that sets either variable itself gets neither
// from svcguard, so it never dials its own host on svcguard's port (or
// svcguard's host on its own port). The Pod's other containers still get both.
func TestEnvtestContainerSettingOnlyTheHostGetsNoPort(t *testing.T) {
	te := suite.Env
	pod := newPod(te.Namespace(t, nil), nil)
	own := []corev1.EnvVar{{Name: servicehost.HostVar, Value: "127.0.0.1"}}
	pod.Spec.Containers[0].Env = own
	require.NoError(t, te.Client.Create(context.Background(), pod))

	var stored corev1.Pod
	require.NoError(t, te.Client.Get(context.Background(), client.ObjectKeyFromObject(pod), &stored))
	assert.Equal(t, own, stored.Spec.Containers[0].Env,
		"a container that sets only KUBERNETES_SERVICE_HOST must be stored with its own env only, without svcguard's KUBERNETES_SERVICE_PORT")
	for _, c := range stored.Spec.InitContainers {
		assert.Equal(t, env(servicehost.HostVar, suiteHost, servicehost.PortVar, suitePort), c.Env, "env of the other container %q", c.Name)
	}
}

func TestEnvtestContainerSettingOnlyThePortGetsNoHost(t *testing.T) {
	te := suite.Env
	pod := newPod(te.Namespace(t, nil), nil)
	own := []corev1.EnvVar{{Name: servicehost.PortVar, Value: "8443"}}
	pod.Spec.Containers[0].Env = own
	require.NoError(t, te.Client.Create(context.Background(), pod))

	var stored corev1.Pod
	require.NoError(t, te.Client.Get(context.Background(), client.ObjectKeyFromObject(pod), &stored))
	assert.Equal(t, own, stored.Spec.Containers[0].Env,
		"a container that sets only KUBERNETES_SERVICE_PORT must be stored with its own env only, without svcguard's KUBERNETES_SERVICE_HOST")
	for _, c := range stored.Spec.InitContainers {
		assert.Equal(t, env(servicehost.HostVar, suiteHost, servicehost.PortVar, suitePort), c.Env, "env of the other container %q", c.Name)
	}
}

func TestEnvtestEphemeralContainerAddedThroughSubresourceIsInjected(t *testing.T) {
	te := suite.Env
	ctx := context.Background()
	pod := newPod(te.Namespace(t, nil), nil)
	require.NoError(t, te.Client.Create(ctx, pod))

	clientset, err := kubernetes.NewForConfig(te.Config)
	require.NoError(t, err)
	pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "busybox"},
		TargetContainerName:      "app",
	})
	updated, err := clientset.CoreV1().Pods(pod.Namespace).UpdateEphemeralContainers(ctx, pod.Name, pod, metav1.UpdateOptions{})
	require.NoError(t, err, "kubectl debug's update of pods/ephemeralcontainers must be admitted")
	require.Len(t, updated.Spec.EphemeralContainers, 1)
	assert.Equal(t, env(servicehost.HostVar, suiteHost, servicehost.PortVar, suitePort), updated.Spec.EphemeralContainers[0].Env)
	wantInjected(t, updated)
}

func TestEnvtestDryRunReturnsTheInjectionAndStoresNothing(t *testing.T) {
	te := suite.Env
	pod := newPod(te.Namespace(t, nil), nil)
	pod.GenerateName, pod.Name = "", "dry"
	require.NoError(t, te.Client.Create(context.Background(), pod, client.DryRunAll))
	wantInjected(t, pod)
	err := te.Client.Get(context.Background(), client.ObjectKeyFromObject(pod), &corev1.Pod{})
	assert.True(t, apierrors.IsNotFound(err), "a dry run must store nothing, got %v", err)
}

func debugContainer(name string) corev1.EphemeralContainer {
	return corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: name, Image: "busybox"},
		TargetContainerName:      "app",
	}
}

// Issue #10, item 2: a debug container added while the webhook was
// unreachable (the API server fails open) must not break every later
// `kubectl debug` of the Pod. The API server refuses a pods/ephemeralcontainers
// update whose patch changes an existing ephemeral container ("existing
// ephemeral containers "dbg0" may not be changed"), so the webhook injects
// only the ones the request adds.
func TestEnvtestDebugContainerAfterOneTheWebhookMissedIsInjectedAndTheMissedOneLeftAlone(t *testing.T) {
	te := suite.Env
	ctx := context.Background()
	pod := newPod(te.Namespace(t, nil), nil)
	require.NoError(t, te.Client.Create(ctx, pod))
	clientset, err := kubernetes.NewForConfig(te.Config)
	require.NoError(t, err)
	pods := clientset.CoreV1().Pods(pod.Namespace)

	withWebhookUnreachable(t, func() {
		pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, debugContainer("dbg0"))
		pod, err = pods.UpdateEphemeralContainers(ctx, pod.Name, pod, metav1.UpdateOptions{})
		require.NoError(t, err, "the API server fails open while the webhook is unreachable")
	})
	require.Len(t, pod.Spec.EphemeralContainers, 1)
	require.Empty(t, pod.Spec.EphemeralContainers[0].Env, "the outage let dbg0 in without the variables")

	// The webhook answers again (withWebhookUnreachable waited for it).
	pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, debugContainer("dbg1"))
	updated, err := pods.UpdateEphemeralContainers(ctx, pod.Name, pod, metav1.UpdateOptions{})
	require.NoError(t, err, "a debug container added after one the webhook missed must be admitted")
	require.Len(t, updated.Spec.EphemeralContainers, 2)
	assert.Equal(t, "dbg0", updated.Spec.EphemeralContainers[0].Name)
	assert.Empty(t, updated.Spec.EphemeralContainers[0].Env, "the existing debug container dbg0 must be left unchanged")
	assert.Equal(t, "dbg1", updated.Spec.EphemeralContainers[1].Name)
	assert.Equal(t, env(servicehost.HostVar, suiteHost, servicehost.PortVar, suitePort), updated.Spec.EphemeralContainers[1].Env,
		"the new debug container dbg1 must get the variables")
}
