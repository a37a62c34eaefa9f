// Package readiness decides when a svcguard replica should receive admission
// requests. It runs checks (the serving certificate, a self-test of the
// listener, the caBundle the cluster trusts, the webhooks' caches), reads the
// live failurePolicy of each webhook from the cluster's webhook
// configurations, and turns both into one verdict that /readyz serves.
//
// The verdict is policy-aware: a failing dependency of a webhook registered
// under failurePolicy Fail makes the replica unready (the API server should ask
// a replica that can judge), while under Ignore the replica stays ready and the
// webhook answers with what it can decide locally, because going unready would
// only turn a partial answer into none.
//
// The package knows nothing about what the webhooks decide.
package readiness

import (
	"fmt"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// State is the outcome of one check.
type State string

// The states a check can be in.
const (
	// Pending: the check has not run yet.
	Pending State = "pending"
	// Passing: the check succeeded.
	Passing State = "passing"
	// Failing: the check failed; Result.Reason says why.
	Failing State = "failing"
	// Skipped: the check could not apply (for example no caBundle to verify);
	// it does not hold readiness back.
	Skipped State = "skipped"
)

// Result is what one run of a check found.
type Result struct {
	State State
	// Reason explains the state in one line.
	Reason string
}

// Pass is a passing result with reason.
func Pass(reason string) Result { return Result{State: Passing, Reason: reason} }

// Fail is a failing result whose reason is err.
func Fail(err error) Result { return Result{State: Failing, Reason: err.Error()} }

// Skip is a result that does not hold readiness back.
func Skip(reason string) Result { return Result{State: Skipped, Reason: reason} }

// Registration is how the cluster registers one webhook path: its live
// failure policy and the configuration entries that point at it.
type Registration struct {
	// Registered is false when no consulted configuration points at the path:
	// the API server sends it nothing, so its dependencies hold nothing back.
	Registered bool
	// Known is false when a configuration could not be read; Policy is then
	// Fail, assumed.
	Known bool
	// Waiting is true while a configuration has not been read yet at all
	// (neither read nor failed): checks that need it wait too.
	Waiting bool
	// Policy is the strictest failurePolicy among the entries (Fail when any
	// entry fails closed, as an unset policy does in admissionregistration/v1).
	Policy admissionregistrationv1.FailurePolicyType
	// Note says where the policy came from, or why it is assumed.
	Note string
	// Entries are the webhook entries that point at the path.
	Entries []Entry
}

// Entry is one webhook entry of a configuration that points at a path.
type Entry struct {
	// Configuration is "MutatingWebhookConfiguration/NAME" (or Validating).
	Configuration string
	// Webhook is the entry's name ("service-host.svcguard.io").
	Webhook string
	// Policy is the entry's failurePolicy, Fail when unset.
	Policy admissionregistrationv1.FailurePolicyType
	// CABundle is the entry's clientConfig.caBundle (PEM); empty means the API
	// server uses its system trust roots.
	CABundle []byte
	// ServerName is the name the API server verifies the certificate against:
	// SERVICE.NAMESPACE.svc, or the host of clientConfig.url.
	ServerName string
}

// Input is everything a verdict depends on.
type Input struct {
	// Checks are the latest results, in the order they are listed.
	Checks []CheckState
	// Starting is true until one round of checks has passed whole (or the
	// start-up grace ran out): until then every failing check holds readiness
	// back, whatever the policies.
	Starting bool
	// Draining is true once shutdown began.
	Draining bool
}

// CheckState is a check, the webhooks that depend on it and its latest result.
type CheckState struct {
	Name string
	// Essential checks guard what every answer needs (the listener, its
	// certificate, the API server's trust in it): failing, they make the
	// replica unready whatever the failure policies.
	Essential bool
	// Webhooks depend on the check, with their live registrations.
	Webhooks []WebhookRegistration
	Result   Result
}

// WebhookRegistration names a webhook and how the cluster registers it.
type WebhookRegistration struct {
	Name string
	Registration
}

// Verdict is the readiness decision with its reasons.
type Verdict struct {
	// Ready says whether the replica should receive admission requests.
	Ready bool
	// Reasons say why it is not ready; empty when ready.
	Reasons []string
	// Degraded lists the webhooks that answer without a failing dependency,
	// because they run under failurePolicy Ignore.
	Degraded []string
	// Checks mirror the input, each with its effect.
	Checks []CheckVerdict
	// Notes are informational lines, shown after the checks; they never
	// affect Ready.
	Notes []string
}

// CheckVerdict is one check's state and its effect on the verdict.
type CheckVerdict struct {
	CheckState
	// Effect says what the check's state does: "", "holds readiness back" or
	// "WEBHOOK degrades".
	Effect string
}

// Decide is the policy-aware verdict. It is pure: everything it needs is in in.
func Decide(in Input) Verdict {
	v := Verdict{Ready: true}
	notReady := func(format string, args ...any) {
		v.Ready = false
		v.Reasons = append(v.Reasons, fmt.Sprintf(format, args...))
	}
	if in.Draining {
		notReady("shutting down: draining connections so that no request meets a closed listener")
	}
	for _, c := range in.Checks {
		cv := CheckVerdict{CheckState: c}
		switch c.Result.State {
		case Passing, Skipped:
		case Pending:
			cv.Effect = "holds readiness back"
			notReady("%s has not run yet", c.Name)
		case Failing:
			cv.Effect = decideFailing(c, in.Starting, notReady, &v.Degraded)
		}
		v.Checks = append(v.Checks, cv)
	}
	slices.Sort(v.Degraded)
	v.Degraded = slices.Compact(v.Degraded)
	return v
}

// decideFailing applies the policy table to one failing check and returns its
// effect.
func decideFailing(c CheckState, starting bool, notReady func(string, ...any), degraded *[]string) string {
	switch {
	case c.Essential:
		notReady("%s failing: %s", c.Name, c.Result.Reason)
		return "holds readiness back"
	case starting:
		notReady("starting: waiting for %s (%s)", c.Name, c.Result.Reason)
		return "holds readiness back"
	}
	var failClosed, degrades []string
	for _, w := range c.Webhooks {
		switch {
		case !w.Registered:
			// The API server sends it nothing: nothing to protect.
		case w.Policy == admissionregistrationv1.Ignore:
			degrades = append(degrades, w.Name)
		default:
			failClosed = append(failClosed, w.Name)
		}
	}
	*degraded = append(*degraded, degrades...)
	switch {
	case len(failClosed) > 0:
		notReady("%s failing (%s) and %s %s under failurePolicy Fail: another replica should judge its requests",
			c.Name, c.Result.Reason, strings.Join(failClosed, ", "), plural(len(failClosed), "runs", "run"))
		return "holds readiness back"
	case len(degrades) > 0:
		return strings.Join(degrades, ", ") + " " + plural(len(degrades), "degrades", "degrade") + " (failurePolicy Ignore)"
	default:
		return "no registered webhook depends on it"
	}
}

// Render writes the verdict as /readyz?verbose shows it: one line per check
// with its state, reason, the webhooks it affects with their live failure
// policies, and its effect; then the overall answer.
func (v Verdict) Render() string {
	var b strings.Builder
	for _, c := range v.Checks {
		mark := "+"
		if c.Result.State == Failing || c.Result.State == Pending {
			mark = "-"
		}
		fmt.Fprintf(&b, "[%s]%s %s", mark, c.Name, c.Result.State)
		if c.Result.Reason != "" {
			fmt.Fprintf(&b, ": %s", c.Result.Reason)
		}
		var hooks []string
		for _, w := range c.Webhooks {
			hooks = append(hooks, w.Name+" "+w.policyLabel())
		}
		if len(hooks) > 0 {
			fmt.Fprintf(&b, "; webhooks: %s", strings.Join(hooks, ", "))
		}
		if c.Effect != "" {
			fmt.Fprintf(&b, "; %s", c.Effect)
		}
		b.WriteByte('\n')
	}
	for _, n := range v.Notes {
		fmt.Fprintf(&b, "[i]%s\n", n)
	}
	if v.Ready {
		b.WriteString("readyz check passed")
		if len(v.Degraded) > 0 {
			fmt.Fprintf(&b, " (degraded: %s)", strings.Join(v.Degraded, ", "))
		}
		b.WriteByte('\n')
		return b.String()
	}
	fmt.Fprintf(&b, "readyz check failed: %s\n", strings.Join(v.Reasons, "; "))
	return b.String()
}

// policyLabel is "(failurePolicy Fail)", "(failurePolicy Fail, assumed: NOTE)"
// or "(not registered)".
func (w WebhookRegistration) policyLabel() string {
	switch {
	case !w.Registered && w.Known:
		return "(not registered)"
	case !w.Known:
		return fmt.Sprintf("(failurePolicy %s, assumed: %s)", w.Policy, w.Note)
	default:
		return fmt.Sprintf("(failurePolicy %s)", w.Policy)
	}
}

// plural returns one for n == 1, else many: readiness's lines name one
// webhook or several.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
