package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/testenv"
)

// TestScenario9TotalOutageWithThePolicyTwin stops every replica and creates
// 20 Pods through a Deployment, first with the policy twin of
// manifests/components/policy installed, then without it: the twin, inside
// the API server, leaves no Pod without the variables, while without it the
// API server fails open on every Pod.
func TestScenario9TotalOutageWithThePolicyTwin(t *testing.T) {
	const scenario = "9. Total outage with the policy twin"
	begin(t, scenario)
	restoreOnFailure(t)
	ctx := context.Background()
	objs := testenv.PolicyTwin(t, serviceHost, servicePort)
	require.NoError(t, testenv.Apply(ctx, env.Config, objs, false))
	binding := &admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: testenv.PolicyTwinName}}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), binding) })

	// The leader (the manifests run it with --injection-policy) sees the twin: the gauge, and a note on /readyz?verbose.
	var note string
	require.Eventually(t, func() bool {
		leader := fleet.Leader()
		if leader == nil {
			return false
		}
		text, _ := leader.Metrics()
		active, _ := testenv.SumSamples(t, text, "svcguard_injection_policy_active", "policy", testenv.PolicyTwinName)
		note = readyzNote(leader.HealthURL)
		return active == 1 && strings.Contains(note, "[i]policy twin svcguard-service-host: active")
	}, 30*time.Second, 200*time.Millisecond, "the leader reports the twin active (last /readyz?verbose note: %q)", note)

	for _, r := range fleet.Replicas() {
		fleet.Kill(r)
	}
	defer func() {
		require.NoError(t, fleet.StartN(ctx, 3, fleetFlags...))
		require.NoError(t, fleet.WaitSettled(ctx))
	}()
	// The twin takes effect within seconds of its binding: wait until a dry-run Pod comes back injected.
	probeNS := env.Namespace(t, nil)
	require.Eventually(t, func() bool {
		return probe(t, probeNS)
	}, 30*time.Second, 200*time.Millisecond, "with every replica stopped, the policy twin injects a probe Pod")

	outage := func(name string) (missing int, calls webhookCalls) {
		ns := env.Namespace(t, nil)
		before := countCalls(t, serviceHostWebhook)
		deployment(t, ns, name, 20)
		waitForPods(t, ns, name, 20)
		missing, _ = missingPods(t, ns)
		return missing, countCalls(t, serviceHostWebhook).since(before)
	}
	withTwin, withTwinCalls := outage("with-twin")

	require.NoError(t, env.Client.Delete(ctx, binding))
	require.Eventually(t, func() bool { return !probe(t, probeNS) }, 30*time.Second, 200*time.Millisecond,
		"once the binding is gone, with every replica stopped, a probe Pod is admitted without the variables")
	without, withoutCalls := outage("without-twin")

	pass := withTwin == 0 && without == 20 && withTwinCalls.Requests == 0
	record(t, scenario, fmt.Sprintf("every replica stopped, 20 Pods through a Deployment: %d missing the variables with the twin "+
		"(%.0f webhook calls: its matchConditions found nothing missing), %d without it (%.0f fail-opens)",
		withTwin, withTwinCalls.Requests, without, withoutCalls.FailOpen), "0 with the twin; 20 without", pass)
	require.True(t, pass, "expected 0 Pods missing the variables with the twin and 20 without, got %d and %d", withTwin, without)
}

// probe creates a one-container Pod by dry run in ns and tells whether the
// API server would store it with the variables.
func probe(t *testing.T, ns string) bool {
	pod := fixtures.Pod(ns, "probe", fixtures.Container("app", "app"))
	require.NoError(t, env.Client.Create(context.Background(), pod, client.DryRunAll))
	return injected(pod)
}

// readyzNote returns the [i] lines of a replica's /readyz?verbose.
func readyzNote(healthURL string) string {
	resp, err := http.Get(healthURL + "/readyz?verbose")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var notes []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "[i]") {
			notes = append(notes, line)
		}
	}
	return strings.Join(notes, "\n")
}
