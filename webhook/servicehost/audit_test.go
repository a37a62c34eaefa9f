package servicehost

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/podwatch"
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
	w, part := auditWatch(t)
	require.NoError(t, w.Add(fixtures.DeploymentPod(0, fixtures.AppendEnv(corev1.EnvVar{Name: PortVar, Value: "8443"}))))
	assert.Empty(t, candidates(t, part), "expected no candidate: the webhook injects nothing into a container that sets the port itself")
}

// auditPod is fixtures.DeploymentPod(i), its container injected or not.
func auditPod(i int, injected bool) *corev1.Pod {
	if injected {
		return fixtures.DeploymentPod(i, fixtures.AppendEnv(corev1.EnvVar{Name: HostVar, Value: "203.0.113.10"}))
	}
	return fixtures.DeploymentPod(i)
}

// auditWatch is a plain Pod watch with the audit's part registered, as
// NewAudit registers it.
func auditWatch(t testing.TB) (*podwatch.Watch, podwatch.Part[auditedPod]) {
	w := podwatch.NewStore()
	part, err := registerCandidates(w, &auditTransforms{})
	require.NoError(t, err)
	return w, part
}

// candidates are the keys of the candidates the audit's index holds.
func candidates(t testing.TB, part podwatch.Part[auditedPod]) map[string]*auditedPod {
	out := map[string]*auditedPod{}
	require.NoError(t, part.ByIndex(candidateIndex, "yes", func(r *podwatch.Record, p *auditedPod) { out[r.Key()] = p }))
	return out
}

func TestAuditKeepsOnlyCandidatesAndOnlyWhatTheRulesNeed(t *testing.T) {
	w, part := auditWatch(t)
	for i, injected := range []bool{true, false} {
		require.NoError(t, w.Add(auditPod(i, injected)))
	}
	assert.Equal(t, map[string]*auditedPod{"team-1/app-1-7f9c8d6b5-x00001": {created: 1_790_000_001, owner: ReplicaSet}},
		candidates(t, part), "only the Pod without the variable is kept: its creation time, controller kind and facts; nothing else")
	require.NoError(t, w.Delete(auditPod(1, false)))
	assert.Empty(t, candidates(t, part), "a deleted Pod leaves the index")
}
