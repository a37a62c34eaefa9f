package policy_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/webhook/servicehost"
)

// TestEnvtestTwinAndWebhookStoreTheSamePods creates one corpus of Pods (the
// rules' table and generated Pods with every env shape, debug containers
// added afterwards as kubectl debug adds them) three ways: the webhook only,
// the policy twin only, both. What the API server stores must be the same
// container by container; with both, the API server never calls the
// webhook, since the twin left nothing missing.
func TestEnvtestTwinAndWebhookStoreTheSamePods(t *testing.T) {
	te := suite.Env
	optOut := fixtures.Label(servicehost.OptOutLabel, servicehost.OptOutValue)
	corpus := append(fixtures.InjectionTable("", optOut), fixtures.InjectionCorpus(rand.New(rand.NewPCG(7, 11)), 80, "", optOut)...)
	// A sidecar injector that the API server calls after svcguard adds a container: both injectors run
	// again (reinvocationPolicy IfNeeded) and inject it too.
	installLateSidecarInjector(t)
	corpus = append(corpus, fixtures.Pod("", "late-sidecar", fixtures.Label(lateSidecarLabel, "yes"), fixtures.Container("app", "app")))
	probeNS := te.Namespace(t, nil)

	modes := []mode{{"webhook only", true, false}, {"both", true, true}, {"policy twin only", false, true}}
	// With the port, and without: the two shapes of what is injected.
	for _, port := range []string{suitePort, ""} {
		t.Run("port="+port, func(t *testing.T) {
			stored := make([]map[string]created, len(modes))
			for i, m := range modes {
				setMode(t, m, port, probeNS)
				calls := webhookCalls.Load()
				stored[i] = createAll(t, te.Namespace(t, nil), corpus)
				// A Namespace opted out by label is left alone by both.
				for name, envs := range createAll(t, te.Namespace(t, map[string]string{servicehost.OptOutLabel: servicehost.OptOutValue}), corpus[:20]) {
					stored[i]["opted-out-namespace/"+name] = envs
				}
				called := webhookCalls.Load() - calls
				switch {
				case m.webhook && !m.twin && called == 0:
					t.Fatalf("%s: the API server never called the webhook", m.name)
				case m.twin && called != 0:
					t.Errorf("%s: the API server called the webhook %d times; with the twin in place its matchConditions should skip every call", m.name, called)
				}
				t.Logf("%s: %d Pods, %d webhook calls", m.name, len(stored[i]), called)
			}
			wantRules(t, stored[0], wantEnv(port))
			for i := 1; i < len(modes); i++ {
				if diff := differences(stored[0], stored[i]); len(diff) > 0 {
					t.Errorf("%s stores Pods differently from %s (%d differences):\n%s", modes[i].name, modes[0].name, len(diff), strings.Join(diff, "\n"))
				}
			}
		})
	}
}

// wantRules checks the table's rules on the Pods as the API server stored
// them with the webhook only, where want is what a container lacking the
// pair gets.
func wantRules(t *testing.T, webhook map[string]created, want []corev1.EnvVar) {
	t.Helper()
	with := func(before []corev1.EnvVar, after ...corev1.EnvVar) []corev1.EnvVar {
		return append(append(append([]corev1.EnvVar{}, before...), want...), after...)
	}
	// A reference to the port moves the insert position only when the port is injected.
	referenceBetween := with(fixtures.Env("A", "1"), fixtures.Env("URL", "h:$(KUBERNETES_SERVICE_PORT)", "B", "2")...)
	if len(want) == 1 {
		referenceBetween = with(fixtures.Env("A", "1", "URL", "h:$(KUBERNETES_SERVICE_PORT)", "B", "2"))
	}
	for _, c := range []struct {
		pod, container string
		want           []corev1.EnvVar
	}{
		{"no-env", "app", want},
		{"plain-env-appended", "app", with(fixtures.Env("A", "1", "B", "2"))},
		{"init-and-native-sidecar", "proxy", want},
		{"pair-rule-host-set", "own", fixtures.Env(servicehost.HostVar, "127.0.0.1")},
		{"reference-between", "app", referenceBetween},
		{"nothing-missing", "app", fixtures.Env(servicehost.HostVar, "10.9.9.9", servicehost.PortVar, "443")},
		{"opted-out", "app", nil},
		{"debug-new-container", "debugger", want},
		{"debug-reference", "debugger", with(nil, fixtures.Env("X", "$(KUBERNETES_SERVICE_HOST)")...)},
		{"opted-out-namespace/no-env", "app", nil},
		{"late-sidecar", lateSidecar, want},
	} {
		if got := webhook[c.pod][c.container]; !reflect.DeepEqual(got, c.want) {
			t.Errorf("webhook only: Pod %s container %s stored env %v, expected %v", c.pod, c.container, got, c.want)
		}
	}
}

// differences lists every container whose stored env differs between a and
// b, as "pod/container: a=... b=...".
func differences(a, b map[string]created) []string {
	var out []string
	for pod, containers := range a {
		for name, env := range containers {
			if other := b[pod][name]; !reflect.DeepEqual(env, other) {
				out = append(out, fmt.Sprintf("%s/%s:\n  %v\n  %v", pod, name, env, other))
			}
		}
		if len(b[pod]) != len(containers) {
			out = append(out, fmt.Sprintf("%s: %d containers against %d", pod, len(containers), len(b[pod])))
		}
	}
	slices.Sort(out)
	return out
}
