package servicehost

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/svcguard/svcguard/pkg/audit"
	"github.com/svcguard/svcguard/pkg/metrics"
)

// The names of the policy twin's variables that hold what it injects, each
// a CEL string literal that kustomize writes from the same file as
// --service-host and --service-port.
const (
	HostVariable = "serviceHost"
	PortVariable = "servicePort"
)

// TwinObjects are what the leader reads to judge the policy twin: the
// MutatingAdmissionPolicy and its binding (of the same name). A nil field
// was not found.
type TwinObjects struct {
	Policy  *admissionregistrationv1.MutatingAdmissionPolicy
	Binding *admissionregistrationv1.MutatingAdmissionPolicyBinding
}

// TwinState is the verdict on the policy twin.
type TwinState struct {
	// Active: the twin exists, its binding does not narrow it, and it
	// injects what the webhook injects.
	Active bool
	// Reason says why it is not active, and what to do; empty when active.
	Reason string
}

// JudgeTwin decides whether the policy twin named name is active for in.
// It is pure: the objects are read elsewhere.
//
// MutatingAdmissionPolicy objects carry no status (unlike
// ValidatingAdmissionPolicy, whose status.typeChecking reports type
// errors): an expression that fails shows only when the API server
// evaluates it, in its metric apiserver_mutating_admission_policy_check_total
// (alert SvcguardInjectionPolicyErrors). What JudgeTwin checks is that the
// twin is there, that its binding does not narrow it, and that it injects
// the same values as the webhook; not the policy's own selectors, rules or
// expressions, which only kustomize writes.
func JudgeTwin(name string, objs TwinObjects, in Injection) TwinState {
	inactive := func(format string, args ...any) TwinState {
		return TwinState{Reason: fmt.Sprintf(format, args...)}
	}
	p, b := objs.Policy, objs.Binding
	switch {
	case p == nil:
		return inactive("MutatingAdmissionPolicy %s not found: install manifests/components/policy (the default overlay includes it)", name)
	case b == nil:
		return inactive("MutatingAdmissionPolicyBinding %s not found, so the policy applies to nothing: install manifests/components/policy", name)
	case b.Spec.PolicyName != name:
		return inactive("MutatingAdmissionPolicyBinding %s binds policy %q, not %q: apply manifests/components/policy again", name, b.Spec.PolicyName, name)
	case narrows(b.Spec.MatchResources):
		return inactive("MutatingAdmissionPolicyBinding %s narrows the policy with matchResources, so it skips Pods the webhook injects: remove them", name)
	}
	for _, v := range []struct{ variable, flag, want string }{{HostVariable, "--service-host", in.Host}, {PortVariable, "--service-port", in.Port}} {
		got, ok := stringVariable(p, v.variable)
		switch {
		case !ok:
			return inactive("MutatingAdmissionPolicy %s has no variable %s holding a raw string literal (r'''VALUE'''): apply manifests/components/policy again", name, v.variable)
		case got != v.want:
			return inactive("MutatingAdmissionPolicy %s injects %s %q but svcguard injects %q (%s): the two injectors disagree, and the policy runs first; "+
				"apply the manifests again, which write both from manifests/base/injection.env", name, v.variable, got, v.want, v.flag)
		}
	}
	return TwinState{Active: true}
}

// stringVariable returns the value of the policy's variable name when its
// expression is a raw triple-quoted CEL string literal (r, three single
// quotes, the value, three single quotes), as components/policy writes it:
// kustomize puts the value between the quotes.
func stringVariable(p *admissionregistrationv1.MutatingAdmissionPolicy, name string) (string, bool) {
	const quotes = "'''"
	for _, v := range p.Spec.Variables {
		if v.Name != name {
			continue
		}
		inner, ok := strings.CutPrefix(strings.TrimSpace(v.Expression), "r"+quotes)
		if !ok {
			return "", false
		}
		inner, ok = strings.CutSuffix(inner, quotes)
		if !ok || strings.Contains(inner, quotes) || strings.HasSuffix(inner, "'") {
			return "", false
		}
		return inner, true
	}
	return "", false
}

// narrows tells whether a binding's matchResources restrict the policy: any
// rule, or a selector with a term. The API server defaults an empty
// matchResources to selectors without terms, which match everything.
func narrows(mr *admissionregistrationv1.MatchResources) bool {
	if mr == nil {
		return false
	}
	selects := func(s *metav1.LabelSelector) bool {
		return s != nil && (len(s.MatchLabels) > 0 || len(s.MatchExpressions) > 0)
	}
	return selects(mr.NamespaceSelector) || selects(mr.ObjectSelector) || len(mr.ResourceRules) > 0 || len(mr.ExcludeResourceRules) > 0
}

// TwinCheck is the leader's periodic check of the policy twin: it reads the
// two objects, judges them with JudgeTwin, exports the verdict as
// svcguard_injection_policy_active{policy=NAME} and keeps it for Note.
type TwinCheck struct {
	// Name is the policy's and the binding's name (--injection-policy).
	Name string
	// Injection is what the webhook injects; the twin must inject the same.
	Injection Injection
	// Client reads the two objects.
	Client kubernetes.Interface
	// Interval is the time between checks.
	Interval time.Duration
	// Log receives changes of the verdict.
	Log logr.Logger

	mu      sync.Mutex
	state   *TwinState
	checked time.Time
}

// Start checks at once and then every Interval until ctx (the leader's term)
// ends; then the gauge is removed, since only the leader reports.
func (c *TwinCheck) Start(ctx context.Context) error {
	gauge := metrics.InjectionPolicyActive.WithLabelValues(c.Name)
	defer func() {
		metrics.InjectionPolicyActive.DeleteLabelValues(c.Name)
		c.mu.Lock()
		c.state = nil
		c.mu.Unlock()
	}()
	audit.Passes(ctx, c.Interval, nil, func(ctx context.Context) {
		objs, err := c.read(ctx)
		state := TwinState{Reason: fmt.Sprintf("cannot read the policy twin: %v", err)}
		if err == nil {
			state = JudgeTwin(c.Name, objs, c.Injection)
		}
		if state.Active {
			gauge.Set(1)
		} else {
			gauge.Set(0)
		}
		c.mu.Lock()
		if c.state == nil || *c.state != state {
			c.Log.Info("injection policy check", "policy", c.Name, "active", state.Active, "reason", state.Reason)
		}
		c.state, c.checked = &state, time.Now()
		c.mu.Unlock()
	})
	return nil
}

// read gets the policy and the binding; an object that does not exist is
// nil, any other error is returned.
func (c *TwinCheck) read(ctx context.Context) (TwinObjects, error) {
	var objs TwinObjects
	api := c.Client.AdmissionregistrationV1()
	policy, err := api.MutatingAdmissionPolicies().Get(ctx, c.Name, metav1.GetOptions{})
	if objs.Policy, err = found(policy, err); err != nil {
		return objs, err
	}
	binding, err := api.MutatingAdmissionPolicyBindings().Get(ctx, c.Name, metav1.GetOptions{})
	objs.Binding, err = found(binding, err)
	return objs, err
}

// found maps NotFound to nil, no error.
func found[T any](obj *T, err error) (*T, error) {
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return obj, nil
}

// Note is the check's line in /readyz?verbose. It never affects readiness:
// the webhook injects with or without its twin.
func (c *TwinCheck) Note() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.state == nil:
		return fmt.Sprintf("policy twin %s: checked by the leader (svcguard_injection_policy_active)", c.Name)
	case c.state.Active:
		return fmt.Sprintf("policy twin %s: active (checked %s)", c.Name, c.checked.UTC().Format(time.RFC3339))
	default:
		return fmt.Sprintf("policy twin %s: inactive (checked %s): %s", c.Name, c.checked.UTC().Format(time.RFC3339), c.state.Reason)
	}
}
