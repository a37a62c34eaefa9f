package servicehost

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/svcguard/svcguard/pkg/benchtest"
	"github.com/svcguard/svcguard/pkg/fixtures"
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
	return fixtures.Pod("", "", fixtures.OwnedBy(metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: "owner", Controller: ptr.To(controller)}))
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
		{"a bare Pod would not come back", fixtures.Pod("", ""), "team", false},
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
	host := fixtures.Env(HostVar, "10.0.0.1")
	port := fixtures.Env(PortVar, "8443")
	tests := []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"no container sets either", fixtures.Pod("", "", fixtures.Container("a", "", fixtures.Env("X", "y")...)), false},
		{"a regular container sets the host", fixtures.Pod("", "", fixtures.Container("a", ""), fixtures.Container("b", "", host...)), true},
		{"an init container sets the host", fixtures.Pod("", "", fixtures.InitContainer("i", "", host...)), true},
		// By the pair rule such a container got nothing injected, by design:
		// reporting (and evicting) it would never end.
		{"a container sets only the port", fixtures.Pod("", "", fixtures.Container("a", "", port...)), true},
		{"an ephemeral container comes later and does not count", fixtures.Pod("", "",
			fixtures.Container("a", ""), fixtures.EphemeralContainer("debug", host...)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, SetsServiceVar(tt.pod), "SetsServiceVar")
		})
	}
}

func TestAuditDoesNotReportAPodWhoseContainerSetsOnlyThePort(t *testing.T) {
	store, tr := auditStore()
	obj, err := tr.pod(fixtures.DeploymentPod(0, fixtures.AppendEnv(corev1.EnvVar{Name: PortVar, Value: "8443"})))
	require.NoError(t, err)
	require.NoError(t, store.Add(obj))
	candidates, err := store.ByIndex(candidateIndex, "yes")
	require.NoError(t, err)
	assert.Empty(t, candidates, "expected no candidate: the webhook injects nothing into a container that sets the port itself")
}

// auditPod is fixtures.DeploymentPod(i), its container injected or not.
func auditPod(i int, injected bool) *corev1.Pod {
	if injected {
		return fixtures.DeploymentPod(i, fixtures.AppendEnv(corev1.EnvVar{Name: HostVar, Value: "203.0.113.10"}))
	}
	return fixtures.DeploymentPod(i)
}

func auditStore() (cache.Indexer, *auditTransforms) {
	return cache.NewIndexer(cache.MetaNamespaceKeyFunc, candidateIndexers()), &auditTransforms{}
}

func TestAuditTransformKeepsOnlyWhatTheRulesNeed(t *testing.T) {
	store, tr := auditStore()
	for i, injected := range []bool{true, false} {
		obj, err := tr.pod(auditPod(i, injected))
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
			obj, err := tr.pod(auditPod(i, i%100 != 0))
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
