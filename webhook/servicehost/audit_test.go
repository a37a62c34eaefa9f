package servicehost

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/svcguard/svcguard/pkg/benchtest"
	"github.com/svcguard/svcguard/pkg/slim"
)

func TestMissed(t *testing.T) {
	tests := []struct {
		name  string
		facts PodFacts
		want  bool
	}{
		{"no container sets the variable: missed", PodFacts{}, true},
		{"the Pod opted out", PodFacts{OptedOut: true}, false},
		{"its Namespace opted out", PodFacts{NamespaceOptedOut: true}, false},
		{"a container sets either variable (injected or its own): the owner's business", PodFacts{SetsServiceVar: true}, false},
		{"finished or terminating: nothing runs any more", PodFacts{Finished: true}, false},
		{"a static Pod's mirror runs from the node's manifest", PodFacts{Mirror: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Missed(tt.facts))
		})
	}
}

func owned(apiVersion, kind string, controller bool) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{
		{APIVersion: apiVersion, Kind: kind, Name: "owner", Controller: ptr.To(controller)},
	}}}
}

func TestRemediableOnlyWhatAControllerRecreates(t *testing.T) {
	tests := []struct {
		name      string
		pod       *corev1.Pod
		namespace string
		want      bool
	}{
		{"ReplicaSet", owned("apps/v1", "ReplicaSet", true), "team", true},
		{"StatefulSet", owned("apps/v1", "StatefulSet", true), "team", true},
		{"DaemonSet", owned("apps/v1", "DaemonSet", true), "team", true},
		{"a bare Pod would not come back", &corev1.Pod{}, "team", false},
		{"a Job's Pod: a re-run is not a restart", owned("batch/v1", "Job", true), "team", false},
		{"a reference that is not the controller", owned("apps/v1", "ReplicaSet", false), "team", false},
		{"another controller kind", owned("example.com/v1", "Rollout", true), "team", false},
		{"never in svcguard's own namespace", owned("apps/v1", "ReplicaSet", true), "svcguard", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Remediable(OwnerKindOf(tt.pod), tt.namespace, "svcguard"))
		})
	}
}

func TestSetsServiceVarLooksAtEitherVariableInInitAndRegularContainers(t *testing.T) {
	host := []corev1.EnvVar{{Name: HostVar, Value: "10.0.0.1"}}
	port := []corev1.EnvVar{{Name: PortVar, Value: "8443"}}
	tests := []struct {
		name string
		spec corev1.PodSpec
		want bool
	}{
		{"no container sets either", corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Env: []corev1.EnvVar{{Name: "X", Value: "y"}}}}}, false},
		{"a regular container sets the host", corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}, {Name: "b", Env: host}}}, true},
		{"an init container sets the host", corev1.PodSpec{InitContainers: []corev1.Container{{Name: "i", Env: host}}}, true},
		// By the pair rule such a container got nothing injected, by design:
		// reporting (and evicting) it would never end.
		{"a container sets only the port", corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Env: port}}}, true},
		{"an ephemeral container comes later and does not count", corev1.PodSpec{
			Containers:          []corev1.Container{{Name: "a"}},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Env: host}}},
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, SetsServiceVar(&corev1.Pod{Spec: tt.spec}), "SetsServiceVar")
		})
	}
}

func TestAuditDoesNotReportAPodWhoseContainerSetsOnlyThePort(t *testing.T) {
	store, tr := auditStore()
	p := syntheticPod(0, false)
	p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: PortVar, Value: "8443"})
	obj, err := tr.pod(p)
	require.NoError(t, err)
	require.NoError(t, store.Add(obj))
	candidates, err := store.ByIndex(candidateIndex, "yes")
	require.NoError(t, err)
	assert.Empty(t, candidates, "expected no candidate: the webhook injects nothing into a container that sets the port itself")
}

// syntheticPod is a Deployment's Pod with realistic metadata and spec, so that
// the transform has as much to drop as in a cluster.
func syntheticPod(i int, injected bool) *corev1.Pod {
	env := []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}}
	if injected {
		env = append(env, corev1.EnvVar{Name: HostVar, Value: "203.0.113.10"})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: fmt.Sprintf("team-%d", i%50), Name: fmt.Sprintf("app-%d-7f9c8d6b5-x%05d", i%50, i),
			UID:               "2b9f3a8e-4c1d-4e6f-9a7b-1c2d3e4f5a6b",
			Labels:            map[string]string{"app": "web", "pod-template-hash": "7f9c8d6b5"},
			Annotations:       map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-11-01T10:00:00Z"},
			OwnerReferences:   []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "app-7f9c8d6b5", Controller: ptr.To(true)}},
			CreationTimestamp: metav1.Unix(1_790_000_000+int64(i), 0),
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/team/app:v1.2.3", Env: env}}},
	}
}

func auditStore() (cache.Indexer, *auditTransforms) {
	return cache.NewIndexer(cache.MetaNamespaceKeyFunc, candidateIndexers()), &auditTransforms{}
}

func TestAuditTransformKeepsOnlyWhatTheRulesNeed(t *testing.T) {
	store, tr := auditStore()
	for i, injected := range []bool{true, false} {
		obj, err := tr.pod(syntheticPod(i, injected))
		require.NoError(t, err)
		require.NoError(t, store.Add(obj))
	}
	kept, ok, _ := store.GetByKey("team-1/app-1-7f9c8d6b5-x00001")
	require.True(t, ok)
	assert.Equal(t, &auditedPod{Key: slim.Key{Namespace: "team-1", Name: "app-1-7f9c8d6b5-x00001"}, created: 1_790_000_001, owner: ReplicaSet},
		kept, "key, creation time, controller kind and facts; nothing else")
	candidates, err := store.ByIndex(candidateIndex, "yes")
	require.NoError(t, err)
	assert.Equal(t, []any{kept}, candidates, "only the Pod without the variable is a candidate")
}

// BenchmarkAuditCacheMemory feeds 100k synthetic Pods (1% missed) through the
// audit's real transform and indexer and reports the heap they hold per Pod.
func BenchmarkAuditCacheMemory(b *testing.B) {
	const pods = 100_000
	for b.Loop() {
		before := benchtest.HeapAfterGC()
		store, tr := auditStore()
		for i := range pods {
			obj, err := tr.pod(syntheticPod(i, i%100 != 0))
			if err != nil {
				b.Fatal(err)
			}
			if err := store.Add(obj); err != nil {
				b.Fatal(err)
			}
		}
		held := benchtest.HeapAfterGC() - before
		b.ReportMetric(float64(held)/pods, "B/pod")
		b.ReportMetric(float64(held)/(1<<20), "MiB-total")
		runtime.KeepAlive(store)
	}
}
