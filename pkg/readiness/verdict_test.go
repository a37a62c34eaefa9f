package readiness

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

var (
	underFail   = Registration{Registered: true, Known: true, Policy: admissionregistrationv1.Fail}
	underIgnore = Registration{Registered: true, Known: true, Policy: admissionregistrationv1.Ignore}
	unreadable  = Registration{Registered: true, Known: false, Policy: admissionregistrationv1.Fail, Note: "cannot be read"}
	unused      = Registration{Registered: false, Known: true, Policy: admissionregistrationv1.Ignore}
)

func check(name string, essential bool, state State, webhooks ...WebhookRegistration) CheckState {
	return CheckState{Name: name, Essential: essential, Webhooks: webhooks, Result: Result{State: state, Reason: name + " reason"}}
}

func guard(r Registration) WebhookRegistration {
	return WebhookRegistration{Name: "node-port-guard", Registration: r}
}
func host(r Registration) WebhookRegistration {
	return WebhookRegistration{Name: "service-host", Registration: r}
}

// TestVerdictTable covers each check against each live failure policy.
func TestVerdictTable(t *testing.T) {
	policies := map[string]Registration{
		"Fail": underFail, "Ignore": underIgnore, "unreadable (Fail assumed)": unreadable, "not registered": unused,
	}
	type want struct {
		ready    bool
		degraded []string
	}
	table := map[string]map[string]want{
		// The listener, its certificate and the API server's trust in it: no
		// policy makes a replica useful without them.
		"tls":       {"Fail": {}, "Ignore": {}, "unreadable (Fail assumed)": {}, "not registered": {}},
		"serving":   {"Fail": {}, "Ignore": {}, "unreadable (Fail assumed)": {}, "not registered": {}},
		"ca-bundle": {"Fail": {}, "Ignore": {}, "unreadable (Fail assumed)": {}, "not registered": {}},
		// A dependency: unready only where the API server would otherwise refuse.
		"caches": {
			"Fail":                      {ready: false},
			"Ignore":                    {ready: true, degraded: []string{"node-port-guard"}},
			"unreadable (Fail assumed)": {ready: false},
			"not registered":            {ready: true},
		},
	}
	for name, byPolicy := range table {
		for policy, w := range byPolicy {
			t.Run(name+" failing under "+policy, func(t *testing.T) {
				var checks []CheckState
				for _, n := range []string{"tls", "serving", "ca-bundle", "caches"} {
					state := Passing
					if n == name {
						state = Failing
					}
					checks = append(checks, check(n, n != "caches", state, guard(policies[policy])))
				}
				v := Decide(Input{Checks: checks})
				assert.Equal(t, w.ready, v.Ready, "ready; reasons: %v", v.Reasons)
				assert.Equal(t, w.degraded, v.Degraded, "degraded webhooks")
				if !w.ready {
					assert.NotEmpty(t, v.Reasons, "a not-ready verdict must say why")
				}
			})
		}
	}
}

func TestVerdictSpecialStates(t *testing.T) {
	tests := []struct {
		name        string
		in          Input
		ready       bool
		wantReasons string
	}{
		{
			name:  "every check passing is ready",
			in:    Input{Checks: []CheckState{check("tls", true, Passing, host(underFail)), check("caches", false, Passing, guard(underFail))}},
			ready: true,
		},
		{
			name:  "a skipped check does not hold readiness back",
			in:    Input{Checks: []CheckState{check("ca-bundle", true, Skipped, host(underFail))}},
			ready: true,
		},
		{
			name:        "a check that has not run yet holds readiness back",
			in:          Input{Checks: []CheckState{check("serving", true, Pending, host(underIgnore))}},
			wantReasons: "serving has not run yet",
		},
		{
			name:        "while starting, a failing dependency holds readiness back even under Ignore",
			in:          Input{Starting: true, Checks: []CheckState{check("caches", false, Failing, guard(underIgnore))}},
			wantReasons: "starting: waiting for caches",
		},
		{
			name:        "draining is never ready",
			in:          Input{Draining: true, Checks: []CheckState{check("tls", true, Passing, host(underIgnore))}},
			wantReasons: "shutting down",
		},
		{
			name: "one webhook under Fail among those a dependency affects is enough to go unready",
			in: Input{Checks: []CheckState{check("caches", false, Failing,
				guard(underIgnore), WebhookRegistration{Name: "other", Registration: underFail})}},
			wantReasons: "other runs under failurePolicy Fail",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Decide(tt.in)
			assert.Equal(t, tt.ready, v.Ready, "ready; reasons: %v", v.Reasons)
			if tt.wantReasons != "" {
				assert.Contains(t, strings.Join(v.Reasons, "; "), tt.wantReasons)
			}
		})
	}
}

func TestRenderListsEveryCheckWithItsWebhooksPoliciesAndEffect(t *testing.T) {
	v := Decide(Input{Checks: []CheckState{
		check("tls", true, Passing, host(underIgnore), guard(underFail)),
		check("ca-bundle", true, Skipped, host(unused)),
		check("caches", false, Failing, guard(underIgnore)),
		check("serving", true, Failing, host(unreadable)),
	}})
	got := v.Render()
	for _, want := range []string{
		"[+]tls passing: tls reason; webhooks: service-host (failurePolicy Ignore), node-port-guard (failurePolicy Fail)\n",
		"[+]ca-bundle skipped: ca-bundle reason; webhooks: service-host (not registered)\n",
		"[-]caches failing: caches reason; webhooks: node-port-guard (failurePolicy Ignore); node-port-guard degrades (failurePolicy Ignore)\n",
		"[-]serving failing: serving reason; webhooks: service-host (failurePolicy Fail, assumed: cannot be read); holds readiness back\n",
		"readyz check failed: serving failing: serving reason\n",
	} {
		assert.Contains(t, got, want)
	}
}

func TestRenderShowsNotesWithoutChangingTheVerdict(t *testing.T) {
	v := Decide(Input{Checks: []CheckState{check("tls", true, Passing, host(underIgnore))}})
	v.Notes = []string{"policy twin svcguard-service-host: inactive: not found"}
	assert.True(t, v.Ready)
	assert.Equal(t, "[+]tls passing: tls reason; webhooks: service-host (failurePolicy Ignore)\n"+
		"[i]policy twin svcguard-service-host: inactive: not found\n"+
		"readyz check passed\n", v.Render())
}
